// API 2.0 download retried within the run against the emulator: a ranged answer cut short (raw or
// .zst) is asked for again and the run ends identical; a server that stops honouring Range is read
// in one stream from 0, one that sends its ranges chunked in one stream too; final errors (missing,
// auth) are not retried; the tries are bounded by the retry policy, what came whole is kept for a
// rerun; Ctrl-C between attempts still ends the run at once.
import { afterAll, afterEach, beforeAll, beforeEach, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import download from "../../scripts/download.ts";
import { run, startScript, type RunResult } from "../helpers.ts";
import type { RetryPolicy } from "../../lib/retry.ts";
import { imageBytes, sameBytes } from "../images.ts";
import { api2Error } from "../../emulator/errors.ts";
import { startStub, type DriveStub } from "../../emulator/server.ts";
import { installApi2, type Api2Stub } from "../../emulator/api2.ts";
import { decodeFile } from "../formats/compressed-files.ts";
import { FAST_RETRY, waitFor } from "../faults/support.ts";

const MiB = 1024 * 1024;
/** Tries paced for tests: what is tested is how a run ends, not how long it waits. */
const ORIGIN = /^\/download\//;
const API_GET = /^\/api\/2\.0\/drives\/[0-9a-f-]{36}\/download\/$/;

let stub: DriveStub;
let api2: Api2Stub;
let baseHandlers: DriveStub["handlers"];
let root: string;
let dir: string;

beforeAll(async () => {
  stub = await startStub();
  api2 = await installApi2(stub);
  baseHandlers = [...stub.handlers];
  root = await mkdtemp(join(tmpdir(), "drivekit-api2-retry-"));
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
  stub.faults.length = 0;
  stub.handlers.splice(0, stub.handlers.length, ...baseHandlers);
  api2.originHook = undefined;
});

/** A drive of `size` bytes that look like data, with a zero stretch (holes in the .part). */
function driveOf(size: number, seed: number): { uuid: string; bytes: Uint8Array } {
  const bytes = imageBytes(size, seed, [[MiB, 2 * MiB + 100]]);
  return { uuid: stub.addDrive(size, {}, bytes).uuid, bytes };
}

function downloadIn(
  argv: string[],
  options: { env?: Record<string, string>; retry?: Partial<RetryPolicy> } = {},
): Promise<RunResult> {
  return run(download, argv, { env: options.env ?? api2.env, cwd: dir, retry: options.retry ?? FAST_RETRY });
}

/** Where each request the download origin received began (its Range's first byte, 0 without one), with its status. */
const originStarts = () =>
  api2.originRequests.map((request) => [
    Number(/^bytes=(\d+)-/.exec(request.headers.range ?? "")?.[1] ?? 0),
    request.status,
  ]);

test("a raw download cut twice mid-body completes in one run, identical, each cut chunk asked for again", async () => {
  const drive = driveOf(5 * MiB + 777, 1);
  // the first two answers end cleanly after 300 KiB, short of their Content-Length
  stub.fault({ method: "GET", path: ORIGIN, times: 2, action: { end: true, afterBytes: 300 * 1024 } });
  // two ranged GETs at a time (a near link would be read in one stream)
  const result = await downloadIn([drive.uuid, "disk.img", "-c", "1M", "--concurrency", "2", "--verbose"]);
  expect({ status: result.status, stderr: result.stderr }).toMatchObject({ status: 0 });
  expect(sameBytes(new Uint8Array(readFileSync(join(dir, "disk.img"))), drive.bytes)).toBe(true);
  expect(readdirSync(dir)).toEqual(["disk.img"]);
  // every request a whole chunk; six chunks, two of them asked twice
  const starts = originStarts();
  expect(starts).toHaveLength(8);
  for (const [start] of starts) expect((start as number) % MiB).toBe(0);
  expect(new Set(starts.map(([start]) => start)).size).toBe(6);
  expect(
    result.stderr.match(
      /read at \d+ failed \(GET \/api\/2\.0\/drives\/[0-9a-f-]+\/download\/ failed: network: the answer ended at byte \d+ of \d+\); retry 1 in \d+\.\d s/g,
    ),
  ).toHaveLength(2);
  expect(result.stderr).not.toMatch(/error/);
});

test("a .zst download cut mid-body completes in one run, and decodes to the drive's bytes", async () => {
  const drive = driveOf(13 * MiB + 4321, 2);
  stub.fault({ method: "GET", path: ORIGIN, every: 3, times: 1, action: { end: true, afterBytes: MiB + 5 } });
  const result = await downloadIn([drive.uuid, "disk.img.zst", "--concurrency", "2", "--verbose"]);
  expect({ status: result.status, stderr: result.stderr }).toMatchObject({ status: 0 });
  expect(result.stderr).toMatch(/read at \d+ failed \(.*\); retry 1 in/);
  // four chunks of 4 MiB, the cut one asked for again
  const starts = originStarts();
  expect(starts).toHaveLength(5);
  expect(new Set(starts.map(([start]) => start)).size).toBe(4);
  expect(sameBytes(decodeFile("zstd", join(dir, "disk.img.zst")), drive.bytes)).toBe(true);
  expect(readdirSync(dir)).toEqual(["disk.img.zst"]);
});

test("a server that stops honouring Range (a 200 for a ranged GET): the rest is read in one stream from 0, identical", async () => {
  const drive = driveOf(4 * MiB + 99, 3);
  let ranged = 0;
  // bytes, not a Bun.file: Bun.serve would answer the Range of a file body by itself
  api2.originHook = (request, d) =>
    request.headers.get("range") && ++ranged > 2 ? new Response(stub.readDrive(d.uuid)) : undefined;
  const result = await downloadIn([drive.uuid, "norange.img", "-c", "1M", "--concurrency", "2"]);
  expect({ status: result.status, stderr: result.stderr }).toMatchObject({ status: 0 });
  expect(result.stderr).toContain("starting again from 0");
  // two chunks in ranges, then 200s: the ranged GET answered with the whole drive (two, if the next one was under way;
  // their bodies are not read, their connections closed), then the one stream's GET from 0 that serves the rest; which
  // two chunks is the order their GETs reached the server in (the second chunk's may come after the third's). Should the
  // stream serve the later chunk's read first, the earlier chunk's read, now behind the stream, asks once more from 0
  const starts = originStarts();
  const inRanges = starts.slice(0, 2);
  expect(inRanges.map(([, status]) => status)).toEqual([206, 206]);
  expect(new Set(inRanges.map(([start]) => start)).size).toBe(2);
  expect(inRanges.every(([start]) => (start as number) % MiB === 0 && (start as number) < 4 * MiB)).toBe(true);
  expect(starts.length).toBeLessThanOrEqual(6);
  expect(starts.slice(2).every(([, status]) => status === 200)).toBe(true);
  expect(sameBytes(new Uint8Array(readFileSync(join(dir, "norange.img"))), drive.bytes)).toBe(true);
  expect(readdirSync(dir)).toEqual(["norange.img"]);
});

test("a server that sends its ranges chunked (no Content-Length): the drive is read in one stream instead, identical", async () => {
  const drive = driveOf(4 * MiB + 99, 4);
  // a 206 of the range asked, its body a stream: Bun.serve sends it chunked, a form the run's own
  // sockets leave to fetch
  api2.originHook = (request, d) => {
    const range = /^bytes=(\d+)-(\d+)$/.exec(request.headers.get("range") ?? "");
    if (!range) return undefined;
    const [start, end] = [Number(range[1]), Math.min(Number(range[2]), drive.bytes.length - 1)];
    const bytes = stub.readDrive(d.uuid, start, end - start + 1);
    return new Response(
      new ReadableStream({
        start(controller) {
          controller.enqueue(bytes);
          controller.close();
        },
      }),
      { status: 206, headers: { "content-range": `bytes ${start}-${end}/${drive.bytes.length}` } },
    );
  };
  const result = await downloadIn([drive.uuid, "chunked.img", "-c", "1M", "--concurrency", "2"]);
  expect({ status: result.status, stderr: result.stderr }).toMatchObject({ status: 0 });
  expect(result.stderr).toContain("ranges as a body sent as chunked: reading it in one stream");
  expect(sameBytes(new Uint8Array(readFileSync(join(dir, "chunked.img"))), drive.bytes)).toBe(true);
  expect(readdirSync(dir)).toEqual(["chunked.img"]);
  // the two ranged GETs answered chunked (not read), then the stream's GET (from 0: the first read's
  // byte; once more, from where it stands, should a later read have been served first)
  const asked = api2.originRequests.map((request) => request.headers.range ?? "");
  expect(asked.slice(0, 2).every((range) => /^bytes=\d+-\d+$/.test(range))).toBe(true);
  expect(asked.slice(2).every((range) => /^(bytes=\d+-)?$/.test(range))).toBe(true);
  expect(asked.length).toBeGreaterThanOrEqual(3);
  expect(asked.length).toBeLessThanOrEqual(4);
});

for (const [label, env] of [
  ["a missing drive (404)", undefined],
  ["wrong credentials (401)", "wrong"],
] as const) {
  test(`${label} is not retried: exit 1, one request, the server's message as it is, nothing written`, async () => {
    const uuid = env ? driveOf(MiB, 4).uuid : crypto.randomUUID();
    const result = await downloadIn([uuid, "none.img", "--verbose"], {
      env: env ? { ...api2.env, CSAUTH: `${stub.user}:${env}` } : api2.env,
    });
    expect(result.status).toBe(1);
    // the drive's size is asked first: once, and nothing after it
    expect(stub.count("GET", new RegExp(`^/api/2\\.0/drives/${uuid}/$`))).toBe(1);
    expect(stub.count("GET", API_GET)).toBe(0);
    expect(result.stderr).not.toMatch(/retry \d/);
    const errors = result.stderr.split("\n").filter((line) => line.includes(": error: "));
    expect(errors).toEqual([
      expect.stringMatching(
        env ? /^download: error: GET \S+ failed: 401 auth: / : /^download: error: GET \S+ failed: 404 notexist: /,
      ),
    ]);
    expect(readdirSync(dir)).toEqual([]);
  });
}

test("a failure that does not pass: the policy's attempts, then exit 1, the chunks that came whole kept for a rerun that goes on from them", async () => {
  const drive = driveOf(3 * MiB, 5);
  // one stream (as on a near link; --concurrency 1 makes it so whatever the machine's load): its
  // answer is cut after the first MiB, then the API answers 503 to every GET
  stub.fault({ method: "GET", path: ORIGIN, times: 1, action: { end: true, afterBytes: MiB } });
  let gets = 0;
  stub.handlers.unshift((request, path) =>
    request.method === "GET" && API_GET.test(path) && gets++ >= 1
      ? api2Error(503, "backend", "down for maintenance")
      : undefined,
  );
  const flags = ["-c", "1M", "--concurrency", "1"];
  const result = await downloadIn([drive.uuid, "kept.img", ...flags], { retry: { ...FAST_RETRY, attempts: 3 } });
  expect(result.status).toBe(1);
  // the GET that was cut (in the second chunk's first try), then one for each of its two other tries
  expect(stub.count("GET", API_GET)).toBe(3);
  const errors = result.stderr.split("\n").filter((line) => line.includes(": error: "));
  expect(errors).toEqual([
    expect.stringMatching(
      /^download: error: download of drive \S+ stopped at 1\.0 MiB of 3\.0 MiB: GET \S+ failed: 503 backend: down for maintenance.*; kept\.img\.part is kept: rerun the same command in \S+ to resume$/,
    ),
  ]);
  expect(existsSync(join(dir, "kept.img"))).toBe(false);
  const kept = new Uint8Array(readFileSync(join(dir, "kept.img.part")));
  expect(sameBytes(kept.subarray(0, MiB), drive.bytes.subarray(0, MiB))).toBe(true);

  stub.faults.length = 0;
  stub.handlers.splice(0, stub.handlers.length, ...baseHandlers);
  api2.originRequests.length = 0;
  const again = await downloadIn([drive.uuid, "kept.img", ...flags]);
  expect(again.status).toBe(0);
  // the rest, in one stream from where the kept chunk ends
  expect(originStarts()).toEqual([[MiB, 206]]);
  expect(sameBytes(new Uint8Array(readFileSync(join(dir, "kept.img"))), drive.bytes)).toBe(true);
});

test("Ctrl-C while the run retries ends it at once with status 130, not after its tries", async () => {
  const drive = driveOf(MiB, 6);
  stub.fault({ method: "GET", path: API_GET, action: { status: 503, message: "down for maintenance" } });
  // a real process with the default policy: 8 tries over seconds of backoff
  const child = startScript("download", [drive.uuid, "stopped.img"], { env: api2.env, cwd: dir });
  await waitFor(() => stub.count("GET", API_GET) >= 2, "the first retry");
  child.kill("SIGINT");
  const result = await child.finished;
  expect(result.status).toBe(130);
  expect(
    result.stderr
      .trim()
      .split("\n")
      .filter((line) => line.includes(": error: ")),
  ).toEqual([
    expect.stringMatching(
      new RegExp(
        `^download: error: download of drive ${drive.uuid} stopped at 0 B of 1\\.0 MiB: interrupted \\(SIGINT\\); nothing was kept: run the same command again$`,
      ),
    ),
  ]);
  expect(stub.count("GET", API_GET)).toBeLessThan(8);
  // nothing came: nothing is left
  expect(readdirSync(dir)).toEqual([]);
});
