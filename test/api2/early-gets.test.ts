// Ranged GETs asked a round trip before their reads (lib/api2/early-gets.ts): when a read counts as
// nearly done (with numbers), which early GET a read takes and which are dropped, then ranged
// downloads from a far emulator: each range asked once, the file identical; a GET cut mid-body,
// retried; Ctrl-C with GETs asked ahead, and the rerun going on from the journal; an early GET that
// fails is asked afresh by its read.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import download from "../../scripts/download.ts";
import { type EarlyGet, EarlyGets, EndWatch } from "../../lib/api2/early-gets.ts";
import { Watchdog } from "../../lib/watchdog.ts";
import { startStub, type DriveStub } from "../../emulator/server.ts";
import { installApi2, type Api2Stub } from "../../emulator/api2.ts";
import { run, startScript } from "../helpers.ts";
import { randomBytes } from "./direct-emulator.ts";

describe("EndWatch", () => {
  const MIB = 1024 * 1024;

  test("nothing is told before half the read came, however fast its first pieces (a burst of what the runtime held)", () => {
    const end = new EndWatch(4 * MIB);
    expect(end.endsWithin(MIB, 1, 50)).toBe(false);
    expect(end.endsWithin(2 * MIB - 1, 2, 50)).toBe(false);
  });

  test("from the half on, at the pace since then: told once, when the rest takes no longer than a round trip", () => {
    const end = new EndWatch(4 * MIB);
    // the half at 1000 ms, then 1 MiB each 250 ms: 1 MiB left takes 250 ms
    expect(end.endsWithin(2 * MIB, 1000, 100)).toBe(false);
    expect(end.endsWithin(3 * MIB, 1250, 100)).toBe(false);
    // 0.25 MiB left: 62.5 ms at that pace, within a 100 ms round trip
    expect(end.endsWithin(3.75 * MIB, 1437.5, 100)).toBe(true);
    expect(end.endsWithin(3.9 * MIB, 1470, 100)).toBe(false);
  });

  test("a read that is whole, or one that did not move since the half, tells nothing", () => {
    const end = new EndWatch(MIB);
    expect(end.endsWithin(MIB / 2, 10, 1000)).toBe(false);
    expect(end.endsWithin(MIB / 2, 20, 1000)).toBe(false);
    expect(end.endsWithin(MIB, 30, 1000)).toBe(false);
  });
});

describe("EarlyGets", () => {
  function asked(length: number): EarlyGet {
    const controller = new AbortController();
    return {
      length,
      take: async () => ({ kind: "read" }),
      got: () => 0,
      watchdog: new Watchdog(60_000),
      controller,
    };
  }

  test("a read takes the GET asked for exactly its range; those before it are dropped, those after it kept", () => {
    const gets = new EarlyGets();
    const [a, b, c] = [asked(10), asked(10), asked(10)];
    gets.add(0, a);
    gets.add(10, b);
    gets.add(20, c);
    expect(gets.take(10, 10)).toBe(b);
    expect(a.controller.signal.aborted).toBe(true);
    expect(c.controller.signal.aborted).toBe(false);
    expect(gets.size).toBe(1);
    // a retry goes back: it takes nothing and drops nothing
    expect(gets.take(5, 10)).toBeUndefined();
    expect(gets.size).toBe(1);
    gets.clear();
    expect(c.controller.signal.aborted).toBe(true);
    expect(gets.size).toBe(0);
  });

  test("one asked for another length (the drive's last, shorter range) is dropped, not taken", () => {
    const gets = new EarlyGets();
    const short = asked(5);
    gets.add(40, short);
    expect(gets.take(40, 10)).toBeUndefined();
    expect(short.controller.signal.aborted).toBe(true);
  });
});

describe("from a far emulator (40 ms a round trip, 4 MB/s a connection)", () => {
  let stub: DriveStub;
  let api2: Api2Stub;
  let dir: string;
  const SIZE = 2 * 1024 * 1024 + 4097;
  const CHUNK = 256 * 1024;
  const CHUNKS = Math.ceil(SIZE / CHUNK);
  const content = randomBytes(SIZE, 7);
  let drive: string;

  beforeAll(async () => {
    stub = await startStub({ rttMs: 40, connBandwidth: 4_000_000 });
    api2 = await installApi2(stub);
    dir = await mkdtemp(join(tmpdir(), "drivekit-early-"));
    drive = stub.addDrive(SIZE, {}, content).uuid;
  });
  afterAll(async () => {
    api2.stop();
    await stub.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const ranges = () => api2.originRequests.filter((r) => r.status === 206).map((r) => r.headers.range);
  /** A download of the drive into `file` in 256k ranged GETs, three at a time. */
  const downloadRanged = (file: string, ...extra: string[]) =>
    run(download, [drive, file, "-c", "256k", "--concurrency", "3", ...extra], { env: api2.env, cwd: dir });

  test("reads nearly done ask for the next ranges ahead; each range is asked once, the file identical", async () => {
    api2.originRequests.length = 0;
    const result = await downloadRanged("early.raw", "--verbose");
    expect(result.status).toBe(0);
    expect(Buffer.from(readFileSync(join(dir, "early.raw"))).equals(Buffer.from(content))).toBe(true);
    expect(result.stderr).toMatch(/bytes=\d+-\d+ asked a round trip before its read/);
    const asked = ranges();
    expect(asked).toHaveLength(CHUNKS);
    expect(new Set(asked).size).toBe(CHUNKS);
  });

  test("a GET past the first wave cut mid-body: that read is retried, the file identical", async () => {
    api2.originRequests.length = 0;
    stub.faults.push({
      path: /^\/download\/[0-9a-f-]+$/,
      every: 5,
      times: 1,
      action: { reset: true, afterBytes: 100_000 },
    });
    try {
      const result = await downloadRanged("cut.raw");
      expect(result.status).toBe(0);
      expect(Buffer.from(readFileSync(join(dir, "cut.raw"))).equals(Buffer.from(content))).toBe(true);
      expect(stub.faults[0]?.acted).toBe(1);
      expect(ranges()).toHaveLength(CHUNKS);
    } finally {
      stub.faults.length = 0;
    }
  });

  test("Ctrl-C while GETs are asked ahead: exit 130, nothing under the final name; the rerun asks only for what did not come", async () => {
    api2.originRequests.length = 0;
    // the seventh GET at the origin is held until the run is stopped: it is asked once the fourth
    // read is under way, which began when the first ended, so the first three came whole
    let seventh!: () => void;
    const arrived = new Promise<void>((resolve) => {
      seventh = resolve;
    });
    let stopped!: () => void;
    const held = new Promise<void>((resolve) => {
      stopped = resolve;
    });
    let seen = 0;
    api2.originHook = async () => {
      if (++seen !== 7) return undefined;
      seventh();
      await held;
      return new Response("gone\n", { status: 503 });
    };
    try {
      const child = startScript("download", [drive, "stopped.raw", "-c", "256k", "--concurrency", "3"], {
        env: api2.env,
        cwd: dir,
      });
      await arrived;
      child.kill("SIGINT");
      const first = await child.finished;
      stopped();
      expect(first.status).toBe(130);
      expect(first.stderr).toMatch(/interrupted \(SIGINT\)/);
      expect(existsSync(join(dir, "stopped.raw"))).toBe(false);
      expect(existsSync(join(dir, "stopped.raw.part"))).toBe(true);
      api2.originHook = undefined;
      api2.originRequests.length = 0;
      const again = await downloadRanged("stopped.raw");
      expect(again.status).toBe(0);
      expect(Buffer.from(readFileSync(join(dir, "stopped.raw"))).equals(Buffer.from(content))).toBe(true);
      // the rerun went on from the journal: the first three ranges were not asked for again
      const rerun = ranges();
      expect(rerun.length).toBeLessThanOrEqual(CHUNKS - 3);
      for (let i = 0; i < 3; i++) expect(rerun).not.toContain(`bytes=${i * CHUNK}-${(i + 1) * CHUNK - 1}`);
    } finally {
      stopped();
      api2.originHook = undefined;
    }
  });

  test("a GET of a range past the first reads that fails once (asked early or not): the file identical, each range answered once", async () => {
    api2.originRequests.length = 0;
    // the first GET of each range past the first three (the reads the run starts with) fails once:
    // the read of an early one asks afresh, any other is retried
    const failed = new Set<string>();
    api2.originHook = (request) => {
      const range = request.headers.get("range") ?? "";
      const start = Number(/^bytes=(\d+)-/.exec(range)?.[1] ?? 0);
      if (start < 3 * CHUNK || failed.has(range)) return undefined;
      failed.add(range);
      return new Response("busy\n", { status: 503 });
    };
    try {
      const result = await downloadRanged("again.raw");
      expect(result.status).toBe(0);
      expect(Buffer.from(readFileSync(join(dir, "again.raw"))).equals(Buffer.from(content))).toBe(true);
      expect(failed.size).toBe(CHUNKS - 3);
      expect(ranges()).toHaveLength(CHUNKS);
    } finally {
      api2.originHook = undefined;
    }
  });
});
