// API 2.0 download to FILE.gz / FILE.zst against the emulator: the drive compressed as it arrives,
// decoded here and by the gzip / zstd tools to the image's sha256; --format and the server's name;
// FILE never replaced without --force; a cut body leaves no FILE and the rerun asks for the rest
// after the last whole piece; the run lock beside the .part (issue 9), for raw too.
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { closeSync, existsSync, readdirSync, renameSync, statSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import download from "../../scripts/download.ts";
import upload from "../../scripts/upload.ts";
import { run, spawnScript } from "../helpers.ts";
import { startStub, type DriveStub } from "../../emulator/server.ts";
import { installApi2, type Api2Stub } from "../../emulator/api2.ts";
import { journalPath } from "../../lib/chunks/journal.ts";
import { CompressedJournal } from "../../lib/formats/compressed-journal.ts";
import { decodeFile, expectBackupOfImage, IMAGE_SIZE, sha256, writeHoleyImage } from "../formats/compressed-files.ts";
import { errorLines, ONE_ATTEMPT } from "../faults/support.ts";

const MiB = 1024 * 1024;

let stub: DriveStub;
let api2: Api2Stub;
let baseHandlers: DriveStub["handlers"];
let root: string;
let dir: string;
let drive: string;
let image: Uint8Array;
let imageHash: string;

beforeAll(async () => {
  stub = await startStub();
  api2 = await installApi2(stub);
  baseHandlers = [...stub.handlers];
  root = await mkdtemp(join(tmpdir(), "drivekit-api2-compressed-"));
  const path = join(root, "disk.img");
  image = writeHoleyImage(path);
  imageHash = sha256(image);
  // over API 1.0: the drive is exactly the image's size (a 2.0 upload rounds it up to whole KiB)
  const up = await run(upload, [path, "--quiet"], { env: stub.env, cwd: root });
  expect(up.status).toBe(0);
  drive = up.stdout.trim();
});
afterAll(async () => {
  api2.stop();
  await stub.stop();
  await rm(root, { recursive: true, force: true });
});
beforeEach(async () => {
  dir = await mkdtemp(join(root, "out-"));
  api2.originRequests.length = 0;
  stub.requests.length = 0;
});
afterEach(() => {
  stub.handlers.splice(0, stub.handlers.length, ...baseHandlers);
  api2.originHook = undefined;
  api2.disposition = (d) => `attachment; filename="${d.uuid}"`;
});

for (const [format, name] of [
  ["gzip", "backup.img.gz"],
  ["zstd", "backup.img.zst"],
] as const) {
  test(`FILE ${name}: ${format} that decodes (here and with the ${format} tool) to the image's exact bytes`, async () => {
    const result = await run(download, [drive, name], { env: api2.env, cwd: dir });
    expect(result.stderr).not.toMatch(/error|warn/);
    expect(result.status).toBe(0);
    const path = join(dir, name);
    expect(result.stdout).toBe(`${path}\n`);
    expect(result.stderr).toContain(`% of the drive`);
    expect(readdirSync(dir)).toEqual([name]);
    await expectBackupOfImage(format, path, imageHash);
  });
}

test("without FILE: the server's name, with --format's suffix added; a name ending in .zst is written zstd", async () => {
  api2.disposition = () => `attachment; filename="web.img"`;
  const suffixed = await run(download, [drive, "--format", "gzip", "--quiet"], { env: api2.env, cwd: dir });
  expect(suffixed.status).toBe(0);
  expect(suffixed.stdout.trim()).toBe(join(dir, "web.img.gz"));
  expect(sha256(decodeFile("gzip", join(dir, "web.img.gz")))).toBe(imageHash);
  api2.disposition = () => `attachment; filename="web.img.zst"`;
  const byName = await run(download, [drive, "--quiet"], { env: api2.env, cwd: dir });
  expect(byName.status).toBe(0);
  expect(sha256(decodeFile("zstd", join(dir, "web.img.zst")))).toBe(imageHash);
});

test("--format overrides FILE's suffix; an existing FILE is refused without --force, before anything is sent", async () => {
  const named = await run(download, [drive, "plain.img", "--format", "zstd", "--quiet"], { env: api2.env, cwd: dir });
  expect(named.status).toBe(0);
  expect(sha256(decodeFile("zstd", join(dir, "plain.img")))).toBe(imageHash);
  stub.requests.length = 0;
  const refused = await run(download, [drive, "plain.img", "--format", "zstd"], { env: api2.env, cwd: dir });
  expect(refused.status).toBe(2);
  expect(refused.stderr).toMatch(/exists: pass --force/);
  expect(stub.requests.length).toBe(0);
});

/**
 * An origin that announces the whole drive but sends `cut` bytes of it, then closes: a transfer cut
 * mid-way. Writes go on at each drain until all `cut` bytes are out, so the cut is exact.
 */
function cuttingOrigin(bytes: Uint8Array, cut: number) {
  const head = new TextEncoder().encode(
    `HTTP/1.1 200 OK\r\nContent-Length: ${bytes.length}\r\nConnection: close\r\n\r\n`,
  );
  const answer = new Uint8Array(head.length + cut);
  answer.set(head);
  answer.set(bytes.subarray(0, cut), head.length);
  const sent = new WeakMap<object, number>();
  const pump = (socket: { write(data: Uint8Array): number; end(): void }) => {
    let at = sent.get(socket) ?? 0;
    // bounded: each write takes some bytes, or the loop waits for the next drain
    while (at < answer.length) {
      const n = socket.write(answer.subarray(at));
      if (n <= 0) break;
      at += n;
    }
    sent.set(socket, at);
    if (at === answer.length) socket.end();
  };
  const server = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      data(socket) {
        if (!sent.has(socket)) pump(socket);
      },
      drain: pump,
      error() {},
    },
  });
  return { url: `http://127.0.0.1:${server.port}/cut`, stop: () => server.stop(true) };
}

test("a body cut mid-way (retries off): exit 1, no FILE; the rerun asks for the rest after the last whole piece and ends byte-identical", async () => {
  const cutting = cuttingOrigin(image, 17 * MiB + 5);
  api2.originHook = () => new Response(null, { status: 302, headers: { location: cutting.url } });
  const first = await run(download, [drive, "cut.zst", "--quiet"], { env: api2.env, cwd: dir, retry: ONE_ATTEMPT });
  cutting.stop();
  expect(first.status).toBe(1);
  expect(errorLines(first).errors).toHaveLength(1);
  expect(first.stderr).toContain("cut.zst.part is kept");
  expect(existsSync(join(dir, "cut.zst"))).toBe(false);

  api2.originHook = undefined;
  api2.originRequests.length = 0;
  const second = await run(download, [drive, "cut.zst"], { env: api2.env, cwd: dir });
  expect(second.status).toBe(0);
  // 17 MiB arrived: four whole 4 MiB pieces; nothing before them is asked again
  const starts = api2.originRequests.map((r) => Number(/^bytes=(\d+)-/.exec(r.headers.range ?? "")?.[1]));
  expect(Math.min(...starts)).toBe(16 * MiB);
  expect(api2.originRequests.every((r) => r.status === 206)).toBe(true);
  expect(second.stderr).toContain("into cut.zst.part at 16 MiB of");
  expect(sha256(decodeFile("zstd", join(dir, "cut.zst")))).toBe(imageHash);
  expect(readdirSync(dir)).toEqual(["cut.zst"]);
});

test("a body cut before its first whole piece (retries off) leaves nothing behind: no .part, no journal", async () => {
  const cutting = cuttingOrigin(image, 1 * MiB);
  api2.originHook = () => new Response(null, { status: 302, headers: { location: cutting.url } });
  const result = await run(download, [drive, "early.gz", "--quiet"], { env: api2.env, cwd: dir, retry: ONE_ATTEMPT });
  cutting.stop();
  expect(result.status).toBe(1);
  expect(errorLines(result).errors).toHaveLength(1);
  expect(result.stderr).toContain("nothing was kept");
  expect(readdirSync(dir)).toEqual([]);
});

test("a run stopped after its last piece was recorded but before the rename: the rerun renames, asking for nothing", async () => {
  const whole = await run(download, [drive, "whole.zst", "--quiet"], { env: api2.env, cwd: dir });
  expect(whole.status).toBe(0);
  const path = join(dir, "whole.zst");
  const length = statSync(path).size;
  renameSync(path, `${path}.part`);
  const recorded = { file: path, drive, size: IMAGE_SIZE, format: "zstd" as const, pieceSize: 4 * MiB };
  const started = CompressedJournal.start(journalPath(dir, `download\0${drive}\0${path}`), `${path}.part`, recorded, {
    driveBytes: IMAGE_SIZE,
    partLength: length,
  });
  closeSync(started.fd);
  started.journal.close();
  api2.originRequests.length = 0;
  const again = await run(download, [drive, "whole.zst"], { env: api2.env, cwd: dir });
  expect(again.status).toBe(0);
  expect(api2.originRequests).toEqual([]);
  expect(sha256(decodeFile("zstd", path))).toBe(imageHash);
  expect(readdirSync(dir)).toEqual(["whole.zst"]);
});

test("a raw rerun over a compressed run's .part starts over instead of resuming its bytes", async () => {
  const cutting = cuttingOrigin(image, 9 * MiB);
  api2.originHook = () => new Response(null, { status: 302, headers: { location: cutting.url } });
  const first = await run(download, [drive, "mixed.img", "--format", "gzip", "--quiet"], {
    env: api2.env,
    cwd: dir,
    retry: ONE_ATTEMPT,
  });
  cutting.stop();
  expect(first.status).toBe(1);
  api2.originHook = undefined;
  api2.originRequests.length = 0;
  const raw = await run(download, [drive, "mixed.img", "--concurrency", "1"], { env: api2.env, cwd: dir });
  expect(raw.status).toBe(0);
  expect(raw.stderr).toContain("starting it over");
  // from byte 0 again (one stream, as from a near server)
  expect(api2.originRequests.map((r) => r.headers.range)).toEqual([undefined]);
  expect(sha256(new Uint8Array(await Bun.file(join(dir, "mixed.img")).arrayBuffer()))).toBe(imageHash);
  expect(readdirSync(dir)).toEqual(["mixed.img"]);
});

describe("one run at a time per .part (issue 9)", () => {
  const lockOf = (name: string) => `${journalPath(dir, `download\0${drive}\0${join(dir, name)}`)}.lock`;

  for (const name of ["busy.img", "busy.img.zst"]) {
    test(`${name}: a download into a .part another live process holds refuses at once, naming it (exit 1, nothing downloaded)`, async () => {
      const other = Bun.spawn(["sleep", "30"]);
      try {
        writeFileSync(lockOf(name), `${other.pid}\n`);
        const result = await run(download, [drive, name], { env: api2.env, cwd: dir });
        expect(result.status).toBe(1);
        expect(result.stderr.trim().split("\n")).toHaveLength(1);
        expect(result.stderr).toContain(`already running in process ${other.pid}`);
        // the drive's size may be asked first; none of its bytes
        expect(stub.requests.filter((r) => r.path !== `/api/2.0/drives/${drive}/`)).toEqual([]);
        expect(api2.originRequests).toEqual([]);
        expect(existsSync(join(dir, name))).toBe(false);
      } finally {
        other.kill();
      }
    });
  }

  test("a lock whose process is gone is taken over; the lock goes when the download ends", async () => {
    const gone = Bun.spawn(["true"]);
    await gone.exited;
    writeFileSync(lockOf("stale.img"), `${gone.pid}\n`);
    const result = await run(download, [drive, "stale.img", "--quiet"], { env: api2.env, cwd: dir });
    expect(result.status).toBe(0);
    expect(sha256(new Uint8Array(await Bun.file(join(dir, "stale.img")).arrayBuffer()))).toBe(imageHash);
    expect(readdirSync(dir)).toEqual(["stale.img"]);
  });

  test("without FILE the lock is taken once the server's name is known; a held one refuses, the answer unread", async () => {
    api2.disposition = () => `attachment; filename="named.img"`;
    const other = Bun.spawn(["sleep", "30"]);
    try {
      writeFileSync(lockOf("named.img"), `${other.pid}\n`);
      const result = await run(download, [drive], { env: api2.env, cwd: dir });
      expect(result.status).toBe(1);
      expect(result.stderr).toContain(`already running in process ${other.pid}`);
      expect(existsSync(join(dir, "named.img.part"))).toBe(false);
    } finally {
      other.kill();
    }
  });
});

test("spawned: a .zst download exits 0 and prints the path; decoded, it is the image (and the zstd tool agrees where installed)", async () => {
  const result = await spawnScript("download", [drive, "spawned.zst", "--quiet"], { env: api2.env, cwd: dir });
  expect(result.stderr).toBe("");
  expect(result.status).toBe(0);
  expect(result.stdout).toBe(`${join(dir, "spawned.zst")}\n`);
  await expectBackupOfImage("zstd", join(dir, "spawned.zst"), imageHash);
});
