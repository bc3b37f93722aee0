// A drive to a drive (lib/pairings/copy.ts) in this process against the emulator: API 1.0 to an API
// 2.0 chunked upload and back, 1.0 to 1.0, 2.0 to 2.0 across accounts; both drives' sha256 equal;
// zero chunks left out only on a drive the copy created; a stopped copy resumes on rerun into the same
// drive without sending a finished chunk again; a destination smaller than the source is refused.
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createConsola } from "consola";
import { connect, type Connection } from "../../lib/connect.ts";
import type { Context } from "../../lib/context.ts";
import { copyDrive, type DriveCopy } from "../../lib/pairings/copy.ts";
import { startStub, type DriveStub, type Handler } from "../../emulator/server.ts";
import { installApi2, type Api2Stub } from "../../emulator/api2.ts";
import { imageBytes } from "../images.ts";
import { humanBytes } from "../../lib/size.ts";

const CHUNK = 64 * 1024;
/** Chunks with zero stretches between them, and a tail off the chunk grid. */
const SIZE = 24 * CHUNK + 5000;
const ZEROS: Array<[number, number]> = [
  [3 * CHUNK, 7 * CHUNK],
  [12 * CHUNK, 13 * CHUNK],
];
const chunksWithData = (size: number) =>
  Math.ceil(size / CHUNK) - ZEROS.reduce((sum, [start, end]) => sum + (end - start) / CHUNK, 0);

let stub: DriveStub;
let api2: Api2Stub;
let baseHandlers: Handler[];
let dir: string;
let logged: string[];

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
  dir = await mkdtemp(join(tmpdir(), "drivekit-copy-"));
  logged = [];
  stub.requests.length = 0;
  api2.chunked.chunkPosts.length = 0;
});
afterEach(async () => {
  stub.handlers.splice(0, stub.handlers.length, ...baseHandlers);
  stub.faults.length = 0;
  api2.chunked.options.roundToKiB = undefined;
  await rm(dir, { recursive: true, force: true });
});

/** `bytes` followed by zeros up to `size`. */
const padded = (bytes: Uint8Array, size: number) => {
  const out = new Uint8Array(size);
  out.set(bytes);
  return out;
};
const sha256 = (bytes: Uint8Array) => new Bun.CryptoHasher("sha256").update(bytes).digest("hex");

function context(env: Record<string, string>): Context {
  const log = createConsola({
    level: 4,
    reporters: [{ log: (entry) => void logged.push(entry.args.map(String).join(" ")) }],
  });
  return {
    log,
    verbose: false,
    cwd: dir,
    env,
    addSecret: () => undefined,
    progress: () => ({ update: () => undefined, finish: (summary) => void (summary && logged.push(summary)) }),
    retry: { attempts: 3, baseMs: 1, capMs: 5 },
  };
}

/** A connection to `on`'s API 1.0 or 2.0 side. */
function over(api: 1 | 2, on: { stub: DriveStub; api2: Api2Stub } = { stub, api2 }): Promise<Connection> {
  return connect({}, context(api === 1 ? on.stub.env : on.api2.env), api);
}

async function copy(from: DriveCopy["from"], to: DriveCopy["to"], extra: Partial<DriveCopy> = {}): Promise<string> {
  return (await copyResult(from, to, extra)).drive;
}

function copyResult(from: DriveCopy["from"], to: DriveCopy["to"], extra: Partial<DriveCopy> = {}) {
  return copyDrive(context({}), {
    from,
    to,
    chunk: CHUNK,
    quiet: true,
    verify: false,
    resumeCommand: (drive, offset) => `copy into ${drive}${offset === undefined ? "" : ` from ${offset}`}`,
    ...extra,
  });
}

const writes = () =>
  stub.requests.filter((r) => r.method === "POST" && /\/write\/\d+$/.test(r.path) && r.status === 204);
const writtenChunks = () => writes().map((r) => Number(r.path.split("/").pop()) / CHUNK);
const postedChunks = () => api2.chunked.chunkPosts.filter((post) => post.status === 200).map((post) => post.chunk);

describe("both drives hold the same bytes (sha256)", () => {
  test("API 1.0 to a new API 2.0 drive, every chunk sent (zeros too), --verify; and back to a new 1.0 drive, zeros left out", async () => {
    // on a server that keeps sizes in whole KiB, as a real one may
    api2.chunked.options.roundToKiB = true;
    const bytes = imageBytes(SIZE, 1, ZEROS);
    const source = stub.addDrive(SIZE, {}, bytes).uuid;
    const to2 = await copy(
      { connection: await over(1), drive: source },
      { connection: await over(2), name: "copy" },
      { verify: true, quiet: false },
    );
    // the drive is rounded up, zeros past the source
    const rounded = Math.ceil(SIZE / 1024) * 1024;
    expect(stub.drives.get(to2)?.size).toBe(rounded);
    expect(sha256(stub.readDrive(to2))).toBe(sha256(padded(bytes, rounded)));
    expect(postedChunks().sort((a, b) => a - b)).toEqual(Array.from({ length: Math.floor(SIZE / CHUNK) }, (_, i) => i));
    expect(logged.some((line) => line.startsWith(`verified drive ${to2} against drive ${source}`))).toBe(true);

    stub.requests.length = 0;
    const back = await copy(
      { connection: await over(2), drive: to2 },
      { connection: await over(1), name: "back" },
      { verify: true, quiet: false },
    );
    expect(back).not.toBe(source);
    expect(stub.drives.get(back)?.size).toBe(rounded);
    expect(sha256(stub.readDrive(back))).toBe(sha256(stub.readDrive(to2)));
    expect(writes()).toHaveLength(chunksWithData(rounded));
    expect(logged.some((line) => line.startsWith(`copied ${humanBytes(rounded)} to drive ${back}`))).toBe(true);
  });

  test("API 1.0 to 1.0: zero chunks left out on the drive the copy created, written on an existing drive given", async () => {
    const bytes = imageBytes(SIZE, 2, ZEROS);
    const source = stub.addDrive(SIZE, {}, bytes).uuid;
    const created = await copy(
      { connection: await over(1), drive: source },
      { connection: await over(1), name: "new" },
    );
    expect(sha256(stub.readDrive(created))).toBe(sha256(bytes));
    expect(writes()).toHaveLength(chunksWithData(SIZE));

    stub.requests.length = 0;
    // an existing drive full of other data: its old bytes must not show through where the source is zero
    const existing = stub.addDrive(SIZE + 4096, {}, imageBytes(SIZE + 4096, 99)).uuid;
    const into = await copy(
      { connection: await over(1), drive: source },
      { connection: await over(1), name: "unused", drive: existing },
    );
    expect(into).toBe(existing);
    expect(sha256(stub.readDrive(existing, 0, SIZE))).toBe(sha256(bytes));
    expect(writes()).toHaveLength(Math.ceil(SIZE / CHUNK));
  });

  test("API 2.0 to 2.0 across accounts (two servers, one connection each)", async () => {
    const other = await startStub();
    const otherApi2 = await installApi2(other);
    try {
      const bytes = imageBytes(SIZE, 3, ZEROS);
      const source = stub.addDrive(SIZE, {}, bytes).uuid;
      const copied = await copy(
        { connection: await over(2), drive: source },
        { connection: await over(2, { stub: other, api2: otherApi2 }), name: "elsewhere" },
        { verify: true },
      );
      expect(stub.drives.has(copied)).toBe(false);
      expect(sha256(other.readDrive(copied))).toBe(sha256(bytes));
    } finally {
      otherApi2.stop();
      await other.stop();
    }
  });
});

test("an API 2.0 source whose answer is cut mid-way goes on with Range within the run", async () => {
  const bytes = imageBytes(SIZE, 7, ZEROS);
  const source = stub.addDrive(SIZE, {}, bytes).uuid;
  stub.fault({ method: "GET", path: /^\/download\//, times: 1, action: { end: true, afterBytes: 300 * 1024 } });
  api2.originRequests.length = 0;
  const drive = await copy({ connection: await over(2), drive: source }, { connection: await over(1), name: "cut" });
  expect(sha256(stub.readDrive(drive))).toBe(sha256(bytes));
  const [first, second] = api2.originRequests;
  expect(first?.headers.range).toBeUndefined();
  expect(second?.headers.range).toMatch(/^bytes=\d+-$/);
  expect(second?.status).toBe(206);
  expect(api2.originRequests).toHaveLength(2);
});

test("an API 2.0 source that ignores Range is read from 0 again, the bytes before the cut dropped", async () => {
  const bytes = imageBytes(SIZE, 8, ZEROS);
  const source = stub.addDrive(SIZE, {}, bytes).uuid;
  stub.fault({ method: "GET", path: /^\/download\//, times: 1, action: { end: true, afterBytes: 300 * 1024 } });
  // bytes, not a Bun.file: Bun.serve would answer the Range of a file body by itself
  api2.originHook = (request, drive) =>
    request.headers.get("range") ? new Response(stub.readDrive(drive.uuid)) : undefined;
  api2.originRequests.length = 0;
  try {
    const drive = await copy({ connection: await over(2), drive: source }, { connection: await over(1), name: "full" });
    expect(sha256(stub.readDrive(drive))).toBe(sha256(bytes));
    // the first answer was cut (the emulator sends it through its cutting server), the second ignored the Range
    expect(api2.originRequests).toHaveLength(2);
    expect(api2.originRequests[1]?.headers.range).toMatch(/^bytes=\d+-$/);
    expect(api2.originRequests[1]?.status).toBe(200);
  } finally {
    api2.originHook = undefined;
  }
});

describe("a stopped copy resumes on rerun: the same drive, finished chunks not sent again", () => {
  /** Let `pass` matching requests through, then answer the rest with a final error. */
  function stopAfter(pass: number, matches: (request: Request, path: string) => boolean, answer: () => Response) {
    let seen = 0;
    stub.handlers.unshift((request, path) => (matches(request, path) && ++seen > pass ? answer() : undefined));
  }

  test("into an API 2.0 chunked upload", async () => {
    const bytes = imageBytes(SIZE, 4, ZEROS);
    const source = stub.addDrive(SIZE, {}, bytes).uuid;
    const from = { connection: await over(1), drive: source };
    stopAfter(
      5,
      (request, path) => request.method === "POST" && path.startsWith("/api/2.0/upload/chunk/"),
      // an API 2.0 refusal: a JSON list of errors
      () => Response.json([{ error_type: "permission", error_message: "stopped by the test" }], { status: 403 }),
    );
    const drives = stub.drives.size;
    const stopped = copy(from, { connection: await over(2), name: "resumed" }, { concurrency: 2 });
    await expect(stopped).rejects.toThrow(/copy to drive [0-9a-f-]{36} stopped at .*stopped by the test.*; to resume/);
    const first = new Set(postedChunks());
    expect(first.size).toBeGreaterThanOrEqual(5);

    stub.handlers.splice(0, stub.handlers.length, ...baseHandlers);
    api2.chunked.chunkPosts.length = 0;
    const drive = await copy(from, { connection: await over(2), name: "resumed" }, { concurrency: 2 });
    expect(stub.drives.size).toBe(drives + 1);
    expect(logged.some((line) => line.startsWith(`resuming the copy into drive ${drive}`))).toBe(true);
    expect(postedChunks().filter((chunk) => first.has(chunk))).toEqual([]);
    expect(sha256(stub.readDrive(drive))).toBe(sha256(bytes));
  });

  test("into an API 1.0 drive", async () => {
    const bytes = imageBytes(SIZE, 5, ZEROS);
    const source = stub.addDrive(SIZE, {}, bytes).uuid;
    const from = { connection: await over(2), drive: source };
    stopAfter(
      4,
      (request, path) => request.method === "POST" && /^\/drives\/[0-9a-f-]{36}\/write\//.test(path),
      // an API 1.0 refusal: X-Elastic-Error names its kind
      () =>
        new Response("errors:full stopped by the test\n", {
          status: 507,
          headers: { "content-type": "text/plain", "x-elastic-error": "full" },
        }),
    );
    const drives = stub.drives.size;
    const stopped = copy(from, { connection: await over(1), name: "resumed" }, { concurrency: 2 });
    await expect(stopped).rejects.toThrow(/copy to drive [0-9a-f-]{36} stopped at .*stopped by the test.*; to resume/);
    const first = new Set(writtenChunks());
    expect(first.size).toBe(4);

    stub.handlers.splice(0, stub.handlers.length, ...baseHandlers);
    stub.requests.length = 0;
    const drive = await copy(from, { connection: await over(1), name: "resumed" }, { concurrency: 2 });
    expect(stub.drives.size).toBe(drives + 1);
    expect(writtenChunks().filter((chunk) => first.has(chunk))).toEqual([]);
    expect(sha256(stub.readDrive(drive))).toBe(sha256(bytes));
  });
});

test("a destination drive smaller than the source is refused before anything is written", async () => {
  const source = stub.addDrive(SIZE, {}, imageBytes(SIZE, 6)).uuid;
  const small = stub.addDrive(SIZE - 4096).uuid;
  const refused = copy(
    { connection: await over(1), drive: source },
    { connection: await over(1), name: "x", drive: small },
  );
  await expect(refused).rejects.toThrow(`drive ${small} is ${SIZE - 4096} bytes, smaller than drive ${source}`);
  expect(writes()).toHaveLength(0);
});
