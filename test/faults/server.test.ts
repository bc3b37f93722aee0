// A server that misbehaves: a 200 whose body is short, a read that answers more than asked,
// garbage instead of KEY VALUE or JSON, a redirect loop. Each run must end with status 1 and one
// line saying what the server did, never a stack trace, a hang or a wrong file under the final
// name. (A server restarted mid-transfer, its drives gone, is a row of matrix.test.ts.)
import { afterAll, afterEach, beforeAll, beforeEach, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run, type RunResult } from "../helpers.ts";
import type { RetryPolicy } from "../../lib/retry.ts";
import { sameBytes } from "../images.ts";
import { Emulator, errorLines, FAST_RETRY, journaled, leftIn, ONE_ATTEMPT } from "./support.ts";
import { SIZE, transferPaths, type PathName, type Transfer, type TransferPath } from "./paths.ts";

const UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";

const emulator = new Emulator();
let paths: TransferPath[];
let dir: string;
let seed = 1000;

beforeAll(async () => {
  await emulator.start();
  paths = transferPaths(emulator);
});
afterAll(async () => {
  await emulator.stop();
});
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "drivekit-bad-server-"));
});
afterEach(async () => {
  emulator.clear();
  await rm(dir, { recursive: true, force: true });
});

const path = (name: PathName) => paths.find((candidate) => candidate.name === name) as TransferPath;

/** Answer `method` on paths matching `pattern` with `answer` (every time). */
function answer(method: string, pattern: RegExp, make: (request: Request, path: string) => Response | undefined): void {
  emulator.intercept((request, urlPath) =>
    request.method === method && pattern.test(urlPath) ? make(request, urlPath) : undefined,
  );
}

/** Run the transfer in this process, retries paced fast: a misbehaving server may be asked several times. */
function runOn(
  on: TransferPath,
  transfer: Transfer,
  extra: string[] = [],
  retry: Partial<RetryPolicy> = FAST_RETRY,
): Promise<RunResult> {
  return run(on.command, [...transfer.argv, ...extra], { env: on.env(), cwd: transfer.cwd, retry });
}

/** Status 1, one error line matching `says`, no stack trace, nothing on stdout, no final file. */
function expectOneLine(result: RunResult, says: RegExp, transfer: Transfer): void {
  const { errors, stack } = errorLines(result);
  expect({ status: result.status, stderr: result.stderr }).toMatchObject({ status: 1 });
  expect(stack).toBe(false);
  expect(errors).toHaveLength(1);
  expect(errors[0]).toMatch(says);
  expect(result.stdout).toBe("");
  if (transfer.file) expect(existsSync(join(transfer.cwd, transfer.file))).toBe(false);
  expect(leftIn(transfer.cwd).locks).toEqual([]);
}

const garbage = () =>
  new Response("<html><body><h1>502 Bad Gateway</h1>\n<p>nginx</p></body></html>\n", {
    headers: { "content-type": "text/html" },
  });
const binary = () => new Response(new Uint8Array([0, 255, 10, 32, 0, 13, 10, 7, 200, 10]));

test("1.0 read: a 200 whose body ends short of its Content-Length, every time: exit 1 after the retries, nothing left (no chunk came whole)", async () => {
  const on = path("1.0 download");
  const transfer = on.prepare(dir, ++seed);
  emulator.stub.fault({ ...on.body, action: { end: true, afterBytes: 1000 } });
  const result = await runOn(on, transfer);
  // Bun's fetch sees the connection close early (and may drop what it held); counting the bytes would catch it otherwise
  const cut = "(protocol: short answer: \\d+ of 65536 bytes|network: answer cut after \\d+ of 65536 bytes: .*)";
  expectOneLine(
    result,
    new RegExp(
      `^download: error: download of drive ${UUID} stopped at .*: GET \\S+ failed: 200 ${cut}; nothing was kept: run the same command again$`,
    ),
    transfer,
  );
  expect(leftIn(dir)).toEqual({ journals: [], locks: [], parts: [] });
});

test("1.0 read: a 200 that holds less than asked (its Content-Length agreeing), every time: exit 1, not a short file", async () => {
  const on = path("1.0 download");
  const transfer = on.prepare(dir, ++seed);
  answer("GET", on.data.path, () => new Response(new Uint8Array(1000).fill(7)));
  const result = await runOn(on, transfer);
  expectOneLine(result, /short answer: 1000 of 65536 bytes/, transfer);
});

test("1.0 read: an answer longer than asked stops at once (never retried, never written past the chunk)", async () => {
  const on = path("1.0 download");
  const transfer = on.prepare(dir, ++seed);
  answer("GET", on.data.path, () => new Response(new Uint8Array(64 * 1024 + 1).fill(9)));
  const result = await runOn(on, transfer);
  expectOneLine(
    result,
    /GET \/drives\/\S+\/read\/\d+\/65536 failed: 200 protocol: the server sent more than the 65536 bytes asked/,
    transfer,
  );
  // stopped at once: one read for each chunk in flight (2), none tried again by drivekit; nothing
  // written (no chunk came whole). Counted by offset: the runtime itself may send a GET a second
  // time on a fresh connection when a kept one it chose had been closed
  const reads = emulator.stub.requests.filter((r) => r.method === "GET" && on.data.path.test(r.path));
  expect(new Set(reads.map((r) => r.path)).size).toBeLessThanOrEqual(2);
  expect(result.stderr).not.toMatch(/retry/);
  expect(leftIn(dir)).toEqual({ journals: [], locks: [], parts: [] });
});

test("2.0 download: a ranged answer whose body ends short of its Content-Length (retries off): exit 1, the chunks that came whole kept, no final file", async () => {
  const on = path("2.0 download");
  const transfer = on.prepare(dir, ++seed);
  // the fifth chunk's answer ends after 1000 of its 65536 bytes
  emulator.stub.fault({ ...on.body, every: 5, times: 1, action: { end: true, afterBytes: 1000 } });
  // one attempt: a retry would ask for the chunk again and end identical (test/faults/matrix.test.ts)
  const result = await runOn(on, transfer, [], { ...FAST_RETRY, ...ONE_ATTEMPT });
  expectOneLine(
    result,
    new RegExp(
      `^download: error: download of drive ${UUID} stopped at .* of 2\\.5 MiB: GET /api/2\\.0/drives/${UUID}/download/ failed: network: the answer ended at byte \\d+ of 2622440; out\\.img\\.part is kept: rerun the same command in \\S+ to resume$`,
    ),
    transfer,
  );
  // what is kept is the chunks recorded, and right
  const part = new Uint8Array(readFileSync(join(dir, "out.img.part")));
  const kept = journaled(dir);
  expect(kept.size).toBeGreaterThan(0);
  for (const index of kept)
    expect(
      sameBytes(
        part.subarray(index * 65536, (index + 1) * 65536),
        transfer.bytes.subarray(index * 65536, (index + 1) * 65536),
      ),
    ).toBe(true);
});

test("2.0 download: a whole 200 that holds less than the drive (its Content-Length agreeing): exit 1, no short file under the final name", async () => {
  const on = path("2.0 download");
  const transfer = on.prepare(dir, ++seed);
  emulator.api2.originHook = () => new Response(transfer.bytes.slice(0, 1024 * 1024));
  const result = await runOn(on, transfer);
  expectOneLine(
    result,
    new RegExp(
      `^download: error: download of drive ${UUID} stopped at 0 B of 2\\.5 MiB: the server announced 1048576 bytes from byte 0 of 1048576 for drive ${UUID}, which holds ${SIZE} bytes: refusing it; nothing was kept: run the same command again$`,
    ),
    transfer,
  );
  expect(readdirSync(dir)).toEqual([]);
});

for (const [label, short] of [
  ["one byte short", 1],
  ["one byte long", -1],
] as const) {
  test(`2.0 download (ranged GETs): a 206 for the range asked whose body is ${label}: exit 1 at once, nothing under the final name`, async () => {
    const on = path("2.0 download");
    const transfer = on.prepare(dir, ++seed);
    emulator.api2.originHook = (request, d) => {
      const asked = /^bytes=(\d+)-(\d+)$/.exec(request.headers.get("range") ?? "");
      if (!asked) return undefined;
      const [start, end] = [Number(asked[1]), Number(asked[2])];
      // the Content-Range asked for, a body (and its Content-Length) of another length
      return new Response(transfer.bytes.slice(start, end + 1 - short), {
        status: 206,
        headers: { "content-range": `bytes ${start}-${end}/${d.size}` },
      });
    };
    const result = await runOn(on, transfer);
    expectOneLine(
      result,
      new RegExp(
        `^download: error: download of drive ${UUID} stopped at 0 B of 2\\.5 MiB: the server answered bytes \\d+-\\d+ with \\d+ bytes for drive ${UUID}, which holds ${SIZE} bytes: refusing it; nothing was kept: run the same command again$`,
      ),
      transfer,
    );
    // final: not asked again (one answer per chunk in flight)
    expect(emulator.api2.originRequests.length).toBeLessThanOrEqual(2);
    expect(readdirSync(dir)).toEqual([]);
  });
}

for (const [label, make] of [
  ["HTML", garbage],
  ["binary bytes", binary],
] as const) {
  test(`1.0 info answering ${label} instead of KEY VALUE: exit 1 before anything is written`, async () => {
    const on = path("1.0 download");
    const transfer = on.prepare(dir, ++seed);
    answer("GET", /^\/drives\/[0-9a-f-]{36}\/info$/, make);
    const result = await runOn(on, transfer);
    expectOneLine(
      result,
      new RegExp(`^download: error: drive ${UUID}: the server gave no usable size \\('.*'\\)$`),
      transfer,
    );
    expect(readdirSync(dir)).toEqual([]);
  });

  test(`1.0 create answering ${label} instead of KEY VALUE: exit 1, no journal left`, async () => {
    const on = path("1.0 upload");
    const transfer = on.prepare(dir, ++seed);
    answer("POST", /^\/drives\/create$/, make);
    const result = await runOn(on, transfer);
    expectOneLine(result, /^upload: error: POST \/drives\/create: the answer holds no drive UUID$/, transfer);
    expect(leftIn(dir).journals).toEqual([]);
    expect(emulator.stub.count("POST", on.data.path)).toBe(0);
  });
}

test("2.0 initupload answering HTML instead of JSON: exit 1, nothing sent after it", async () => {
  const on = path("2.0 chunked upload");
  const transfer = on.prepare(dir, ++seed);
  answer("POST", /\/initupload\/$/, garbage);
  const result = await runOn(on, transfer);
  expectOneLine(result, /^upload: error: POST \/initupload\/: the answer is not JSON \('<html>.*'\)$/, transfer);
  expect(leftIn(dir).journals).toEqual([]);
  expect(emulator.api2.chunked.chunkPosts).toEqual([]);
});

test("2.0 upload_chunk answering JSON without a link: exit 1 at once, with the resume hint", async () => {
  const on = path("2.0 chunked upload");
  const transfer = on.prepare(dir, ++seed);
  answer("POST", /\/action\/$/, () => Response.json({ objects: [] }));
  const result = await runOn(on, transfer);
  expectOneLine(
    result,
    /^upload: error: upload to drive \S+ stopped at 0 B of .*: POST \S+\/action\/ failed: 200 protocol: no link in the answer for chunk \d+; to resume, rerun the same command/,
    transfer,
  );
  // not retried: a server that answers without a link will not answer otherwise
  expect(emulator.stub.count("POST", /\/action\/$/)).toBeLessThanOrEqual(6);
});

test("2.0 drive answering HTML on a resume (-d): exit 1 before any chunk", async () => {
  const on = path("2.0 chunked upload");
  const transfer = on.prepare(dir, ++seed);
  const drive = emulator.api2.chunked.begin("other", SIZE);
  answer("GET", new RegExp(`/drives/${drive.uuid}/$`), garbage);
  const result = await runOn(on, transfer, ["-d", drive.uuid]);
  expectOneLine(result, /^upload: error: GET \/drives\/\S+\/: the answer is not JSON \('<html>.*'\)$/, transfer);
  expect(emulator.api2.chunked.chunkPosts).toEqual([]);
});

test("2.0 direct upload answered with HTML instead of the new drive: exit 1, says to check the drive list", async () => {
  const on = path("2.0 direct upload");
  const transfer = on.prepare(dir, ++seed);
  answer("POST", on.data.path, (request) => {
    void request.body?.cancel();
    return garbage();
  });
  const result = await runOn(on, transfer);
  expectOneLine(
    result,
    /^upload: error: upload of \S+ ended, but the answer holds no drive UUID: '<html>.*'; not retried: check your drive list$/,
    transfer,
  );
});

for (const name of ["1.0 download", "2.0 download"] as const) {
  test(`${name}: a redirect loop ends after a few hops with exit 1`, async () => {
    const on = path(name);
    const transfer = on.prepare(dir, ++seed);
    const first = name === "1.0 download" ? { method: "GET", path: /^\/drives\/[0-9a-f-]{36}\/info$/ } : on.data;
    answer(
      first.method,
      first.path,
      (request) => new Response(null, { status: 302, headers: { location: new URL(request.url).pathname } }),
    );
    const result = await runOn(on, transfer);
    expectOneLine(
      result,
      /^download: error: (download of drive \S+ stopped at 0 B of \S+ \S+: )?GET \S+ failed: 302 protocol: more than 5 redirects/,
      transfer,
    );
    // no retry: 6 hops for each read in flight (2.0: up to 2 of them, each may also have asked for
    // a link ahead, one hop, and tried that link, up to 6 more, before the path afresh)
    const hops = emulator.stub.count(first.method, first.path);
    if (name === "1.0 download") expect(hops).toBe(6);
    else expect(hops).toBeLessThanOrEqual(2 * (1 + 6 + 6));
    expect(result.stderr).not.toMatch(/retry/);
  });
}
