// API 1.0 chunked upload against the stub: byte-identical results, zero chunks, retries, final
// errors, resume after a kill, verify. Small chunks (-c 64k) keep every test quick.
import { afterAll, afterEach, beforeAll, beforeEach, expect, test } from "bun:test";
import { closeSync, ftruncateSync, openSync, readdirSync, readFileSync, statSync, writeSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import upload from "../../scripts/upload.ts";
import { run, startScript } from "../helpers.ts";
import { imageBytes, sameBytes as same } from "../images.ts";
import { journalPath } from "../../lib/chunks/journal.ts";
import { startStub, type DriveStub } from "../../emulator/server.ts";
import { Front } from "../proxy-server.ts";

const CHUNK = 64 * 1024;

let stub: DriveStub;
let dir: string;

beforeAll(async () => {
  stub = await startStub();
});
afterAll(async () => {
  await stub.stop();
});
beforeEach(async () => {
  stub.reset();
  dir = await mkdtemp(join(tmpdir(), "drivekit-api1-upload-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function writeImage(name: string, bytes: Uint8Array): Promise<string> {
  const path = join(dir, name);
  await Bun.write(path, bytes);
  return path;
}

const writes = () => stub.requests.filter((r) => r.method === "POST" && /\/write\//.test(r.path));
const journals = () =>
  readdirSync(dir).filter((name) => name.startsWith(".drivekit-journal-") && !name.endsWith(".lock"));

test("an empty image is refused before anything is sent", async () => {
  const path = await writeImage("empty.img", new Uint8Array(0));
  const result = await run(upload, [path, "-c", "64k"], { env: stub.env, cwd: dir });
  expect(result.status).toBe(2);
  expect(result.stderr).toMatch(/empty \(0 bytes\)/);
  expect(result.stdout).toBe("");
  expect(stub.requests.length).toBe(0);
});

test("a missing image is refused before anything is sent", async () => {
  const result = await run(upload, [join(dir, "nope.img")], { env: stub.env, cwd: dir });
  expect(result.status).toBe(2);
  expect(result.stderr).toMatch(/no such file/);
  expect(stub.requests.length).toBe(0);
});

for (const [label, size] of [
  ["1 byte", 1],
  ["chunk - 1", CHUNK - 1],
  ["chunk", CHUNK],
  ["chunk + 1", CHUNK + 1],
  ["not a multiple of 4096", 5 * CHUNK + 12345],
] as const) {
  test(`round trip: ${label} (${size} bytes) lands byte for byte`, async () => {
    const bytes = imageBytes(size, size);
    const path = await writeImage("disk.img", bytes);
    const result = await run(upload, [path, "-c", "64k", "--verify"], { env: stub.env, cwd: dir });
    expect(result.stderr).not.toMatch(/error/);
    expect(result.status).toBe(0);
    const drive = result.stdout.trim();
    expect(result.stdout).toBe(`${drive}\n`);
    const stored = stub.drives.get(drive);
    expect(stored?.size).toBe(size);
    expect(stored?.fields.name).toBe("disk.img");
    expect(same(stub.readDrive(drive), bytes)).toBe(true);
    expect(writes().length).toBe(Math.ceil(size / CHUNK));
    expect(journals()).toEqual([]);
  });
}

test("zero chunks are not sent to a new drive, and -n names it", async () => {
  const size = 10 * CHUNK;
  const bytes = imageBytes(size, 7, [
    [CHUNK, 4 * CHUNK],
    [6 * CHUNK + 100, 8 * CHUNK],
  ]);
  const path = await writeImage("zeros.img", bytes);
  const result = await run(upload, [path, "-c", "64k", "-n", "my disk"], { env: stub.env, cwd: dir });
  expect(result.status).toBe(0);
  const drive = result.stdout.trim();
  expect(stub.drives.get(drive)?.fields.name).toBe("my disk");
  expect(same(stub.readDrive(drive), bytes)).toBe(true);
  // chunks 1, 2, 3 and 7 are all zero
  expect(
    writes()
      .map((r) => Number(r.path.split("/").pop()) / CHUNK)
      .sort((a, b) => a - b),
  ).toEqual([0, 4, 5, 6, 8, 9]);
});

test("an existing drive full of data is overwritten, zeros included (-d)", async () => {
  const size = 8 * CHUNK + 999;
  const old = stub.addDrive(size + 3 * CHUNK, { name: "old" }, new Uint8Array(size + 3 * CHUNK).fill(0xa5));
  const bytes = imageBytes(size, 3, [
    [0, 2 * CHUNK],
    [3 * CHUNK + 17, 5 * CHUNK + 5000],
  ]);
  const path = await writeImage("new.img", bytes);
  const result = await run(upload, [path, "-c", "64k", "-d", old.uuid], { env: stub.env, cwd: dir });
  expect(result.status).toBe(0);
  expect(result.stdout.trim()).toBe(old.uuid);
  expect(stub.count("POST", /\/drives\/create/)).toBe(0);
  expect(same(stub.readDrive(old.uuid, 0, size), bytes)).toBe(true);
  // past the image, the drive keeps what it had
  expect(stub.readDrive(old.uuid, size, 10).every((b) => b === 0xa5)).toBe(true);
  expect(writes().length).toBe(Math.ceil(size / CHUNK));
});

test("-o resumes at an offset of an existing drive, like the vendor tool", async () => {
  const size = 6 * CHUNK;
  const bytes = imageBytes(size, 11);
  const offset = 2 * CHUNK + 4096;
  const drive = stub.addDrive(size, {}, bytes.slice(0, offset));
  const path = await writeImage("part.img", bytes);
  const result = await run(upload, [path, "-c", "64k", "-d", drive.uuid, "-o", String(offset)], {
    env: stub.env,
    cwd: dir,
  });
  expect(result.status).toBe(0);
  expect(same(stub.readDrive(drive.uuid), bytes)).toBe(true);
  expect(writes().map((r) => Number(r.path.split("/").pop()))).not.toContain(0);
  expect(writes().length).toBe(4);
});

test("an 8 GiB sparse image with scattered data: holes are skipped, data lands", async () => {
  const size = 8 * 2 ** 30;
  const path = join(dir, "sparse.img");
  const fd = openSync(path, "w+");
  ftruncateSync(fd, size);
  const spots = [0, 123_456_789, 2 ** 31 + 5, 5 * 2 ** 30 + 65_000, size - 70_000];
  const pieces = spots.map((at, i) => ({ at, bytes: imageBytes(50_000, i + 1) }));
  for (const { at, bytes } of pieces) writeSync(fd, bytes, 0, bytes.length, at);
  closeSync(fd);
  const result = await run(upload, [path, "-c", "64k"], { env: stub.env, cwd: dir });
  expect(result.stderr).not.toMatch(/error/);
  expect(result.status).toBe(0);
  const drive = result.stdout.trim();
  const touched = new Set(
    pieces.flatMap(({ at, bytes }) => [Math.floor(at / CHUNK), Math.floor((at + bytes.length - 1) / CHUNK)]),
  );
  expect(writes().length).toBe(touched.size);
  for (const { at, bytes } of pieces) expect(same(stub.readDrive(drive, at, bytes.length), bytes)).toBe(true);
  // nothing else was written: the drive's own file holds about as many blocks as the data
  const stored = stub.drives.get(drive);
  expect(statSync(stored?.path as string).blocks * 512).toBeLessThanOrEqual(touched.size * CHUNK);
  expect(result.stderr).toMatch(/zero chunks skipped/);
});

test("every 7th write failing (500 and dropped connections) still lands byte for byte", async () => {
  const size = 30 * CHUNK + 5;
  const bytes = imageBytes(size, 5);
  const path = await writeImage("flaky.img", bytes);
  stub.fault({ method: "POST", path: /\/write\//, every: 7, action: { status: 500, kind: "system" } });
  stub.fault({ method: "POST", path: /\/write\//, every: 11, action: { reset: true } });
  const result = await run(upload, [path, "-c", "64k"], { env: stub.env, cwd: dir });
  expect(result.stderr).not.toMatch(/error/);
  expect(result.status).toBe(0);
  expect(same(stub.readDrive(result.stdout.trim()), bytes)).toBe(true);
  expect(writes().length).toBeGreaterThan(30);
  expect(stub.drives.size).toBeGreaterThan(0);
});

for (const [status, kind] of [
  [401, "auth"],
  [507, "full"],
] as const) {
  test(`a final error (${kind}) stops at once with exit 1 and says how to resume`, async () => {
    const bytes = imageBytes(40 * CHUNK, 9);
    const path = await writeImage("stop.img", bytes);
    stub.fault({ method: "POST", path: /\/write\//, action: { status, kind } });
    const result = await run(upload, [path, "-c", "64k", "--concurrency", "4"], { env: stub.env, cwd: dir });
    expect(result.status).toBe(1);
    expect(result.stdout).toBe("");
    const lines = result.stderr
      .trim()
      .split("\n")
      .filter((line) => /error/.test(line));
    expect(lines.length).toBe(1);
    expect(lines[0]).toMatch(new RegExp(`${status} ${kind}`));
    expect(lines[0]).toMatch(/rerun the same command/);
    expect(lines[0]).toMatch(/upload\.ts -d [0-9a-f-]{36} -o 0 /);
    // no retries of a final error: at most the writes that were already in flight
    expect(writes().length).toBeLessThanOrEqual(4);
    expect(result.stderr).not.toContain(stub.secret);
    // the rerun resumes into the same drive, without creating another
    stub.reset();
    const drives = stub.drives.size;
    const again = await run(upload, [path, "-c", "64k"], { env: stub.env, cwd: dir });
    expect(again.status).toBe(0);
    expect(stub.drives.size).toBe(drives);
    expect(stub.count("POST", /\/drives\/create/)).toBe(0);
    expect(same(stub.readDrive(again.stdout.trim()), bytes)).toBe(true);
  });
}

test("a spawned upload killed mid-way resumes on rerun: one drive, finished chunks not resent", async () => {
  const chunks = 40;
  const bytes = imageBytes(chunks * CHUNK, 13);
  const path = await writeImage("killed.img", bytes);
  // slow writes, so that the kill lands in the middle
  stub.fault({ method: "POST", path: /\/write\//, action: { delayMs: 40 } });
  const drivesBefore = stub.drives.size;
  const child = startScript("upload", [path, "-c", "64k", "--concurrency", "2"], { env: stub.env, cwd: dir });
  const journaled = () => {
    const [name] = journals();
    return name ? readFileSync(join(dir, name), "utf8").split("\n").length - 2 : 0;
  };
  // wait on the stub's counter and the journal, not on time (bounded: 30 s)
  for (let i = 0; i < 3000 && !(writes().filter((r) => r.status === 204).length >= 5 && journaled() >= 3); i++)
    await Bun.sleep(10);
  child.kill("SIGKILL");
  await child.finished;
  const done = journaled();
  expect(done).toBeGreaterThanOrEqual(3);
  expect(done).toBeLessThan(chunks);
  expect(stub.drives.size).toBe(drivesBefore + 1);

  stub.reset();
  const again = await run(upload, [path, "-c", "64k"], { env: stub.env, cwd: dir });
  expect(again.stderr).toMatch(/resuming/);
  expect(again.status).toBe(0);
  expect(stub.drives.size).toBe(drivesBefore + 1);
  expect(stub.count("POST", /\/drives\/create/)).toBe(0);
  // (a write of the killed process may reach the stub late, so count distinct chunks, not requests)
  const written = new Set(writes().map((r) => Number(r.path.split("/").pop()) / CHUNK));
  expect(written.size).toBe(chunks - done);
  expect(writes().length).toBeLessThanOrEqual(chunks - done + 2);
  expect(same(stub.readDrive(again.stdout.trim()), bytes)).toBe(true);
  expect(journals()).toEqual([]);
  // the killed run's lock was taken over and released
  expect(readdirSync(dir).filter((name) => name.endsWith(".lock"))).toEqual([]);
});

test("--verify names the first differing byte and exits 1", async () => {
  const bytes = imageBytes(5 * CHUNK, 17);
  const path = await writeImage("verify.img", bytes);
  const bad = 3 * CHUNK + 321;
  stub.handlers.push((request, urlPath) => {
    const match = /^\/drives\/([0-9a-f-]{36})\/read\/(\d+)\/(\d+)$/.exec(urlPath);
    if (request.method !== "GET" || !match) return undefined;
    const [, drive, offset, size] = match;
    const data = stub.readDrive(drive as string, Number(offset), Number(size));
    const at = bad - Number(offset);
    if (at >= 0 && at < data.length) data[at] = (data[at] as number) ^ 0xff;
    return new Response(data, { headers: { "content-length": String(data.length) } });
  });
  const result = await run(upload, [path, "-c", "64k", "--verify"], { env: stub.env, cwd: dir });
  expect(result.status).toBe(1);
  expect(result.stderr).toMatch(new RegExp(`verify failed: .* first at byte ${bad}\\b`));
});

test("--compress never sends raw bodies; always gzips every chunk", async () => {
  const bytes = imageBytes(4 * CHUNK, 19);
  const path = await writeImage("modes.img", bytes);
  const never = await run(upload, [path, "-c", "64k", "--compress", "never"], { env: stub.env, cwd: dir });
  expect(never.status).toBe(0);
  expect(writes().every((r) => r.headers["content-encoding"] === undefined && r.bytesIn === CHUNK)).toBe(true);
  stub.reset();
  const always = await run(upload, [path, "-c", "64k", "--compress", "always"], { env: stub.env, cwd: dir });
  expect(always.status).toBe(0);
  expect(writes().every((r) => r.headers["content-encoding"] === "gzip" && r.bytesIn < CHUNK)).toBe(true);
  expect(same(stub.readDrive(always.stdout.trim()), bytes)).toBe(true);
});

test("auto with big chunks: a raw probe write of 512 KiB measures the link first, then the chunks land whole", async () => {
  const size = 5 * 1024 * 1024 + 3;
  // an image that compresses (text with numbers): the link decides between raw and gzip
  const text = new TextEncoder().encode(
    Array.from({ length: 200_000 }, (_, i) => `line ${i} of a log file, ${(i * 7919) % 1000}\n`).join(""),
  );
  const bytes = text.slice(0, size);
  expect(bytes.length).toBe(size);
  const path = await writeImage("probe.img", bytes);
  const result = await run(upload, [path, "--verbose"], { env: stub.env, cwd: dir });
  expect(result.status).toBe(0);
  expect(result.stderr).toMatch(/compress: probe 524288 bytes/);
  expect(result.stderr).not.toContain(stub.secret);
  const [probe, ...rest] = writes();
  expect(probe?.path.endsWith("/write/0")).toBe(true);
  expect(probe?.bytesIn).toBe(512 * 1024);
  expect(probe?.headers["content-encoding"]).toBeUndefined();
  expect(rest.length).toBe(2);
  expect(same(stub.readDrive(result.stdout.trim()), bytes)).toBe(true);
});

test("auto with big chunks, an image that does not compress (random data): no probe, raw from the first chunk", async () => {
  const size = 5 * 1024 * 1024 + 3;
  const bytes = new Uint8Array(size);
  for (let at = 0; at < size; at += 65536) crypto.getRandomValues(bytes.subarray(at, Math.min(size, at + 65536)));
  const path = await writeImage("random.img", bytes);
  const result = await run(upload, [path, "--verbose"], { env: stub.env, cwd: dir });
  expect(result.status).toBe(0);
  expect(result.stderr).not.toMatch(/compress: probe/);
  expect(result.stderr).toContain("the image does not compress");
  // the chunks, whole and raw: no 512 KiB probe before them
  expect(
    writes()
      .map((r) => [r.bytesIn, r.headers["content-encoding"]])
      .toSorted((a, b) => (b[0] as number) - (a[0] as number)),
  ).toEqual([
    [4 * 1024 * 1024, undefined],
    [size - 4 * 1024 * 1024, undefined],
  ]);
  expect(same(stub.readDrive(result.stdout.trim()), bytes)).toBe(true);
});

for (const [signal, exitStatus] of [
  ["SIGINT", 130],
  ["SIGTERM", 143],
] as const) {
  test(`${signal} stops a spawned upload cleanly: exit ${exitStatus}, one error line with the resume hint, journal kept`, async () => {
    const bytes = imageBytes(40 * CHUNK, 29);
    const path = await writeImage("interrupted.img", bytes);
    stub.fault({ method: "POST", path: /\/write\//, action: { delayMs: 40 } });
    const child = startScript("upload", [path, "-c", "64k", "--concurrency", "2"], { env: stub.env, cwd: dir });
    for (let i = 0; i < 3000 && writes().filter((r) => r.status === 204).length < 3; i++) await Bun.sleep(10);
    child.kill(signal);
    const { stdout, stderr, status } = await child.finished;
    expect(status).toBe(exitStatus);
    expect(stdout).toBe("");
    const errors = stderr.split("\n").filter((line) => /error/.test(line));
    expect(errors.length).toBe(1);
    expect(errors[0]).toMatch(
      new RegExp(`interrupted \\(${signal}\\).*rerun the same command.*upload\\.ts -d [0-9a-f-]{36} -o \\d+ `),
    );
    expect(journals().length).toBe(1);
  });
}

test("a second run of the same upload while the first runs refuses at once, naming the first one's pid", async () => {
  const bytes = imageBytes(40 * CHUNK, 31);
  const path = await writeImage("overlap.img", bytes);
  stub.fault({ method: "POST", path: /\/write\//, action: { delayMs: 40 } });
  const first = startScript("upload", [path, "-c", "64k", "--concurrency", "2"], { env: stub.env, cwd: dir });
  for (let i = 0; i < 3000 && writes().length < 2; i++) await Bun.sleep(10);
  const creates = stub.count("POST", /\/drives\/create/);
  const second = await run(upload, [path, "-c", "64k"], { env: stub.env, cwd: dir });
  expect(second.status).toBe(1);
  expect(second.stderr.trim().split("\n").length).toBe(1);
  expect(second.stderr).toContain(`already running in process ${first.pid}`);
  expect(stub.count("POST", /\/drives\/create/)).toBe(creates);
  const firstResult = await first.finished;
  expect(firstResult.status).toBe(0);
  expect(same(stub.readDrive(firstResult.stdout.trim()), bytes)).toBe(true);
});

test("a lock left by a process that is gone (kill -9, reboot) is taken over without asking", async () => {
  const bytes = imageBytes(3 * CHUNK, 37);
  const path = await writeImage("stale.img", bytes);
  const gone = Bun.spawn(["true"]);
  await gone.exited;
  const lock = `${journalPath(dir, `upload\0${path}\0new`)}.lock`;
  await Bun.write(lock, `${gone.pid}\n`);
  const result = await run(upload, [path, "-c", "64k"], { env: stub.env, cwd: dir });
  expect(result.status).toBe(0);
  expect(same(stub.readDrive(result.stdout.trim()), bytes)).toBe(true);
  expect(readdirSync(dir).filter((name) => name.endsWith(".lock"))).toEqual([]);
});

test("-t TIER (the vendor tool's flag) goes into the new drive's create as its tier", async () => {
  const path = await writeImage("tiered.img", imageBytes(2 * CHUNK, 43));
  const result = await run(upload, [path, "-c", "64k", "-t", "ssd"], { env: stub.env, cwd: dir });
  expect(result.status).toBe(0);
  expect(stub.drives.get(result.stdout.trim())?.fields.tier).toBe("ssd");
});

test("the writes go over a few kept connections (one per write in flight), not one each; the drive holds the image", async () => {
  const front = new Front(stub.port);
  try {
    const bytes = imageBytes(40 * CHUNK + 1000, 77);
    const path = await writeImage("kept.img", bytes);
    const env = { ...stub.env, EHURI: `http://127.0.0.1:${front.port}/` };
    const result = await run(upload, [path, "-c", "64k", "--concurrency", "2", "--compress", "never"], {
      env,
      cwd: dir,
    });
    expect(result.status).toBe(0);
    const uuid = result.stdout.trim();
    expect(same(stub.readDrive(uuid, 0, bytes.length), bytes)).toBe(true);
    expect(writes().length).toBeGreaterThanOrEqual(41);
    // the create, and the writes over the run's kept sockets: a handful, not 41
    expect(front.connections).toBeLessThanOrEqual(6);
  } finally {
    front.stop();
  }
});
