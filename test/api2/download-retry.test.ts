// API 2.0 download retried within the run against the emulator: a body cut short (raw or .zst)
// resumes with Range from where the .part stands and ends identical in one run; a server that
// ignores the retry's Range restarts cleanly from 0; final errors (missing, auth) are not retried;
// the tries are bounded by the retry policy; Ctrl-C between attempts still ends the run at once.
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

/** The Range of each request the download origin received (undefined: from byte 0), with its status. */
const originRanges = () => api2.originRequests.map((request) => [request.headers.range, request.status]);
const rangeStart = (range: unknown) => Number(/^bytes=(\d+)-$/.exec(String(range))?.[1] ?? Number.NaN);

test("a raw download cut twice mid-body completes in one run, identical, resuming twice with Range", async () => {
  const cut = 1536 * 1024;
  const drive = driveOf(5 * MiB + 777, 1);
  // each of the first two answers ends cleanly after `cut` bytes, short of its Content-Length
  stub.fault({ method: "GET", path: ORIGIN, times: 2, action: { end: true, afterBytes: cut } });
  const result = await downloadIn([drive.uuid, "disk.img"]);
  expect({ status: result.status, stderr: result.stderr }).toMatchObject({ status: 0 });
  expect(sameBytes(new Uint8Array(readFileSync(join(dir, "disk.img"))), drive.bytes)).toBe(true);
  expect(readdirSync(dir)).toEqual(["disk.img"]);
  // from 0, then twice from where the .part stood (all that was sent, unless the close dropped some)
  const ranges = originRanges();
  expect(ranges).toHaveLength(3);
  expect(ranges[0]?.[0]).toBeUndefined();
  const [second, third] = [rangeStart(ranges[1]?.[0]), rangeStart(ranges[2]?.[0])];
  expect(second).toBeGreaterThan(0);
  expect(second).toBeLessThanOrEqual(cut);
  expect(third).toBeGreaterThan(second);
  expect(third).toBeLessThanOrEqual(second + cut);
  expect(ranges[2]?.[1]).toBe(206);
  // the second retry is a warning; both resumes are logged
  expect(result.stderr).toMatch(
    new RegExp(
      `download of drive ${drive.uuid} failed \\(GET download failed: network: .*\\); retry 2 in \\d+\\.\\d s`,
    ),
  );
  expect(result.stderr).toContain(`resuming ${join(dir, "disk.img.part")} from byte ${second}`);
  expect(result.stderr).toContain(`resuming ${join(dir, "disk.img.part")} from byte ${third}`);
  expect(result.stderr).not.toMatch(/error/);
});

test("a .zst download cut mid-body completes in one run from its last durable point, and decodes to the drive's bytes", async () => {
  const drive = driveOf(13 * MiB + 4321, 2);
  stub.fault({ method: "GET", path: ORIGIN, times: 1, action: { end: true, afterBytes: 9 * MiB + 5 } });
  const result = await downloadIn([drive.uuid, "disk.img.zst", "--verbose"]);
  expect({ status: result.status, stderr: result.stderr }).toMatchObject({ status: 0 });
  expect(result.stderr).toMatch(new RegExp(`download of drive ${drive.uuid} failed \\(.*\\); retry 1 in`));
  const ranges = originRanges();
  expect(ranges).toHaveLength(2);
  expect(ranges[0]?.[0]).toBeUndefined();
  // whole 4 MiB pieces only (8 MiB when all of the 9 arrived)
  const resumedAt = rangeStart(ranges[1]?.[0]);
  expect(resumedAt).toBeGreaterThan(0);
  expect(resumedAt % (4 * MiB)).toBe(0);
  expect(ranges[1]?.[1]).toBe(206);
  expect(sameBytes(decodeFile("zstd", join(dir, "disk.img.zst")), drive.bytes)).toBe(true);
  expect(readdirSync(dir)).toEqual(["disk.img.zst"]);
});

test("a server that answers the retry's Range with a 200 (ignoring it): the retry restarts from 0, identical", async () => {
  const drive = driveOf(4 * MiB + 99, 3);
  stub.fault({ method: "GET", path: ORIGIN, times: 1, action: { end: true, afterBytes: MiB } });
  // bytes, not a Bun.file: Bun.serve would answer the Range of a file body by itself
  api2.originHook = (request, d) => (request.headers.get("range") ? new Response(stub.readDrive(d.uuid)) : undefined);
  const result = await downloadIn([drive.uuid, "norange.img"]);
  expect({ status: result.status, stderr: result.stderr }).toMatchObject({ status: 0 });
  expect(result.stderr).toContain("starting again from 0");
  const ranges = originRanges();
  expect(ranges).toHaveLength(2);
  expect(rangeStart(ranges[1]?.[0])).toBeGreaterThan(0);
  expect(ranges[1]?.[1]).toBe(200);
  expect(sameBytes(new Uint8Array(readFileSync(join(dir, "norange.img"))), drive.bytes)).toBe(true);
  expect(readdirSync(dir)).toEqual(["norange.img"]);
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
    expect(stub.count("GET", API_GET)).toBe(1);
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

test("a failure that does not pass: the policy's attempts, then exit 1 naming them, the .part kept for a rerun that resumes", async () => {
  const drive = driveOf(3 * MiB, 5);
  stub.fault({ method: "GET", path: ORIGIN, times: 1, action: { end: true, afterBytes: MiB } });
  // after the first GET, the API answers 503 to every one
  let gets = 0;
  stub.handlers.unshift((request, path) =>
    request.method === "GET" && API_GET.test(path) && gets++ >= 1
      ? api2Error(503, "backend", "down for maintenance")
      : undefined,
  );
  const result = await downloadIn([drive.uuid, "kept.img"], { retry: { ...FAST_RETRY, attempts: 3 } });
  expect(result.status).toBe(1);
  expect(stub.count("GET", API_GET)).toBe(3);
  const part = join(dir, "kept.img.part");
  const errors = result.stderr.split("\n").filter((line) => line.includes(": error: "));
  expect(errors).toEqual([
    expect.stringMatching(
      /^download: error: download cut short at .* of 3\.0 MiB: GET \S+ failed: 503 backend: down for maintenance.*; gave up after 3 attempts; \S+kept\.img\.part kept: run the same command again to resume$/,
    ),
  ]);
  expect(existsSync(join(dir, "kept.img"))).toBe(false);
  const kept = new Uint8Array(readFileSync(part));
  expect(kept.length).toBeGreaterThan(0);
  expect(sameBytes(kept, drive.bytes.subarray(0, kept.length))).toBe(true);

  stub.faults.length = 0;
  stub.handlers.splice(0, stub.handlers.length, ...baseHandlers);
  api2.originRequests.length = 0;
  const again = await downloadIn([drive.uuid, "kept.img"]);
  expect(again.status).toBe(0);
  expect(originRanges()).toEqual([[`bytes=${kept.length}-`, 206]]);
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
        `^download: error: download of drive ${drive.uuid} stopped at 0 B: interrupted \\(SIGINT\\); nothing was kept: run the same command again$`,
      ),
    ),
  ]);
  expect(stub.count("GET", API_GET)).toBeLessThan(8);
  expect(readdirSync(dir)).toEqual([]);
});
