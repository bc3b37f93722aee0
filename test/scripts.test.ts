// The eight API 1.0 drive scripts, run in-process against the stub (and a few as real processes).
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import type { CommandDef } from "citty";
import list from "../scripts/list.ts";
import info from "../scripts/info.ts";
import create from "../scripts/create.ts";
import set from "../scripts/set.ts";
import destroy from "../scripts/destroy.ts";
import image from "../scripts/image.ts";
import read from "../scripts/read.ts";
import write from "../scripts/write.ts";
import { parseRecord, parseRecords } from "../lib/kv.ts";
import { startStub, type DriveStub } from "../emulator/server.ts";
import { run, spawnScript } from "./helpers.ts";

let stub: DriveStub;
let env: Record<string, string>;
let dir: string;
beforeAll(async () => {
  stub = await startStub({ imagingStepBytes: 64 * 1024, imagingStepMs: 5 });
  env = stub.env;
  dir = mkdtempSync(join(tmpdir(), "drivekit-scripts-"));
});
afterAll(async () => {
  await stub.stop();
  rmSync(dir, { recursive: true, force: true });
});
beforeEach(() => stub.reset());

const MISSING = "00000000-0000-4000-8000-000000000000";

describe("list and info", () => {
  test("list prints one UUID a line, or JSON", async () => {
    const a = stub.addDrive(1024);
    const b = stub.addDrive(2048);
    const plain = await run(list, [], { env });
    expect(plain.status).toBe(0);
    expect(plain.stdout.trim().split("\n")).toEqual(expect.arrayContaining([a.uuid, b.uuid]));
    const json = await run(list, ["--json"], { env });
    expect(JSON.parse(json.stdout)).toEqual(expect.arrayContaining([a.uuid, b.uuid]));
  });

  test("info of one drive, all drives, --full and --json", async () => {
    const drive = stub.addDrive(4 * 1024 * 1024, { name: "web server", tags: "prod db", "user:notes": "line1\nline2" });
    const one = await run(info, [drive.uuid], { env });
    expect(one.status).toBe(0);
    const record = parseRecord(one.stdout);
    expect(record).toMatchObject({
      drive: drive.uuid,
      name: "web server",
      size: "4194304",
      tags: "prod db",
      "user:notes": "line1\nline2",
    });
    expect(one.stdout).toContain("user:notes line1\\nline2\n");
    const all = await run(info, [], { env });
    expect(parseRecords(all.stdout).map((r) => r.drive)).toContain(drive.uuid);
    const json = JSON.parse((await run(info, [drive.uuid, "--json"], { env })).stdout);
    expect(json).toMatchObject({ drive: drive.uuid, size: 4194304, tags: ["prod", "db"] });
    expect((await run(info, [drive.uuid, "--full"], { env })).status).toBe(0);
    expect(stub.count("GET", /\/info\/full$/)).toBe(1);
  });

  test("a missing drive: exit 1 with the server's kind and message on one line", async () => {
    const result = await run(info, [MISSING], { env });
    expect(result.status).toBe(1);
    expect(result.stdout).toBe("");
    expect(result.stderr).toBe(
      `info: error: GET /drives/${MISSING}/info failed: 404 missing: Drive ${MISSING} could not be found. Please re-validate your entry.\n`,
    );
  });
});

describe("create, set, destroy", () => {
  test("create sends every documented field and prints the new drive", async () => {
    const reader = crypto.randomUUID();
    const avoid = stub.addDrive(1024).uuid;
    const result = await run(
      create,
      [
        "--name",
        "db disk",
        "--size",
        "2G",
        "--claim-type",
        "shared",
        "--readers",
        reader,
        "--tags",
        "a,b c",
        "--encryption",
        "none",
        "--avoid",
        avoid,
        "--meta",
        "owner=ops team",
        "--meta",
        "ticket=OPS-1",
      ],
      { env },
    );
    expect(result.status).toBe(0);
    const record = parseRecord(result.stdout);
    expect(record).toMatchObject({
      name: "db disk",
      size: String(2 * 2 ** 30),
      "claim:type": "shared",
      readers: reader,
      tags: "a b c",
      "encryption:cipher": "none",
      "user:owner": "ops team",
      "user:ticket": "OPS-1",
    });
    expect(stub.drives.get(record.drive as string)?.size).toBe(2 * 2 ** 30);
    expect(result.stderr).toContain(`created drive ${record.drive}`);
  });

  test("set changes fields and size", async () => {
    const drive = stub.addDrive(1024, { name: "old" });
    const result = await run(
      set,
      [drive.uuid, "--name", "new name", "--size", "1M", "--meta", "role=backup", "--json"],
      { env },
    );
    expect(result.status).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ name: "new name", size: 1048576, "user:role": "backup" });
    expect(stub.drives.get(drive.uuid)?.size).toBe(1048576);
  });

  test("destroy without a terminal needs --yes; with it, the drive is gone", async () => {
    const drive = stub.addDrive(1024);
    const refused = await run(destroy, [drive.uuid], { env });
    expect(refused.status).toBe(2);
    expect(refused.stderr).toMatch(/--yes/);
    expect(stub.requests).toHaveLength(0);
    const done = await run(destroy, [drive.uuid, "--yes"], { env });
    expect(done.status).toBe(0);
    expect(stub.drives.has(drive.uuid)).toBe(false);
  });

  test("destroy on a terminal asks, and only 'y' destroys", async () => {
    const drive = stub.addDrive(1024, { name: "precious" });
    const no = await run(destroy, [drive.uuid], { env, stdinIsTTY: true, stdin: "n\n" });
    expect(no.status).toBe(1);
    expect(no.stderr).toContain(`Destroy drive ${drive.uuid} 'precious' and all its data? [y/N]`);
    expect(stub.drives.has(drive.uuid)).toBe(true);
    const yes = await run(destroy, [drive.uuid], { env, stdinIsTTY: true, stdin: "y\n" });
    expect(yes.status).toBe(0);
    expect(stub.drives.has(drive.uuid)).toBe(false);
  });

  test("destroying a drive in use: 409 busy, exit 1", async () => {
    const drive = stub.addDrive(1024, { claimed: "server:ide:0:0" });
    const result = await run(destroy, [drive.uuid, "--yes"], { env });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain("409 busy");
  });
});

describe("read and write", () => {
  test("write sends one gzipped piece with a Content-Length; read gets it back binary-safe", async () => {
    const drive = stub.addDrive(1024 * 1024);
    const data = crypto.getRandomValues(new Uint8Array(100_000));
    const file = join(dir, "piece.bin");
    writeFileSync(file, data);
    const wrote = await run(write, [drive.uuid, "64k", file], { env });
    expect(wrote.status).toBe(0);
    const request = stub.requests.find((r) => r.path.includes("/write/"));
    expect(request?.path).toBe(`/drives/${drive.uuid}/write/65536`);
    expect(request?.headers["content-encoding"]).toBe("gzip");
    expect(request?.headers["content-length"]).toBeDefined();
    expect(request?.headers["transfer-encoding"]).toBeUndefined();
    expect(Buffer.from(stub.readDrive(drive.uuid, 65536, data.length)).equals(Buffer.from(data))).toBe(true);
    const back = await run(read, [drive.uuid, "65536", String(data.length)], { env });
    expect(back.status).toBe(0);
    expect(Buffer.from(back.stdoutBytes).equals(Buffer.from(data))).toBe(true);
  });

  test("write from stdin at offset 0 and at an offset; read -o FILE never overwrites without --force", async () => {
    const drive = stub.addDrive(8192);
    expect((await run(write, [drive.uuid], { env, stdin: "hello" })).status).toBe(0);
    expect((await run(write, [drive.uuid, "4k", "-"], { env, stdin: "world" })).status).toBe(0);
    expect(new TextDecoder().decode(stub.readDrive(drive.uuid, 0, 5))).toBe("hello");
    expect(new TextDecoder().decode(stub.readDrive(drive.uuid, 4096, 5))).toBe("world");
    const out = join(dir, "read.out");
    const first = await run(read, [drive.uuid, "4k", "5", "-o", out], { env });
    expect(first.status).toBe(0);
    expect(first.stdout).toBe(`${out}\n`);
    expect(readFileSync(out, "utf8")).toBe("world");
    stub.reset();
    const again = await run(read, [drive.uuid, "0", "5", "-o", out], { env });
    expect(again.status).toBe(2);
    expect(stub.requests).toHaveLength(0);
    expect((await run(read, [drive.uuid, "0", "5", "-o", out, "--force"], { env })).status).toBe(0);
    expect(readFileSync(out, "utf8")).toBe("hello");
    expect(existsSync(`${out}.part`)).toBe(false);
  });

  test("the stub refuses chunked writes and reads over 4M, as the API does", async () => {
    const drive = stub.addDrive(16 * 1024 * 1024);
    const auth = `Basic ${Buffer.from(`${stub.user}:${stub.secret}`).toString("base64")}`;
    const chunked = await fetch(`${stub.url}drives/${drive.uuid}/write/0`, {
      method: "POST",
      headers: { authorization: auth },
      // a hand-made stream (a Blob's stream would be sent with its length)
      body: new ReadableStream({
        pull(controller) {
          controller.enqueue(new Uint8Array(10));
          controller.close();
        },
      }),
    });
    expect(chunked.status).toBe(400);
    expect(chunked.headers.get("x-elastic-error")).toBe("usage");
    const big = await fetch(`${stub.url}drives/${drive.uuid}/read/0/4194305`, { headers: { authorization: auth } });
    expect(big.status).toBe(400);
    const past = await run(write, [drive.uuid, "16M"], { env, stdin: "x" });
    expect(past.status).toBe(1);
    expect(past.stderr).toContain("507 full");
  });

  test("write refuses more than 4M before sending anything", async () => {
    const drive = stub.addDrive(16 * 1024 * 1024);
    const big = join(dir, "big.bin");
    writeFileSync(big, new Uint8Array(4 * 1024 * 1024 + 1));
    const result = await run(write, [drive.uuid, "0", big], { env });
    expect(result.status).toBe(2);
    expect(result.stderr).toContain("upload.ts");
    const piped = await run(write, [drive.uuid], { env, stdin: new Uint8Array(4 * 1024 * 1024 + 1) });
    expect(piped.status).toBe(2);
    expect(stub.requests).toHaveLength(0);
  });
});

describe("image", () => {
  test("a plain copy, followed to its end with --wait", async () => {
    const data = crypto.getRandomValues(new Uint8Array(1024 * 1024));
    const source = stub.addDrive(data.length, {}, data);
    const target = stub.addDrive(data.length);
    const result = await run(image, [target.uuid, source.uuid, "--wait", "--interval", "0.01"], { env });
    expect(result.status).toBe(0);
    expect(result.stdout).toBe("");
    expect(result.stderr).toMatch(/imaging .*: \d+%/);
    expect(stub.drives.get(target.uuid)?.imaging).toBeUndefined();
    expect(Buffer.from(stub.readDrive(target.uuid)).equals(Buffer.from(data))).toBe(true);
  });

  test("gzip then gunzip conversions restore the data", async () => {
    const text = new TextEncoder().encode("drivekit ".repeat(100_000));
    const source = stub.addDrive(1024 * 1024, {}, text);
    const zipped = stub.addDrive(1024 * 1024);
    const restored = stub.addDrive(1024 * 1024);
    expect(
      (await run(image, [zipped.uuid, source.uuid, "--convert", "gzip", "--wait", "--interval", "0.01"], { env }))
        .status,
    ).toBe(0);
    const gz = stub.readDrive(zipped.uuid);
    expect(gz[0]).toBe(0x1f);
    expect(Buffer.from(gunzipSync(gz).subarray(0, text.length)).equals(Buffer.from(text))).toBe(true);
    expect(
      (await run(image, [restored.uuid, zipped.uuid, "--convert", "gunzip", "--wait", "--interval", "0.01"], { env }))
        .status,
    ).toBe(0);
    expect(Buffer.from(stub.readDrive(restored.uuid)).equals(Buffer.from(stub.readDrive(source.uuid)))).toBe(true);
  });

  test("--wait gives up at --timeout and says imaging goes on", async () => {
    const slow = await startStub({ imagingStepBytes: 4096, imagingStepMs: 50 });
    try {
      const source = slow.addDrive(1024 * 1024);
      const target = slow.addDrive(1024 * 1024);
      const result = await run(image, [target.uuid, source.uuid, "--wait", "--interval", "0.05", "--timeout", "0.3"], {
        env: slow.env,
      });
      expect(result.status).toBe(1);
      expect(result.stderr).toMatch(/still imaging \(\d+%\)/);
    } finally {
      await slow.stop();
    }
  });
});

describe("wrong calls exit 2 and send nothing", () => {
  const uuid = "8f9b42b1-1c5a-4a1e-9d8a-0123456789ab";
  // biome-ignore lint/suspicious/noExplicitAny: a command of any flag set
  const cases: [string, CommandDef<any>, string[], RegExp][] = [
    ["unknown flag", list, ["--bogus"], /unknown option '--bogus'/],
    ["extra argument", list, ["extra"], /too many arguments/],
    ["bad UUID", info, ["not-a-uuid"], /invalid drive 'not-a-uuid'/],
    ["--full without a drive", info, ["--full"], /--full needs a DRIVE/],
    ["create without size", create, ["--name", "x"], /missing --size/],
    ["bad size", create, ["--name", "x", "--size", "1.5G"], /whole number/],
    ["negative size", create, ["--name", "x", "--size=-1"], /negative/],
    ["huge size", create, ["--name", "x", "--size", "9000T"], /2\^53/],
    ["bad claim type", create, ["--name", "x", "--size", "1G", "--claim-type", "open"], /exclusive or shared/],
    ["bad cipher", create, ["--name", "x", "--size", "1G", "--encryption", "rot13"], /none or aes-xts-plain/],
    ["bad readers", create, ["--name", "x", "--size", "1G", "--readers", "everyone"], /--readers entry/],
    ["bad meta", create, ["--name", "x", "--size", "1G", "--meta", "no equals"], /KEY=VALUE/],
    ["newline injection", set, [uuid, "--name", "x\nsize 1T"], /raw newline/],
    ["meta newline injection", set, [uuid, "--meta", "a=b\nsize 1T"], /raw newline/],
    ["set with nothing", set, [uuid], /nothing to set/],
    ["image onto itself", image, [uuid, uuid], /same drive/],
    ["bad conversion", image, [uuid, MISSING, "--convert", "zip"], /gzip or gunzip/],
    ["read too much", read, [uuid, "0", "5M"], /over the API's limit of 4M/],
    ["read zero", read, [uuid, "0", "0"], /more than 0/],
    ["read bad offset", read, [uuid, "1x", "5"], /unknown suffix/],
    ["write empty", write, [uuid, "0", "-"], /empty/],
    ["write bad level", write, [uuid, "--level", "11"], /--level/],
    ["missing value", read, [uuid, "0", "1", "-o"], /needs a value/],
    ["bad timeout", list, ["--timeout", "soon"], /--timeout/],
    ["plain http elsewhere", list, ["--uri", "http://api.example.com/"], /in clear/],
  ];
  for (const [name, command, argv, message] of cases) {
    test(name, async () => {
      const result = await run(command, argv, { env, stdin: "" });
      expect(result.stderr).toMatch(message);
      expect(result.status).toBe(2);
      expect(result.stdout).toBe("");
      expect(result.stderr.trim().split("\n")).toHaveLength(1);
      expect(stub.requests).toHaveLength(0);
    });
  }

  test("no endpoint or no credentials", async () => {
    const noAuth = await run(list, [], { env: { EHURI: stub.url } });
    expect(noAuth.status).toBe(2);
    expect(noAuth.stderr).toContain("set EHAUTH or pass --auth-file PATH");
    expect((await run(list, [], { env: {} })).stderr).toContain("set EHURI");
    expect(stub.requests).toHaveLength(0);
  });

  test("--help prints usage on stdout and exits 0", async () => {
    const result = await run(create, ["--help"], { env });
    expect(result.status).toBe(0);
    expect(result.stdout).toContain("--claim-type");
    expect(result.stdout).toContain("--auth-file");
    expect(stub.requests).toHaveLength(0);
  });
});

describe("secrets stay secret", () => {
  test("wrong credentials: the error names the problem, never the secret", async () => {
    const secret = "hunter2-very-secret";
    const result = await run(list, ["--verbose"], { env: { EHURI: stub.url, EHAUTH: `${stub.user}:${secret}` } });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain("401 auth");
    expect(result.stderr).toContain("authorization: Basic ****");
    expect(result.stderr).not.toContain(secret);
    expect(result.stderr).not.toContain(Buffer.from(`${stub.user}:${secret}`).toString("base64"));
  });

  test("--auth-file works and its content is not shown", async () => {
    const file = join(dir, "auth");
    writeFileSync(file, `${stub.user}:${stub.secret}\n`, { mode: 0o600 });
    const result = await run(list, ["--auth-file", file, "--uri", stub.url], { env: {} });
    expect(result.status).toBe(0);
    expect(result.stderr).not.toContain(stub.secret);
  });
});

describe("as real processes", () => {
  test("create, info, write, read, destroy spawned with NO_COLOR=1", async () => {
    const created = await spawnScript("create", ["--name", "spawned", "--size", "1M"], { env });
    expect(created.status).toBe(0);
    const uuid = parseRecord(created.stdout).drive as string;
    expect(created.stderr).toBe(`create: done: created drive ${uuid}\n`);
    expect((await spawnScript("write", [uuid, "512"], { env, stdin: "bytes from a pipe" })).status).toBe(0);
    const back = await spawnScript("read", [uuid, "512", "17"], { env });
    expect(back.stdout).toBe("bytes from a pipe");
    const listed = await spawnScript("list", [], { env });
    expect(listed.stdout).toContain(`${uuid}\n`);
    const renamed = await spawnScript("set", [uuid, "--name", "spawned and renamed", "--tags", "t1"], { env });
    expect(renamed.status).toBe(0);
    expect(parseRecord(renamed.stdout)).toMatchObject({ name: "spawned and renamed", tags: "t1" });
    const shown = await spawnScript("info", [uuid, "--json"], { env });
    expect(JSON.parse(shown.stdout).name).toBe("spawned and renamed");
    expect((await spawnScript("destroy", [uuid], { env })).status).toBe(2);
    expect((await spawnScript("destroy", [uuid, "--yes"], { env })).status).toBe(0);
  });

  test("a spawned wrong call exits 2 with one line", async () => {
    const result = await spawnScript("info", ["nope"], { env });
    expect(result.status).toBe(2);
    expect(result.stderr).toBe(
      "info: error: invalid drive 'nope': expected a UUID like 8f9b42b1-1c5a-4a1e-9d8a-0123456789ab\n",
    );
  });

  test("image --wait spawned, and a failure exits 1", async () => {
    const source = stub.addDrive(256 * 1024, {}, new Uint8Array(256 * 1024).fill(7));
    const target = stub.addDrive(256 * 1024);
    const ok = await spawnScript("image", [target.uuid, source.uuid, "--wait", "--interval", "0.01"], { env });
    expect(ok.status).toBe(0);
    expect(stub.readDrive(target.uuid).every((b) => b === 7)).toBe(true);
    const failed = await spawnScript("image", [target.uuid, MISSING], { env });
    expect(failed.status).toBe(1);
    expect(failed.stderr).toContain("404 missing");
  });
});

test("`bun run stub` prints the lines to export, and they work", async () => {
  const child = Bun.spawn(["bun", new URL("../emulator/main.ts", import.meta.url).pathname, "--quiet"], {
    stdout: "pipe",
    stderr: "ignore",
    env: { PATH: process.env.PATH, HOME: process.env.HOME },
  });
  try {
    const reader = child.stdout.getReader();
    let text = "";
    // the two export lines come first; stop at them (or at the end of the stream)
    for (let i = 0; i < 100 && (text.match(/\n/g) ?? []).length < 2; i++) {
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    reader.releaseLock();
    // the API 1.0 pair only: the CSURI lines may arrive in the same read, and would switch the scripts to 2.0
    const exported = Object.fromEntries([...text.matchAll(/^export (EH\w+)=(.*)$/gm)].map((m) => [m[1], m[2]]));
    expect(exported.EHURI).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    expect(exported.EHAUTH).toMatch(/^[0-9a-f-]{36}:.+$/);
    // the API 1.0 lines only: when the CSURI lines came in the same read, they would pick API 2.0
    const env = { EHURI: exported.EHURI, EHAUTH: exported.EHAUTH };
    const created = await run(create, ["--name", "via main", "--size", "1M"], { env });
    expect(created.status).toBe(0);
    expect((await run(list, [], { env })).stdout).toContain(parseRecord(created.stdout).drive as string);
  } finally {
    child.kill();
    await child.exited;
  }
});
