// The window of requests in flight (lib/chunks/window.ts): the policy fed numbers (a link modelled
// as throughput for a number in flight, time as counted here, no clock), then through the transfer
// driver against the emulator, counting the requests it holds at once (never timing them).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type Clocks,
  fixedWindow,
  startWithin,
  TransferWindow,
  WINDOW_MEMORY,
  windowFor,
  type WindowPolicy,
} from "../../lib/chunks/window.ts";
import { api1WriteWindow } from "../../lib/api1/drive-destination.ts";
import download from "../../scripts/download.ts";
import upload from "../../scripts/upload.ts";
import { startStub, type DriveStub } from "../../emulator/server.ts";
import { installApi2, type Api2Stub } from "../../emulator/api2.ts";
import { elasticError } from "../../emulator/errors.ts";
import { run } from "../helpers.ts";
import { imageBytes, sameBytes } from "../images.ts";
import { FAST_RETRY } from "../faults/support.ts";

const CHUNK = 4 * 1024 * 1024;

/**
 * Feed `window` `completions` chunks over a link that moves `rate(size)` bytes per ms with `size`
 * requests in flight, the process using `cpu` of a core meanwhile; the sizes it took.
 */
function drive(window: TransferWindow, rate: (size: number) => number, completions: number, cpu = 0.1): number[] {
  const clocks = clocksOf.get(window) as TestClocks;
  for (let i = 0; i < completions; i++) {
    // the window's requests share the link: one completes every CHUNK / rate ms
    const ms = CHUNK / rate(window.size);
    clocks.ms += ms;
    clocks.cpu += ms * cpu;
    window.completed(CHUNK);
  }
  return window.sizes;
}

/** Clocks a test moves by hand. */
class TestClocks implements Clocks {
  ms = 0;
  cpu = 0;
  now = () => this.ms;
  cpuMs = () => this.cpu;
}

const clocksOf = new WeakMap<TransferWindow, TestClocks>();

/** A window on clocks of its own, at 0 (`drive` moves them). */
function windowOf(policy: WindowPolicy): TransferWindow {
  const clocks = new TestClocks();
  const window = new TransferWindow(policy, clocks);
  clocksOf.set(window, clocks);
  return window;
}

const adaptive = (initial: number, max: number): WindowPolicy => ({ initial, min: 1, max, fixed: false });

describe("the policy", () => {
  test("a far link (each request waits a round trip): it doubles while each doubling moves about twice as much, up to its max", () => {
    const window = windowOf(adaptive(4, 48));
    // 100 ms per request: 4 MiB per 100 ms per request in flight
    drive(window, (size) => (size * CHUNK) / 100, 400);
    expect(window.sizes.slice(0, 5)).toEqual([4, 8, 16, 32, 48]);
    expect(window.size).toBe(48);
  });

  test("a link full at 6 requests: it goes back to the last window that moved more, and stays there", () => {
    const window = windowOf(adaptive(2, 48));
    drive(window, (size) => (Math.min(size, 6) * CHUNK) / 100, 400);
    // 2, 4, 8 (6 move 1.5 times what 4 did), 16 (no more than 6 again): back to 8, trying 9 now and then
    expect(window.sizes.slice(0, 5)).toEqual([2, 4, 8, 16, 8]);
    expect(Math.max(...window.sizes.slice(4))).toBeLessThanOrEqual(9);
    expect(window.size).toBe(8);
  });

  test("a link where more in flight moves no more, the process waiting: it tries twice as many, goes back, tries one more now and then", () => {
    const window = windowOf(adaptive(8, 48));
    drive(window, () => CHUNK / 5, 400);
    expect(window.sizes.slice(0, 3)).toEqual([8, 16, 8]);
    expect(Math.max(...window.sizes.slice(2))).toBeLessThanOrEqual(9);
    expect(window.size).toBe(8);
  });

  test("a near link, the process busy moving the bytes (a core or more): it never tries more, whatever the link", () => {
    const near = windowOf(adaptive(6, 48));
    drive(near, () => CHUNK / 5, 400, 1.0);
    expect(near.sizes).toEqual([6]);
    // even where more would move more: the process is what limits it
    const busy = windowOf(adaptive(6, 48));
    drive(busy, (size) => (size * CHUNK) / 100, 400, 0.9);
    expect(busy.sizes).toEqual([6]);
    // once it waits again, growth resumes
    const later = windowOf(adaptive(6, 48));
    drive(later, (size) => (size * CHUNK) / 100, 40, 0.9);
    drive(later, (size) => (size * CHUNK) / 100, 400, 0.2);
    expect(later.size).toBeGreaterThan(6);
  });

  test("a busy server halves it, once a round, never below its min; it grows again only one at a time", () => {
    const window = windowOf(adaptive(16, 48));
    window.busy();
    window.busy();
    expect(window.size).toBe(8);
    // a round (8 completions) later, busy again
    for (let i = 1; i <= 8; i++) window.completed(CHUNK);
    window.busy();
    expect(window.size).toBe(4);
    const floor = windowOf({ initial: 2, min: 2, max: 8, fixed: false });
    floor.busy();
    expect(floor.size).toBe(2);
    // after a busy answer no doubling: a far link brings it back one at a time
    drive(window, (size) => (size * CHUNK) / 100, 40);
    const after = window.sizes.slice(window.sizes.indexOf(4, 2));
    for (let i = 1; i < after.length; i++)
      expect((after[i] as number) - (after[i - 1] as number)).toBeLessThanOrEqual(1);
  });

  test("--concurrency fixes it: no growth, no halving", () => {
    const window = windowOf(fixedWindow(3));
    drive(window, (size) => (size * CHUNK) / 100, 100);
    window.busy();
    expect(window.sizes).toEqual([3]);
    expect(window.max).toBe(3);
  });

  test("its max is what memory holds: chunk x window, capped; never below the start", () => {
    expect(windowFor(8, 4 * 1024 * 1024, undefined, 48 * 1024 * 1024)).toEqual({
      initial: 8,
      min: 1,
      max: 12,
      fixed: false,
    });
    expect(windowFor(4, 1024 * 1024, undefined, 48 * 1024 * 1024).max).toBe(48);
    expect(windowFor(4, 16 * 1024 * 1024, undefined, 48 * 1024 * 1024).max).toBe(4);
    expect(windowFor(4, 1024, undefined, 48 * 1024 * 1024).max).toBe(64);
    expect(windowFor(4, 1024, 2)).toEqual(fixedWindow(2));
  });

  test("a start within memory: what is wanted, or fewer where each request holds more", () => {
    expect(startWithin(12, 4 * 1024 * 1024)).toBe(12);
    expect(startWithin(12, 8 * 1024 * 1024)).toBe(6);
    expect(startWithin(12, 64 * 1024 * 1024)).toBe(1);
    // within other memory than WINDOW_MEMORY (an upload's writes: 64 MiB)
    expect(startWithin(16, 8 * 1024 * 1024, 64 * 1024 * 1024)).toBe(8);
  });

  test("API 1.0 writes: all that memory holds at the start, 16 of 4 MiB (a write holds its chunk once), gzipped (twice as much each) 8; a copy's 12; smaller chunks 16", () => {
    expect(api1WriteWindow(CHUNK)).toEqual({ initial: 16, min: 1, max: 16, fixed: false });
    expect(api1WriteWindow(2 * CHUNK)).toEqual({ initial: 8, min: 1, max: 8, fixed: false });
    expect(api1WriteWindow(CHUNK, undefined, WINDOW_MEMORY)).toEqual({ initial: 12, min: 1, max: 12, fixed: false });
    expect(api1WriteWindow(64 * 1024).initial).toBe(16);
    expect(api1WriteWindow(CHUNK, 3)).toEqual(fixedWindow(3));
  });
});

describe("through the driver, counted in the emulator", () => {
  let stub: DriveStub;
  let api2: Api2Stub;
  let dir: string;
  const SIZE = 96 * 64 * 1024;
  const bytes = imageBytes(SIZE, 7);

  beforeAll(async () => {
    stub = await startStub();
    api2 = await installApi2(stub);
    dir = await mkdtemp(join(tmpdir(), "drivekit-window-"));
    await Bun.write(join(dir, "disk.img"), bytes);
  });
  afterAll(async () => {
    api2.stop();
    await stub.stop();
    await rm(dir, { recursive: true, force: true });
  });

  /**
   * Hold each matching request 20 ms (a far server: more in flight moves more) and count how many
   * the emulator holds at once; `answer` may answer one itself.
   */
  function counting(
    match: (request: Request, path: string) => boolean,
    answer?: (path: string) => Response | undefined,
  ): { peak: () => number; arrivals: Array<{ active: number; path: string }> } {
    let active = 0;
    let peak = 0;
    /** Each matching request, with the number in flight at its arrival (itself included). */
    const arrivals: Array<{ active: number; path: string }> = [];
    stub.handlers.unshift(async (request, path) => {
      if (!match(request, path)) return undefined;
      active++;
      peak = Math.max(peak, active);
      arrivals.push({ active, path });
      try {
        return answer?.(path);
      } finally {
        await Bun.sleep(20);
        active--;
      }
    });
    return { peak: () => peak, arrivals };
  }

  /** A drive of `bytes` downloaded into `file` over the API `env` names, identical. */
  async function downloadOver(env: Record<string, string>, file: string, argv: string[] = []): Promise<void> {
    const uuid = stub.addDrive(SIZE, {}, bytes).uuid;
    const result = await run(download, [uuid, file, "-c", "64k", "--force", ...argv], {
      env,
      cwd: dir,
      retry: FAST_RETRY,
    });
    expect(result.status).toBe(0);
    expect(sameBytes(new Uint8Array(await Bun.file(join(dir, file)).arrayBuffer()), bytes)).toBe(true);
  }

  const cases = [
    {
      name: "API 1.0 download",
      start: 6,
      match: (request: Request, path: string) => request.method === "GET" && /\/read\//.test(path),
      run: () => downloadOver(stub.env, "out.img"),
    },
    {
      name: "API 2.0 download",
      start: 6,
      match: (request: Request, path: string) => request.method === "GET" && /\/download\/$/.test(path),
      run: async () => {
        // the drive's size comes a far link's round trip late: ranged GETs, not one stream
        stub.handlers.unshift(async (request, path) => {
          if (request.method === "GET" && /^\/api\/2\.0\/drives\/[0-9a-f-]{36}\/$/.test(path)) await Bun.sleep(60);
          return undefined;
        });
        try {
          await downloadOver(api2.env, "out2.img");
        } finally {
          stub.handlers.shift();
        }
      },
    },
    {
      name: "API 1.0 upload",
      start: 8,
      match: (request: Request, path: string) => request.method === "POST" && /\/write\//.test(path),
      run: async () => {
        const result = await run(upload, [join(dir, "disk.img"), "-c", "64k", "--compress", "never"], {
          env: stub.env,
          cwd: dir,
        });
        expect(result.status).toBe(0);
        expect(sameBytes(stub.readDrive(result.stdout.trim(), 0, SIZE), bytes)).toBe(true);
      },
    },
    {
      name: "API 2.0 chunked upload",
      start: 6,
      match: (request: Request, path: string) => request.method === "POST" && /\/upload\/chunk\//.test(path),
      run: async () => {
        const result = await run(upload, [join(dir, "disk.img"), "-c", "64k", "--no-wait"], {
          env: api2.env,
          cwd: dir,
        });
        expect(result.status).toBe(0);
        expect(sameBytes(stub.readDrive(result.stdout.trim(), 0, SIZE), bytes)).toBe(true);
      },
    },
  ];

  for (const path of cases) {
    test(`${path.name}: under latency the requests in flight grow past the ${path.start} it starts with`, async () => {
      const count = counting(path.match);
      try {
        await path.run();
      } finally {
        stub.handlers.shift();
      }
      expect(count.peak()).toBeGreaterThan(path.start);
    });
  }

  test("API 1.0 download: a busy answer halves the requests in flight", async () => {
    const busy = new Set<string>();
    // once 16 are in flight (the window grew past twice its start), three reads in a row are answered busy
    const count = counting(
      (request, path) => request.method === "GET" && /\/read\//.test(path),
      (path) => {
        if (busy.size < 3 && (busy.size > 0 || (count.arrivals.at(-1)?.active ?? 0) >= 16)) {
          busy.add(path);
          return elasticError(409, "busy", "Drive is busy");
        }
        return undefined;
      },
    );
    try {
      await downloadOver(stub.env, "busy.img");
    } finally {
      stub.handlers.shift();
    }
    expect(busy.size).toBe(3);
    // a busy read is asked again once the client has its answer: from then on the window is halved
    const asked = count.arrivals.map(({ path }) => path);
    const firstRetry = asked.findIndex((path, at) => busy.has(path) && asked.indexOf(path) < at);
    const lastRetry = asked.findLastIndex((path, at) => busy.has(path) && asked.indexOf(path) < at);
    const window = Math.max(...count.arrivals.slice(0, firstRetry).map(({ active }) => active));
    // the reads started after it (the retries went on in their own lanes): at most half as many at once (one more: a probe)
    const after = count.arrivals.slice(lastRetry + 1, lastRetry + 1 + 2 * window).map(({ active }) => active);
    expect(after.length).toBeGreaterThan(0);
    expect(Math.max(...after)).toBeLessThanOrEqual(Math.ceil(window / 2) + 1);
  });
});
