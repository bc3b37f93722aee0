// API 2.0 download written sparse: zero 4 KiB blocks stay holes, resume stays exact (the chunks that
// came whole are kept, the rest asked for in ranges), against the emulator's download origin (emulator/api2.ts).
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import download from "../../scripts/download.ts";
import { startStub, type DriveStub } from "../../emulator/server.ts";
import { installApi2, type Api2Stub } from "../../emulator/api2.ts";
import { run } from "../helpers.ts";
import { errorLines, journaled, ONE_ATTEMPT, waitFor } from "../faults/support.ts";

const MiB = 1024 * 1024;

let stub: DriveStub;
let api2: Api2Stub;
let dir: string;
let baseHandlers: DriveStub["handlers"];

/** Mostly zeros: a few data stretches (not on the 4 KiB grid) in `size` bytes. */
function sparseImage(size: number, stretches: Array<[number, number]>, seed = 1): Uint8Array {
  const bytes = new Uint8Array(size);
  let x = seed * 2654435761 + 1;
  for (const [start, length] of stretches) {
    for (let i = start; i < Math.min(size, start + length); i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      bytes[i] = (x & 0xff) | 1;
    }
  }
  return bytes;
}

const allocated = (path: string) => statSync(path).blocks * 512;
const same = (path: string, bytes: Uint8Array) => Buffer.from(readFileSync(path)).equals(Buffer.from(bytes));

beforeAll(async () => {
  stub = await startStub();
  api2 = await installApi2(stub);
  baseHandlers = [...stub.handlers];
  dir = await mkdtemp(join(tmpdir(), "drivekit-api2-sparse-"));
});

afterAll(async () => {
  api2.stop();
  await stub.stop();
  await rm(dir, { recursive: true, force: true });
});

afterEach(() => {
  stub.handlers.splice(0, stub.handlers.length, ...baseHandlers);
  api2.originHook = undefined;
});

// 8 MiB holding about 300 KiB of data: at most ~80 data blocks, the rest holes
const SIZE = 8 * MiB;
const CONTENT = sparseImage(SIZE, [
  [1000, 5000],
  [3 * MiB + 17, 200_000],
  [6 * MiB - 3, 100_000],
]);
let drive: string;

beforeAll(() => {
  drive = stub.addDrive(SIZE, {}, CONTENT).uuid;
});

describe("sparse output", () => {
  for (const [how, flags] of [
    // one stream as on a near link, by flag: a loaded machine may take the emulator for a far server
    ["in one stream", ["--concurrency", "1"]],
    ["in ranged GETs", ["--concurrency", "3", "-c", "1M"]],
  ] as const)
    test(`a mostly-zero drive round trips byte-identical, ${how}, its zero blocks left as holes`, async () => {
      const out = await mkdtemp(join(dir, "out-"));
      const result = await run(download, [drive, "disk.raw", ...flags], { env: api2.env, cwd: out });
      expect(result.status).toBe(0);
      const path = join(out, "disk.raw");
      expect(statSync(path).size).toBe(SIZE);
      expect(same(path, CONTENT)).toBe(true);
      // ~300 KiB of data: a filesystem that allocates 4 KiB blocks needs well under 1 MiB
      expect(allocated(path)).toBeLessThan(1 * MiB);
      expect(result.stderr).toContain("allocated");
      expect(readdirSync(out)).toEqual(["disk.raw"]);
    });

  test("an image that ends with a zero run (and off the 4 KiB grid) gets its full size", async () => {
    const size = 5 * MiB + 123;
    const content = sparseImage(size, [[0, 70_000]], 3);
    const uuid = stub.addDrive(size, {}, content).uuid;
    const out = await mkdtemp(join(dir, "out-"));
    const result = await run(download, [uuid, "tail.raw", "--quiet"], { env: api2.env, cwd: out });
    expect(result.status).toBe(0);
    const path = join(out, "tail.raw");
    expect(statSync(path).size).toBe(size);
    expect(same(path, content)).toBe(true);
    expect(allocated(path)).toBeLessThan(1 * MiB);
  });
});

/**
 * A raw origin that announces all of `bytes`, sends exactly the first `cut` (a socket write may
 * take only part of what it is given: the rest goes out on drain), then closes when told: a
 * transfer cut mid-way (Bun.serve cannot be made to send fewer bytes than its Content-Length).
 * The close waits for the event that the download took every byte: a fetch body that fails drops
 * the pieces it holds but has not handed over yet, which would make what a cut leaves depend on timing.
 */
function cuttingOrigin(bytes: Uint8Array, cut: number) {
  const head = new TextEncoder().encode(
    `HTTP/1.1 200 OK\r\nContent-Length: ${bytes.length}\r\nConnection: close\r\n\r\n`,
  );
  const answer = Buffer.concat([head, bytes.subarray(0, cut)]);
  // what each connection has still to send (none yet: its request has not come)
  const unsent = new Map<Bun.Socket, Uint8Array>();
  let cutting = false;
  const sendRest = (socket: Bun.Socket) => {
    let rest = unsent.get(socket);
    if (!rest) return;
    // each pass sends at least one byte, or stops until the socket drains
    while (rest.length > 0) {
      const sent = socket.write(rest);
      if (sent <= 0) break;
      rest = rest.subarray(sent);
    }
    unsent.set(socket, rest);
    if (rest.length === 0 && cutting) socket.end();
  };
  const server = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      data(socket) {
        if (unsent.has(socket)) return;
        unsent.set(socket, answer);
        sendRest(socket);
      },
      drain: sendRest,
      close(socket) {
        unsent.delete(socket);
      },
      error() {},
    },
  });
  return {
    url: `http://127.0.0.1:${server.port}/cut`,
    /** End each connection once all its bytes are out. */
    cut(): void {
      cutting = true;
      for (const socket of unsent.keys()) sendRest(socket);
    },
    stop: () => server.stop(true),
  };
}

/** Chunks of the downloads here: 1 MiB. */
const CHUNK = MiB;

/**
 * Run a download against a cutting origin; the connection is cut once the journal records every
 * chunk before `cut` (a multiple of the chunk size).
 */
async function downloadCut(origin: ReturnType<typeof cuttingOrigin>, file: string, out: string, cut: number) {
  const running = run(download, [drive, file, "--quiet", "-c", "1M"], {
    env: api2.env,
    cwd: out,
    retry: ONE_ATTEMPT,
  });
  await waitFor(() => journaled(out).size >= cut / CHUNK, `${file}.part to hold ${cut} bytes`);
  origin.cut();
  return running;
}

/** The .part holds the drive's bytes before `cut`, its journal records those chunks and no others. */
function expectKept(out: string, file: string, cut: number): void {
  const part = join(out, `${file}.part`);
  expect(statSync(part).size).toBe(SIZE);
  expect(same(part, new Uint8Array([...CONTENT.subarray(0, cut), ...new Uint8Array(SIZE - cut)]))).toBe(true);
  expect([...journaled(out)].sort((a, b) => a - b)).toEqual([...Array(cut / CHUNK).keys()]);
}

describe("resume", () => {
  test("a cut download (retries off) resumes with Range into the same sparse .part: identical, holes kept", async () => {
    const out = await mkdtemp(join(dir, "out-"));
    const cut = 4 * MiB;
    const cutting = cuttingOrigin(CONTENT, cut);
    // the download origin sends every request on to the cutting one (which ignores Range)
    api2.originHook = () => new Response(null, { status: 302, headers: { location: cutting.url } });
    const first = await downloadCut(cutting, "cut.raw", out, cut);
    cutting.stop();
    expect(first.status).toBe(1);
    expect(errorLines(first).errors).toHaveLength(1);
    expect(existsSync(join(out, "cut.raw"))).toBe(false);
    // every chunk that came whole before the cut is kept, and nothing else
    expectKept(out, "cut.raw", cut);
    expect(first.stderr).toContain("cut.raw.part is kept");

    api2.originHook = undefined;
    api2.originRequests.length = 0;
    const second = await run(download, [drive, "cut.raw", "-c", "1M", "--concurrency", "1"], {
      env: api2.env,
      cwd: out,
    });
    expect(second.status).toBe(0);
    // the rest (in one stream, as from a near server) from where the kept chunks end
    expect(api2.originRequests.map((r) => [r.headers.range, r.status])).toEqual([[`bytes=${cut}-`, 206]]);
    const path = join(out, "cut.raw");
    expect(same(path, CONTENT)).toBe(true);
    expect(allocated(path)).toBeLessThan(1 * MiB);
    expect(readdirSync(out)).toEqual(["cut.raw"]);
  });

  test("a server that ignores Range: the full body from 0, identical and sparse", async () => {
    const out = await mkdtemp(join(dir, "out-"));
    // an earlier run's .part holding wrong bytes: none of them may survive the restart
    writeFileSync(join(out, "norange.raw.part"), new Uint8Array(2 * MiB).fill(0xee));
    // bytes, not a Bun.file: Bun.serve would answer the Range of a file body by itself
    api2.originHook = (_request, d) => new Response(stub.readDrive(d.uuid));
    const result = await run(download, [drive, "norange.raw"], { env: api2.env, cwd: out });
    expect(result.status).toBe(0);
    expect(result.stderr).toContain("starting again from 0");
    const path = join(out, "norange.raw");
    expect(same(path, CONTENT)).toBe(true);
    expect(allocated(path)).toBeLessThan(1 * MiB);
  });

  test("a 206 whose Content-Range is not what was asked: nothing of it is written, a clean restart from 0", async () => {
    const out = await mkdtemp(join(dir, "out-"));
    const have = 1 * MiB;
    writeFileSync(join(out, "badrange.raw.part"), CONTENT.subarray(0, have));
    api2.originHook = (request, d) =>
      request.headers.get("range")
        ? new Response(stub.readDrive(d.uuid, 4096), {
            status: 206,
            headers: { "content-range": `bytes 4096-${d.size - 1}/${d.size}` },
          })
        : undefined;
    api2.originRequests.length = 0;
    const result = await run(download, [drive, "badrange.raw"], { env: api2.env, cwd: out });
    expect(result.status).toBe(0);
    expect(result.stderr).toContain("starting again from 0");
    // the bytes come from the one GET without Range, from 0
    const last = api2.originRequests.at(-1);
    expect([last?.headers.range, last?.status]).toEqual([undefined, 200]);
    expect(api2.originRequests.map((r) => r.headers.range).filter((range) => range === undefined)).toHaveLength(1);
    const path = join(out, "badrange.raw");
    expect(same(path, CONTENT)).toBe(true);
    expect(allocated(path)).toBeLessThan(1 * MiB);
  });
});

describe("short body", () => {
  test("a body shorter than Content-Length (retries off): exit 1, .part kept with the chunks that came whole, no final file", async () => {
    const out = await mkdtemp(join(dir, "out-"));
    const cut = 3 * MiB;
    const server = cuttingOrigin(CONTENT, cut);
    stub.handlers.unshift((_request, path) =>
      path.endsWith("/download/") ? new Response(null, { status: 302, headers: { location: server.url } }) : undefined,
    );
    const result = await downloadCut(server, "short.raw", out, cut);
    server.stop();
    expect(result.status).toBe(1);
    expect(errorLines(result).errors).toHaveLength(1);
    expect(existsSync(join(out, "short.raw"))).toBe(false);
    expect(result.stderr).toContain("short.raw.part is kept");
    expectKept(out, "short.raw", cut);
  });
});
