// API 1.0 chunked download against the stub: exact bytes, sparse output, short answers, retries,
// resume from FILE.part, never overwriting FILE without --force. Small chunks (-c 64k) keep it quick.
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, statSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import download from "../../scripts/download.ts";
import upload from "../../scripts/upload.ts";
import { run } from "../helpers.ts";
import { startStub, type DriveStub } from "../../emulator/server.ts";
import { imageBytes, sameBytes as same } from "../images.ts";
import { journalPath } from "../../lib/chunks/journal.ts";
import { Front } from "../proxy-server.ts";
import { api1DriveSource, api1ReadWindow } from "../../lib/api1/drive-source.ts";
import { HttpClient } from "../../lib/http.ts";
import { ProxyRoutes } from "../../lib/proxy.ts";
import { SocketPool } from "../../lib/socket-pool.ts";
import { PROXIED_RECEIVE } from "../../lib/wire.ts";
import { MAX_WINDOW } from "../../lib/chunks/window.ts";

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
  dir = await mkdtemp(join(tmpdir(), "drivekit-api1-download-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const reads = () => stub.requests.filter((r) => r.method === "GET" && /\/read\//.test(r.path));
/** The reads of `on` that came over the run's own sockets (fetch sends a User-Agent; they send none). */
const overSockets = (on: DriveStub) =>
  on.requests.filter((r) => r.method === "GET" && /\/read\//.test(r.path) && !r.headers["user-agent"]);
const fileBytes = async (path: string) => new Uint8Array(await Bun.file(path).arrayBuffer());

for (const [label, size] of [
  ["1 byte", 1],
  ["chunk - 1", CHUNK - 1],
  ["chunk", CHUNK],
  ["chunk + 1", CHUNK + 1],
  ["not a multiple of 4096", 5 * CHUNK + 12345],
] as const) {
  test(`round trip: ${label} (${size} bytes) comes back byte for byte`, async () => {
    const bytes = imageBytes(size, size + 1);
    const source = join(dir, "disk.img");
    await Bun.write(source, bytes);
    const up = await run(upload, [source, "-c", "64k"], { env: stub.env, cwd: dir });
    expect(up.status).toBe(0);
    const drive = up.stdout.trim();
    const result = await run(download, [drive, "out.img", "-c", "64k"], { env: stub.env, cwd: dir });
    expect(result.stderr).not.toMatch(/error/);
    expect(result.status).toBe(0);
    expect(result.stdout).toBe(`${join(dir, "out.img")}\n`);
    expect(same(await fileBytes(join(dir, "out.img")), bytes)).toBe(true);
    expect(reads().length).toBe(Math.ceil(size / CHUNK));
    // from a near server too, every read over the run's own sockets
    expect(overSockets(stub)).toHaveLength(reads().length);
    expect(readdirSync(dir).sort()).toEqual(["disk.img", "out.img"]);
  });
}

test("the default FILE is the drive UUID in the current directory", async () => {
  const bytes = imageBytes(3 * CHUNK, 2);
  const drive = stub.addDrive(bytes.length, {}, bytes);
  const result = await run(download, [drive.uuid, "-c", "64k"], { env: stub.env, cwd: dir });
  expect(result.status).toBe(0);
  expect(result.stdout.trim()).toBe(join(dir, drive.uuid));
  expect(same(await fileBytes(join(dir, drive.uuid)), bytes)).toBe(true);
});

test("zero regions stay holes at 4 KiB granularity: the file is sparse", async () => {
  const size = 64 * CHUNK;
  // data in small islands, none of them filling a whole chunk
  const bytes = new Uint8Array(size);
  const islands = [
    [100, 5000],
    [CHUNK * 3 + 8192, CHUNK * 3 + 12288],
    [CHUNK * 40 + 1, CHUNK * 40 + 20_000],
    [size - 10, size],
  ];
  for (const [i, [start, end]] of islands.entries())
    bytes.set(imageBytes((end as number) - (start as number), i + 3), start);
  const drive = stub.addDrive(size, {}, bytes);
  const result = await run(download, [drive.uuid, "sparse.img", "-c", "64k"], { env: stub.env, cwd: dir });
  expect(result.status).toBe(0);
  const path = join(dir, "sparse.img");
  expect(same(await fileBytes(path), bytes)).toBe(true);
  // the data touches 2 + 1 + 5 + 1 blocks of 4 KiB
  expect(statSync(path).blocks * 512).toBeLessThanOrEqual(9 * 4096);
});

test("an existing FILE is refused without --force, before anything is sent; --force replaces it", async () => {
  const bytes = imageBytes(2 * CHUNK, 4);
  const drive = stub.addDrive(bytes.length, {}, bytes);
  const path = join(dir, "taken.img");
  await Bun.write(path, "precious");
  const refused = await run(download, [drive.uuid, "taken.img"], { env: stub.env, cwd: dir });
  expect(refused.status).toBe(2);
  expect(refused.stderr).toMatch(/exists: pass --force/);
  expect(stub.requests.length).toBe(0);
  expect(await Bun.file(path).text()).toBe("precious");
  const forced = await run(download, [drive.uuid, "taken.img", "--force", "-c", "64k"], { env: stub.env, cwd: dir });
  expect(forced.status).toBe(0);
  expect(same(await fileBytes(path), bytes)).toBe(true);
});

test("a short answer (fetch does not notice a body shorter than promised) is read again", async () => {
  const bytes = imageBytes(6 * CHUNK, 5);
  const drive = stub.addDrive(bytes.length, {}, bytes);
  let cut = 0;
  stub.handlers.push((request, path) => {
    if (request.method !== "GET" || path !== `/drives/${drive.uuid}/read/${2 * CHUNK}/${CHUNK}` || cut++ > 0)
      return undefined;
    return new Response(bytes.slice(2 * CHUNK, 2 * CHUNK + 1000));
  });
  const result = await run(download, [drive.uuid, "short.img", "-c", "64k"], { env: stub.env, cwd: dir });
  expect(result.status).toBe(0);
  expect(same(await fileBytes(join(dir, "short.img")), bytes)).toBe(true);
  expect(reads().length).toBe(7);
});

test("every 7th read failing (500 and dropped connections) still comes back byte for byte", async () => {
  const bytes = imageBytes(30 * CHUNK + 77, 6);
  const drive = stub.addDrive(bytes.length, {}, bytes);
  stub.fault({ method: "GET", path: /\/read\//, every: 7, action: { status: 503, kind: "system" } });
  stub.fault({ method: "GET", path: /\/read\//, every: 11, action: { reset: true } });
  const result = await run(download, [drive.uuid, "flaky.img", "-c", "64k"], { env: stub.env, cwd: dir });
  expect(result.stderr).not.toMatch(/error/);
  expect(result.status).toBe(0);
  expect(same(await fileBytes(join(dir, "flaky.img")), bytes)).toBe(true);
});

test("a final error stops with exit 1, keeps FILE.part, and a rerun resumes without reading finished chunks again", async () => {
  const chunks = 30;
  const bytes = imageBytes(chunks * CHUNK, 8, [[4 * CHUNK, 9 * CHUNK]]);
  const drive = stub.addDrive(bytes.length, {}, bytes);
  stub.fault({ method: "GET", path: /\/read\//, every: 12, times: 1, action: { status: 401, kind: "auth" } });
  const failed = await run(download, [drive.uuid, "resume.img", "-c", "64k", "--concurrency", "2"], {
    env: stub.env,
    cwd: dir,
  });
  expect(failed.status).toBe(1);
  expect(failed.stderr).toMatch(/401 auth/);
  expect(failed.stderr).toMatch(/resume\.img\.part is kept: rerun the same command/);
  expect(existsSync(join(dir, "resume.img"))).toBe(false);
  expect(existsSync(join(dir, "resume.img.part"))).toBe(true);
  const readBefore = reads().filter((r) => r.status === 200).length;
  expect(readBefore).toBeGreaterThanOrEqual(10);
  // finished = written and journaled; a read in flight when the error came is dropped
  const [journal] = readdirSync(dir).filter((name) => name.startsWith(".drivekit-journal-") && !name.endsWith(".lock"));
  const finished = new Set(
    (await Bun.file(join(dir, journal as string)).text()).trim().split("\n").slice(1).map(Number),
  );
  expect(finished.size).toBeGreaterThanOrEqual(readBefore - 2);

  stub.reset();
  const again = await run(download, [drive.uuid, "resume.img", "-c", "64k"], { env: stub.env, cwd: dir });
  expect(again.stderr).toMatch(/resuming/);
  expect(again.status).toBe(0);
  // (the first run's dropped read may reach the stub late, so count distinct chunks, not requests)
  const chunksRead = new Set(reads().map((r) => Number(r.path.split("/")[4]) / CHUNK));
  expect([...chunksRead].filter((index) => finished.has(index))).toEqual([]);
  expect(chunksRead.size).toBe(chunks - finished.size);
  expect(same(await fileBytes(join(dir, "resume.img")), bytes)).toBe(true);
  expect(readdirSync(dir)).toEqual(["resume.img"]);
});

test("-o starts at an offset and keeps what FILE.part holds before it", async () => {
  const bytes = imageBytes(5 * CHUNK, 10);
  const drive = stub.addDrive(bytes.length, {}, bytes);
  const offset = 2 * CHUNK;
  await Bun.write(join(dir, "vendor.img.part"), bytes.slice(0, offset));
  const result = await run(download, [drive.uuid, "vendor.img", "-c", "64k", "-o", String(offset)], {
    env: stub.env,
    cwd: dir,
  });
  expect(result.status).toBe(0);
  expect(reads().length).toBe(3);
  expect(same(await fileBytes(join(dir, "vendor.img")), bytes)).toBe(true);
});

test("a missing drive is a one-line error with exit 1", async () => {
  const result = await run(download, ["8f9b42b1-1c5a-4a1e-9d8a-0123456789ab", "x.img"], { env: stub.env, cwd: dir });
  expect(result.status).toBe(1);
  expect(result.stderr.trim().split("\n").length).toBe(1);
  expect(result.stderr).toMatch(/404 missing/);
});

test("a FILE in a folder that does not exist fails with exit 1 and leaves no journal behind", async () => {
  const drive = stub.addDrive(3 * CHUNK);
  const result = await run(download, [drive.uuid, "no/such/folder/x.img", "-c", "64k"], { env: stub.env, cwd: dir });
  expect(result.status).toBe(1);
  expect(result.stderr.trim().split("\n").length).toBe(1);
  expect(result.stderr).toContain("cannot write");
  expect(readdirSync(dir)).toEqual([]);
});

test("a download into a .part another live process is writing refuses at once, naming that process", async () => {
  const drive = stub.addDrive(3 * CHUNK, {}, imageBytes(3 * CHUNK, 41));
  const other = Bun.spawn(["sleep", "30"]);
  try {
    const target = join(dir, "busy.img");
    await Bun.write(`${journalPath(dir, `download\0${drive.uuid}\0${target}`)}.lock`, `${other.pid}\n`);
    const result = await run(download, [drive.uuid, "busy.img", "-c", "64k"], { env: stub.env, cwd: dir });
    expect(result.status).toBe(1);
    expect(result.stderr.trim().split("\n").length).toBe(1);
    expect(result.stderr).toContain(`already running in process ${other.pid}`);
    expect(reads().length).toBe(0);
    expect(existsSync(target)).toBe(false);
  } finally {
    other.kill();
  }
});

test("a one-letter secret does not mangle the error line (masking is where a secret can show, not every 'p')", async () => {
  const shortStub = await startStub({ secret: "p" });
  try {
    const result = await run(download, ["8f9b42b1-1c5a-4a1e-9d8a-0123456789ab", "x.img", "--verbose"], {
      env: shortStub.env,
      cwd: dir,
    });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain("Please re-validate your entry");
    expect(result.stderr).toContain("authorization: Basic ****");
    expect(result.stderr).not.toContain(Buffer.from(`${shortStub.user}:p`).toString("base64"));
  } finally {
    await shortStub.stop();
  }
});

/** Upload `bytes` as a new drive of `on`; its UUID. */
async function driveOf(bytes: Uint8Array, on: DriveStub = stub): Promise<string> {
  const source = join(dir, "disk.img");
  await Bun.write(source, bytes);
  const up = await run(upload, [source, "-c", "64k"], { env: on.env, cwd: dir });
  expect(up.status).toBe(0);
  return up.stdout.trim();
}

test("the reads' window: through fetch 5 reads of 4 MiB at most, smaller ones up to the same memory; over sockets from 6 to 12, 8 through a proxy; --concurrency fixes it", () => {
  const client = new HttpClient(new URL("https://api.example.test/"), { credentials: { user: "u", secret: "s" } });
  const own = (env: Record<string, string>) => ({
    sockets: new SocketPool({ proxies: new ProxyRoutes(env) }),
    timeoutMs: 1000,
  });
  const byFetch = api1DriveSource(client, "d", 1 << 30);
  const direct = api1DriveSource(client, "d", 1 << 30, own({}));
  const proxied = api1DriveSource(client, "d", 1 << 30, own({ HTTPS_PROXY: "http://proxy.example.test:3128" }));
  const MIB = 1024 * 1024;
  expect(api1ReadWindow(byFetch, 4 * MIB)).toEqual({ initial: 5, min: 1, max: 5, fixed: false });
  expect(api1ReadWindow(byFetch, CHUNK)).toEqual({ initial: 6, min: 1, max: MAX_WINDOW, fixed: false });
  expect(api1ReadWindow(direct, 4 * MIB)).toEqual({ initial: 6, min: 1, max: 12, fixed: false });
  expect(proxied.heldPerRead(4 * MIB)).toBe(4 * MIB + PROXIED_RECEIVE);
  expect(api1ReadWindow(proxied, 4 * MIB)).toEqual({ initial: 8, min: 1, max: 8, fixed: false });
  expect(api1ReadWindow(byFetch, 4 * MIB, 8)).toEqual({ initial: 8, min: 8, max: 8, fixed: true });
});

describe("a far server (its first answer 60 ms away)", () => {
  let far: DriveStub;
  beforeAll(async () => {
    far = await startStub({ rttMs: 60 });
  });
  afterAll(async () => {
    await far.stop();
  });
  beforeEach(() => far.reset());

  test("the reads go over a few kept connections of the run's own (one per read in flight), not one each; the file is the drive's bytes", async () => {
    const bytes = imageBytes(20 * CHUNK + 1000, 91);
    const drive = await driveOf(bytes, far);
    const front = new Front(far.port);
    try {
      const env = { ...far.env, EHURI: `http://127.0.0.1:${front.port}/` };
      const result = await run(download, [drive, "kept.img", "-c", "64k", "--concurrency", "3", "--verbose"], {
        env,
        cwd: dir,
      });
      expect(result.status).toBe(0);
      expect(same(await fileBytes(join(dir, "kept.img")), bytes)).toBe(true);
      expect(overSockets(far)).toHaveLength(21);
      // the info's own connection (fetch's), and the reads' opened ahead and kept: a handful, not 21
      expect(front.connections).toBeLessThanOrEqual(6);
      // the reads are traced as any request, their credentials masked
      expect(result.stderr).toMatch(
        /> GET http:\/\/127\.0\.0\.1:\d+\/drives\/\S+\/read\/0\/65536 \(own connection\)\n {2}authorization: Basic \*\*\*\*/,
      );
      expect(result.stderr).not.toContain(Buffer.from(`${far.user}:${far.secret}`).toString("base64"));
    } finally {
      front.stop();
    }
  });

  for (const [form, respond] of [
    [
      "chunked",
      (body: Uint8Array) =>
        new Response(
          new ReadableStream({
            pull(controller) {
              controller.enqueue(body);
              controller.close();
            },
          }),
        ),
    ],
    [
      "gzipped",
      (body: Uint8Array) =>
        new Response(Bun.gzipSync(new Uint8Array(body)), {
          headers: { "content-encoding": "gzip", "content-type": "application/octet-stream" },
        }),
    ],
  ] as const) {
    test(`reads answered ${form}: that read is asked again through fetch, and so are the rest; the file is the drive's bytes`, async () => {
      const bytes = imageBytes(6 * CHUNK + 77, 92);
      const drive = await driveOf(bytes, far);
      far.handlers.push((request, path) => {
        const read = /^\/drives\/[^/]+\/read\/(\d+)\/(\d+)$/.exec(path);
        if (request.method !== "GET" || !read) return undefined;
        const [offset, size] = [Number(read[1]), Number(read[2])];
        return respond(far.readDrive(drive, offset, Math.min(size, bytes.length - offset)));
      });
      const result = await run(download, [drive, "form.img", "-c", "64k", "--concurrency", "1", "--verbose"], {
        env: far.env,
        cwd: dir,
      });
      expect(result.status).toBe(0);
      expect(same(await fileBytes(join(dir, "form.img")), bytes)).toBe(true);
      // the first read twice (over a socket, its answer left unread; then through fetch), the rest through fetch
      const all = far.requests.filter((r) => r.method === "GET" && /\/read\//.test(r.path));
      expect(all).toHaveLength(7 + 1);
      expect(overSockets(far).map((r) => r.path)).toEqual([all[0]?.path as string]);
      expect(result.stderr.match(/this read and the next ones go through fetch/g)?.length).toBe(1);
    });
  }
});
