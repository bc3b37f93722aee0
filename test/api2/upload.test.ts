// API 2.0 chunked upload against the emulator: byte-identical drives, the 2.0 chunk grid (the last
// chunk larger), link expiry, retries, final errors, resume (journal, 416, -d, Ctrl-C), zero
// chunks sent, no credentials to the links, --verify, --direct. Chunks of 64k keep it quick.
import { afterAll, afterEach, beforeAll, beforeEach, expect, test } from "bun:test";
import { closeSync, ftruncateSync, openSync, readdirSync, writeSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import upload from "../../scripts/upload.ts";
import { run, startScript } from "../helpers.ts";
import { imageBytes, sameBytes } from "../images.ts";
import { startStub, type DriveStub } from "../../emulator/server.ts";
import { installApi2, type Api2Stub } from "../../emulator/api2.ts";

const CHUNK = 64 * 1024;

let stub: DriveStub;
let api2: Api2Stub;
let dir: string;
let baseHandlers: DriveStub["handlers"];

beforeAll(async () => {
  stub = await startStub();
  api2 = await installApi2(stub);
  baseHandlers = [...stub.handlers];
});
afterAll(async () => {
  api2.stop();
  await stub.stop();
});
beforeEach(async () => {
  stub.requests.length = 0;
  api2.chunked.chunkPosts.length = 0;
  dir = await mkdtemp(join(tmpdir(), "drivekit-upload2-"));
});
afterEach(async () => {
  stub.handlers.splice(0, stub.handlers.length, ...baseHandlers);
  stub.faults.length = 0;
  api2.chunked.options.now = undefined;
  api2.chunked.options.roundToKiB = undefined;
  api2.originHook = undefined;
  await rm(dir, { recursive: true, force: true });
});

async function writeImage(name: string, bytes: Uint8Array): Promise<string> {
  const path = join(dir, name);
  await Bun.write(path, bytes);
  return path;
}

const upload2 = (argv: string[]) => run(upload, ["-c", "64k", ...argv], { env: api2.env, cwd: dir });
const posted = () => api2.chunked.chunkPosts.filter((post) => post.status === 200);
const linkRequests = () => stub.requests.filter((r) => r.method === "POST" && /\/action\/$/.test(r.path));
const journals = () =>
  readdirSync(dir).filter((name) => name.startsWith(".drivekit-journal-") && !name.endsWith(".lock"));

for (const [label, size, roundToKiB] of [
  ["a multiple of the chunk", 4 * CHUNK, false],
  ["not a multiple of the chunk", 4 * CHUNK + 5000, false],
  ["smaller than one chunk", 10_000, false],
  ["not a multiple of 1024", 3 * CHUNK - 100, false],
  ["not a multiple of 1024, on a server that rounds sizes up to a KiB", 3 * CHUNK - 100, true],
] as const) {
  test(`round trip, ${label} (${size} bytes): byte for byte, unmounted, --verify passes`, async () => {
    api2.chunked.options.roundToKiB = roundToKiB;
    const bytes = imageBytes(size, size);
    const path = await writeImage("disk.img", bytes);
    const result = await upload2([path, "--verify"]);
    expect(result.stderr).not.toMatch(/error/);
    expect(result.status).toBe(0);
    const uuid = result.stdout.trim();
    expect(result.stdout).toBe(`${uuid}\n`);
    const drive = stub.drives.get(uuid)!;
    expect(drive.status).toBe("unmounted");
    expect(drive.fields.name).toBe("disk.img");
    expect(sameBytes(stub.readDrive(uuid, 0, size), bytes)).toBe(true);
    expect(posted().length).toBe(Math.max(1, Math.floor(size / CHUNK)));
    expect(result.stderr).toContain("verified drive");
    expect(journals()).toEqual([]);
  });
}

test("the last chunk runs to the end of the image, larger than the others", async () => {
  const size = 3 * CHUNK + 40_000;
  const path = await writeImage("tail.img", imageBytes(size, 5));
  const result = await upload2([path]);
  expect(result.status).toBe(0);
  expect(
    posted()
      .map((post) => [post.chunk, post.bytes])
      .sort((a, b) => a[0]! - b[0]!),
  ).toEqual([
    [0, CHUNK],
    [1, CHUNK],
    [2, CHUNK + 40_000],
  ]);
});

test("no Authorization header goes to the one-time links", async () => {
  const path = await writeImage("auth.img", imageBytes(5 * CHUNK, 6));
  const result = await upload2([path]);
  expect(result.status).toBe(0);
  expect(api2.chunked.chunkPosts.length).toBe(5);
  expect(api2.chunked.chunkPosts.every((post) => post.headers.authorization === undefined)).toBe(true);
  const links = stub.requests.filter((r) => r.path.includes("/upload/chunk/"));
  expect(links.length).toBe(5);
  expect(links.every((r) => r.headers.authorization === undefined)).toBe(true);
  expect(linkRequests().every((r) => r.headers.authorization?.startsWith("Basic "))).toBe(true);
});

test("all-zero chunks are still sent (a hole-filled image), and the drive completes", async () => {
  const size = 6 * CHUNK;
  const path = join(dir, "holes.img");
  const fd = openSync(path, "w+");
  ftruncateSync(fd, size);
  const data = imageBytes(1000, 7);
  writeSync(fd, data, 0, data.length, 3 * CHUNK + 10);
  closeSync(fd);
  const result = await upload2([path]);
  expect(result.status).toBe(0);
  expect(
    posted()
      .map((post) => post.chunk)
      .sort(),
  ).toEqual([0, 1, 2, 3, 4, 5]);
  expect(posted().every((post) => post.bytes === CHUNK)).toBe(true);
  expect(stub.drives.get(result.stdout.trim())!.status).toBe("unmounted");
});

test("a stop after some chunks (a final error), then a rerun: same drive, no chunk sent twice, same bytes", async () => {
  const size = 12 * CHUNK + 777;
  const bytes = imageBytes(size, 8);
  const path = await writeImage("resume.img", bytes);
  // the server turns the link calls down (403: final) once 5 chunks are in
  stub.handlers.unshift((request, urlPath) =>
    request.method === "POST" && urlPath.endsWith("/action/") && posted().length >= 5
      ? Response.json([{ error_point: null, error_type: "permission", error_message: "quota exceeded" }], {
          status: 403,
        })
      : undefined,
  );
  const first = await upload2([path, "--concurrency", "2"]);
  expect(first.status).toBe(1);
  const errors = first.stderr.split("\n").filter((line) => /error/.test(line));
  expect(errors.length).toBe(1);
  expect(errors[0]).toMatch(/403.*rerun the same command.*upload\.ts --api 2 -d [0-9a-f-]{36} /);
  const uuid = /-d ([0-9a-f-]{36})/.exec(errors[0]!)![1]!;
  expect(journals().length).toBe(1);
  const firstChunks = posted().map((post) => post.chunk);
  stub.handlers.splice(0, stub.handlers.length, ...baseHandlers);

  const drives = stub.drives.size;
  const again = await upload2([path]);
  expect(again.stderr).toMatch(/resuming/);
  expect(again.status).toBe(0);
  expect(again.stdout.trim()).toBe(uuid);
  expect(stub.drives.size).toBe(drives);
  const all = posted().map((post) => post.chunk);
  expect(new Set(all).size).toBe(all.length);
  expect(all.length).toBe(12);
  expect(firstChunks.length).toBeGreaterThanOrEqual(5);
  expect(sameBytes(stub.readDrive(uuid, 0, size), bytes)).toBe(true);
  expect(journals()).toEqual([]);
});

test("-d into a drive another client started: chunks it holds are skipped (416), the rest land", async () => {
  const size = 6 * CHUNK + 300;
  const bytes = imageBytes(size, 9);
  const other = api2.chunked.begin("other client", size);
  api2.chunked.hold(other.uuid, CHUNK, [0, 2, 3], bytes);
  const path = await writeImage("other.img", bytes);
  const result = await upload2([path, "-d", other.uuid]);
  expect(result.status).toBe(0);
  expect(result.stdout.trim()).toBe(other.uuid);
  expect(
    posted()
      .map((post) => post.chunk)
      .sort(),
  ).toEqual([1, 4, 5]);
  expect(linkRequests().length).toBe(6);
  expect(stub.count("POST", /initupload/)).toBe(0);
  expect(sameBytes(stub.readDrive(other.uuid, 0, size), bytes)).toBe(true);
  expect(stub.drives.get(other.uuid)!.status).toBe("unmounted");
});

test("-d into a drive of another size is refused with exit 1 and a clear message, nothing sent", async () => {
  const other = api2.chunked.begin("other", 5 * CHUNK);
  const path = await writeImage("size.img", imageBytes(4 * CHUNK, 10));
  const result = await upload2([path, "-d", other.uuid]);
  expect(result.status).toBe(1);
  expect(result.stderr).toContain(`drive ${other.uuid} is ${5 * CHUNK} bytes, but`);
  expect(linkRequests().length).toBe(0);
});

test("a link that expired before its POST is asked for again", async () => {
  const bytes = imageBytes(3 * CHUNK, 11);
  const path = await writeImage("expired.img", bytes);
  let expireNext = true;
  stub.handlers.unshift((_request, urlPath) => {
    // the first link POST arrives "6 minutes later"; the rest in time
    if (urlPath.includes("/upload/chunk/")) {
      api2.chunked.options.now = expireNext ? () => Date.now() + 6 * 60_000 : undefined;
      expireNext = false;
    }
    return undefined;
  });
  const result = await upload2([path, "--concurrency", "1"]);
  expect(result.status).toBe(0);
  expect(api2.chunked.chunkPosts.map((post) => post.status)).toEqual([410, 200, 200, 200]);
  expect(result.stderr).toContain("1 links renewed");
  expect(sameBytes(stub.readDrive(result.stdout.trim(), 0, bytes.length), bytes)).toBe(true);
});

test("a 5xx on a chunk's POST is retried and the chunk lands", async () => {
  const bytes = imageBytes(4 * CHUNK, 12);
  const path = await writeImage("retry.img", bytes);
  stub.fault({ method: "POST", path: /\/upload\/chunk\//, times: 2, action: { status: 503, kind: "backend" } });
  const result = await upload2([path]);
  expect(result.status).toBe(0);
  expect(result.stderr).toContain("2 retries");
  expect(stub.requests.filter((r) => r.path.includes("/upload/chunk/") && r.status === 503).length).toBe(2);
  expect(sameBytes(stub.readDrive(result.stdout.trim(), 0, bytes.length), bytes)).toBe(true);
});

test("a 401 on the link calls is not retried: exit 1, one error line", async () => {
  const path = await writeImage("auth401.img", imageBytes(20 * CHUNK, 13));
  stub.fault({
    method: "POST",
    path: /\/action\/$/,
    action: { status: 401, kind: "auth", message: "Authentication failed" },
  });
  const result = await upload2([path, "--concurrency", "2"]);
  expect(result.status).toBe(1);
  const errors = result.stderr.split("\n").filter((line) => /error/.test(line));
  expect(errors.length).toBe(1);
  expect(errors[0]).toContain("401");
  // the first chunks' links and their look-ahead, each asked once
  expect(linkRequests().length).toBeLessThanOrEqual(5);
  expect(api2.chunked.chunkPosts.length).toBe(0);
  expect(result.stderr).not.toContain(stub.secret);
});

test("--verify reports a drive that differs, with the offset, exit 1", async () => {
  const bytes = imageBytes(4 * CHUNK, 14);
  const path = await writeImage("verify.img", bytes);
  const bad = 2 * CHUNK + 123;
  api2.originHook = (_request, drive) => {
    const stored = stub.readDrive(drive.uuid);
    stored[bad] = (stored[bad] as number) ^ 0xff;
    return new Response(stored);
  };
  const result = await upload2([path, "--verify"]);
  expect(result.status).toBe(1);
  expect(result.stderr).toContain(`differs from the image at byte ${bad}`);
});

test("--direct still sends one POST to drives/upload/", async () => {
  const bytes = imageBytes(3 * CHUNK, 15);
  const path = await writeImage("direct.img", bytes);
  const result = await upload2([path, "--direct"]);
  expect(result.status).toBe(0);
  expect(stub.count("POST", /initupload/)).toBe(0);
  expect(stub.count("POST", /\/drives\/upload\//)).toBe(1);
  expect(sameBytes(stub.readDrive(result.stdout.trim(), 0, bytes.length), bytes)).toBe(true);
});

test("-o on API 2.0 is refused with exit 2 and nothing is sent", async () => {
  const path = await writeImage("offset.img", imageBytes(CHUNK, 16));
  const result = await upload2([path, "-o", "4096"]);
  expect(result.status).toBe(2);
  expect(result.stderr).toContain("API 1.0 only");
  expect(stub.requests.length).toBe(0);
});

test("a bad -c for API 2.0 is refused with exit 2, but chunks over 1.0's 4M are fine", async () => {
  const path = await writeImage("chunk.img", imageBytes(1000, 17));
  const bad = await run(upload, [path, "-c", "1000"], { env: api2.env, cwd: dir });
  expect(bad.status).toBe(2);
  expect(bad.stderr).toContain("invalid --chunk");
  const big = await run(upload, [path, "-c", "16M", "--quiet"], { env: api2.env, cwd: dir });
  expect(big.status).toBe(0);
  expect(stub.requests.filter((r) => r.method === "POST" && r.path.endsWith("/initupload/")).length).toBe(1);
});

test("Ctrl-C (SIGINT) stops a spawned upload: exit 130, one line with the resume hint; the rerun finishes", async () => {
  const chunks = 40;
  const bytes = imageBytes(chunks * CHUNK, 18);
  const path = await writeImage("interrupted.img", bytes);
  // slow chunk POSTs, so that the signal lands in the middle
  stub.fault({ method: "POST", path: /\/upload\/chunk\//, action: { delayMs: 40 } });
  const child = startScript("upload", [path, "-c", "64k", "--concurrency", "2"], { env: api2.env, cwd: dir });
  // wait on the stub's record, not on time (bounded: 30 s)
  for (let i = 0; i < 3000 && posted().length < 3; i++) await Bun.sleep(10);
  child.kill("SIGINT");
  const { stdout, stderr, status } = await child.finished;
  expect(status).toBe(130);
  expect(stdout).toBe("");
  const errors = stderr.split("\n").filter((line) => /error/.test(line));
  expect(errors.length).toBe(1);
  expect(errors[0]).toMatch(/interrupted \(SIGINT\).*rerun the same command.*upload\.ts --api 2 -d [0-9a-f-]{36} /);
  expect(journals().length).toBe(1);
  const before = posted().length;
  expect(before).toBeLessThan(chunks);

  stub.faults.length = 0;
  const again = await upload2([path]);
  expect(again.status).toBe(0);
  expect(again.stderr).toMatch(/resuming/);
  // (a POST of the killed process may have landed after its journal line was due: at most the window)
  expect(posted().length).toBeLessThanOrEqual(chunks + 2);
  expect(sameBytes(stub.readDrive(again.stdout.trim(), 0, bytes.length), bytes)).toBe(true);
  expect(stub.drives.get(again.stdout.trim())!.status).toBe("unmounted");
});

test("-t TIER is API 1.0 only: refused with status 2, nothing sent", async () => {
  const path = await writeImage("tiered.img", imageBytes(4096, 47));
  stub.requests.length = 0;
  const result = await upload2([path, "-t", "ssd"]);
  expect(result.status).toBe(2);
  expect(result.stderr.trim().split("\n").length).toBe(1);
  expect(result.stderr).toContain("API 1.0 only");
  expect(stub.requests.length).toBe(0);
});
