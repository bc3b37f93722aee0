// The drive scripts over API 2.0 (and clone.ts / resize.ts / --tier over API 1.0), in-process against
// the emulator, plus a few spawned runs.
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import type { CommandDef } from "citty";
import list from "../scripts/list.ts";
import info from "../scripts/info.ts";
import create from "../scripts/create.ts";
import set from "../scripts/set.ts";
import destroy from "../scripts/destroy.ts";
import image from "../scripts/image.ts";
import read from "../scripts/read.ts";
import write from "../scripts/write.ts";
import clone from "../scripts/clone.ts";
import resize from "../scripts/resize.ts";
import { parseRecord, parseRecords } from "../lib/kv.ts";
import { startStub, type DriveStub } from "../emulator/server.ts";
import { installApi2, type Api2Stub } from "../emulator/api2.ts";
import { run, spawnScript } from "./helpers.ts";

let stub: DriveStub;
let api2: Api2Stub;
let env: Record<string, string>;
let env1: Record<string, string>;
beforeAll(async () => {
  stub = await startStub({ imagingStepBytes: 64 * 1024, imagingStepMs: 1 });
  api2 = await installApi2(stub);
  env = api2.env;
  env1 = stub.env;
});
afterAll(async () => {
  api2.stop();
  await stub.stop();
});
beforeEach(() => {
  stub.requests.length = 0;
  stub.faults.length = 0;
  api2.drives.statusDelayMs = 0;
});

const MISSING = "00000000-0000-4000-8000-000000000000";

describe("API 2.0 list and info", () => {
  test("list prints every drive of more than one page, one UUID a line", async () => {
    const added = Array.from({ length: 23 }, () => stub.addDrive(1 << 20).uuid);
    const result = await run(list, [], { env });
    expect(result.status).toBe(0);
    expect(result.stdout.trim().split("\n")).toEqual(expect.arrayContaining(added));
    expect(stub.requests[0]?.path).toBe("/api/2.0/drives/");
  });

  test("info of one drive: flattened KEY VALUE lines; --json: the server's object", async () => {
    const drive = stub.addDrive(1 << 20, { name: "web", tags: "a b", "user:owner": "ops" });
    const result = await run(info, [drive.uuid], { env });
    expect(result.status).toBe(0);
    expect(parseRecord(result.stdout)).toMatchObject({
      uuid: drive.uuid,
      name: "web",
      tags: "a b",
      "meta:owner": "ops",
      owner: stub.user,
      status: "unmounted",
    });
    expect(JSON.parse((await run(info, [drive.uuid, "--json"], { env })).stdout)).toMatchObject({
      uuid: drive.uuid,
      meta: { owner: "ops" },
      tags: ["a", "b"],
    });
  });

  test("info of every drive: records split by a blank line, from drives/detail/", async () => {
    const drive = stub.addDrive(1 << 20);
    const result = await run(info, [], { env });
    expect(parseRecords(result.stdout).map((r) => r.uuid)).toContain(drive.uuid);
    expect(stub.requests[0]?.path).toBe("/api/2.0/drives/detail/");
  });

  test("a meta value with a newline stays on its line", async () => {
    const drive = stub.addDrive(1 << 20, { "user:notes": "one\nsize 1" });
    const result = await run(info, [drive.uuid], { env });
    expect(result.stdout).toContain("meta:notes one\\nsize 1\n");
    expect(parseRecord(result.stdout).size).toBe(String(1 << 20));
  });

  test("an error is one line: status, error_type, message and X-REQUEST-ID", async () => {
    const result = await run(info, [MISSING], { env });
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(
      new RegExp(
        `^info: error: GET /api/2\\.0/drives/${MISSING}/ failed: 404 notexist: Object with uuid ${MISSING} does not exist \\(X-REQUEST-ID [0-9a-f]{16}\\)\\n$`,
      ),
    );
  });
});

describe("API 2.0 create, set, destroy", () => {
  test("create sends name, size, media, meta, tags and avoid; prints the drive", async () => {
    const avoid = stub.addDrive(1 << 20).uuid;
    const result = await run(
      create,
      ["--name", "db", "--size", "2M", "--media", "cdrom", "--meta", "owner=ops", "--tags", "a,b", "--avoid", avoid],
      { env },
    );
    expect(result.status).toBe(0);
    const record = parseRecord(result.stdout);
    expect(record).toMatchObject({
      name: "db",
      size: String(2 << 20),
      media: "cdrom",
      "meta:owner": "ops",
      tags: "a b",
      status: "creating",
    });
    expect(stub.requests.find((r) => r.method === "POST")?.path).toBe("/api/2.0/drives/");
    expect(result.stderr).toBe(`create: done: created drive ${record.uuid} (creating)\n`);
  });

  test("create --wait polls until unmounted", async () => {
    api2.drives.statusDelayMs = 30;
    const result = await run(create, ["--name", "w", "--size", "1M", "--wait", "--interval", "0.01"], { env });
    expect(result.status).toBe(0);
    expect(parseRecord(result.stdout).status).toBe("unmounted");
    expect(result.stderr).toContain(": creating (");
  });

  test("create --wait gives up at --timeout, naming the last status", async () => {
    api2.drives.statusDelayMs = 60_000;
    const result = await run(
      create,
      ["--name", "w", "--size", "1M", "--wait", "--interval", "0.02", "--timeout", "0.2"],
      { env },
    );
    expect(result.status).toBe(1);
    expect(result.stdout).toBe("");
    expect(result.stderr).toMatch(/create: error: drive [0-9a-f-]{36} is still creating after \d+ s \(--timeout\)/);
  });

  test("set reads the drive, merges meta and PUTs the definition", async () => {
    const drive = stub.addDrive(1 << 20, { name: "old", "user:a": "1" });
    const result = await run(set, [drive.uuid, "--name", "new", "--meta", "b=2", "--json"], { env });
    expect(result.status).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({
      name: "new",
      size: 1 << 20,
      media: "disk",
      meta: { a: "1", b: "2" },
    });
    expect(stub.requests.map((r) => r.method)).toEqual(["GET", "PUT"]);
  });

  test("set refuses a size change on a mounted drive, with a clear message", async () => {
    const drive = stub.addDrive(1 << 20);
    drive.status = "mounted";
    const result = await run(set, [drive.uuid, "--size", "2M"], { env });
    expect(result.status).toBe(1);
    expect(result.stderr).toBe(
      `set: error: drive ${drive.uuid} is mounted: its size cannot change (detach it from its server first); nothing was changed\n`,
    );
    expect(stub.count("PUT")).toBe(0);
  });

  test("destroy sends DELETE", async () => {
    const drive = stub.addDrive(1 << 20);
    const result = await run(destroy, [drive.uuid, "--yes"], { env });
    expect(result.status).toBe(0);
    expect(stub.requests.map((r) => `${r.method} ${r.path}`)).toEqual([`DELETE /api/2.0/drives/${drive.uuid}/`]);
    expect(stub.drives.has(drive.uuid)).toBe(false);
  });

  test("destroying a mounted drive: 403, exit 1", async () => {
    const drive = stub.addDrive(1 << 20);
    drive.status = "mounted";
    const result = await run(destroy, [drive.uuid, "--yes"], { env });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain("failed: 403 permission");
  });
});

describe("API 2.0 clone and resize", () => {
  test("clone --wait prints the new UUID once it is unmounted, with the bytes copied", async () => {
    const data = crypto.getRandomValues(new Uint8Array(4096));
    const source = stub.addDrive(2 << 20, { name: "src" }, data);
    api2.drives.statusDelayMs = 20;
    const result = await run(clone, [source.uuid, "--name", "copy", "--wait", "--interval", "0.01"], { env });
    expect(result.status).toBe(0);
    const uuid = result.stdout.trim();
    expect(stub.drives.get(uuid)?.fields.name).toBe("copy");
    expect(stub.drives.get(uuid)?.status).toBe("unmounted");
    expect(Buffer.from(stub.readDrive(uuid, 0, 4096)).equals(Buffer.from(data))).toBe(true);
  });

  test("resize --wait sends do=resize with the definition and prints the settled drive", async () => {
    const drive = stub.addDrive(1 << 20, { name: "r" });
    const result = await run(resize, [drive.uuid, "3M", "--wait", "--interval", "0.01"], { env });
    expect(result.status).toBe(0);
    expect(parseRecord(result.stdout)).toMatchObject({ size: String(3 << 20), status: "unmounted" });
    expect(stub.requests.some((r) => r.method === "POST" && r.path === `/api/2.0/drives/${drive.uuid}/action/`)).toBe(
      true,
    );
  });
});

describe("API 1.0: clone, resize, tier", () => {
  test("clone creates a drive of the source's size and images it; --wait follows to the end", async () => {
    const data = crypto.getRandomValues(new Uint8Array(256 * 1024));
    const source = stub.addDrive(data.length, { name: "src1" }, data);
    const result = await run(clone, [source.uuid, "--wait", "--interval", "0.01"], { env: env1 });
    expect(result.status).toBe(0);
    const uuid = result.stdout.trim();
    expect(stub.drives.get(uuid)?.fields.name).toBe("src1");
    expect(Buffer.from(stub.readDrive(uuid)).equals(Buffer.from(data))).toBe(true);
  });

  test("resize is set size", async () => {
    const drive = stub.addDrive(1024);
    const result = await run(resize, [drive.uuid, "1M"], { env: env1 });
    expect(result.status).toBe(0);
    expect(parseRecord(result.stdout).size).toBe("1048576");
    expect(stub.requests.map((r) => `${r.method} ${r.path}`)).toEqual([`POST /drives/${drive.uuid}/set`]);
  });

  test("create -t ssd sends tier", async () => {
    const result = await run(create, ["--name", "fast", "--size", "1M", "-t", "ssd"], { env: env1 });
    expect(result.status).toBe(0);
    expect(parseRecord(result.stdout).tier).toBe("ssd");
  });
});

describe("wrong calls exit 2, one line, nothing sent", () => {
  const uuid = "8f9b42b1-1c5a-4a1e-9d8a-0123456789ab";
  // biome-ignore lint/suspicious/noExplicitAny: a command of any flag set
  const cases: [string, CommandDef<any>, string[], RegExp][] = [
    ["image on 2.0", image, [uuid, MISSING], /image\.ts is API 1\.0 only: on API 2\.0 copy a drive with clone\.ts/],
    ["read on 2.0", read, [uuid, "0", "1"], /download\.ts/],
    ["write on 2.0", write, [uuid, "0", "-"], /upload\.ts/],
    ["bad --api", list, ["--api", "3"], /invalid --api '3': expected 1 or 2/],
    [
      "bad --media",
      create,
      ["--name", "x", "--size", "1M", "--media", "tape"],
      /invalid --media 'tape': expected disk or cdrom/,
    ],
    [
      "bad --convert",
      image,
      [uuid, MISSING, "--api", "1", "--convert", "zip"],
      /invalid --convert 'zip': expected gzip or gunzip/,
    ],
    [
      "bad --claim-type",
      create,
      ["--name", "x", "--size", "1M", "--claim-type", "open", "--api", "1"],
      /expected exclusive or shared/,
    ],
    ["--tier on 2.0", create, ["--name", "x", "--size", "1M", "--tier", "ssd"], /--tier is API 1\.0 only/],
    ["--claim-type on 2.0", set, [uuid, "--claim-type", "shared"], /--claim-type is API 1\.0 only/],
    [
      "--media on 1.0",
      create,
      ["--name", "x", "--size", "1M", "--media", "disk", "--api", "1"],
      /--media is API 2\.0 only/,
    ],
    ["meta newline on 2.0", set, [uuid, "--meta", "a=b\nc"], /raw newline/],
    ["resize to 0", resize, [uuid, "0"], /more than 0/],
    ["clone of a non-UUID", clone, ["nope"], /invalid source drive/],
  ];
  for (const [name, command, argv, message] of cases) {
    test(name, async () => {
      const result = await run(command, argv, { env: { ...env, ...env1 }, stdin: "x" });
      expect(result.stderr).toMatch(message);
      expect(result.status).toBe(2);
      expect(result.stdout).toBe("");
      expect(result.stderr.trim().split("\n")).toHaveLength(1);
      expect(stub.requests).toHaveLength(0);
    });
  }
});

describe("as real processes (NO_COLOR=1)", () => {
  test("create --wait, clone, resize, destroy over API 2.0", async () => {
    const created = await spawnScript("create", ["--name", "spawned", "--size", "1M", "--wait", "--interval", "0.01"], {
      env,
    });
    expect(created.status).toBe(0);
    const uuid = parseRecord(created.stdout).uuid as string;
    expect(created.stderr).toBe(`create: done: created drive ${uuid} (creating)\n`);
    const cloned = await spawnScript("clone", [uuid, "--wait", "--interval", "0.01"], { env });
    expect(cloned.status).toBe(0);
    const copy = cloned.stdout.trim();
    expect(stub.drives.has(copy)).toBe(true);
    const resized = await spawnScript("resize", [copy, "2M", "--json"], { env });
    expect(JSON.parse(resized.stdout).size).toBe(2 << 20);
    expect((await spawnScript("destroy", [copy, "--yes"], { env })).status).toBe(0);
  });

  test("a spawned image.ts on API 2.0 exits 2 with one line and sends nothing", async () => {
    const result = await spawnScript("image", [MISSING, "8f9b42b1-1c5a-4a1e-9d8a-0123456789ab"], { env });
    expect(result.status).toBe(2);
    expect(result.stderr).toBe(
      "image: error: image.ts is API 1.0 only: on API 2.0 copy a drive with clone.ts SOURCE (or pass --api 1)\n",
    );
    expect(stub.requests).toHaveLength(0);
  });
});
