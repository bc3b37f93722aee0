// The transfer driver (lib/chunks/driver.ts) with ends made in memory: what it does whatever the
// source and destination are. Zero chunks left out only where the destination holds zeros, every
// chunk recorded once, a resume skipping what is recorded, a sequential source read in order even
// through a destination's own room, retries of what may pass (never of a 'once' write), a broken
// source abandoning what the run made, one stop line.
import { afterEach, beforeEach, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Context } from "../../lib/context.ts";
import { runTransfer, type TransferRun } from "../../lib/chunks/driver.ts";
import type { Chunk, Destination, Opened, Source } from "../../lib/chunks/endpoints.ts";
import { evenGrid } from "../../lib/chunks/grid.ts";
import { fixedWindow } from "../../lib/chunks/window.ts";
import { ApiError, InputError } from "../../lib/errors.ts";
import { imageBytes, sameBytes } from "../images.ts";

const CHUNK = 4096;
let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "drivekit-driver-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const quietContext = (): Context => {
  const nothing = () => undefined;
  const log = { info: nothing, warn: nothing, debug: nothing, success: nothing, error: nothing };
  return {
    log: log as unknown as Context["log"],
    verbose: false,
    cwd: dir,
    env: {},
    addSecret: nothing,
    progress: () => ({ update: nothing, finish: nothing }),
  };
};

/** A source over bytes in memory; `sequential` ones refuse to go backwards, as a stream would. */
function memorySource(
  bytes: Uint8Array,
  options: { sequential?: boolean; failAt?: number } = {},
): Source & { asked: number[] } {
  let position = 0;
  const asked: number[] = [];
  return {
    size: bytes.length,
    sequential: options.sequential ?? false,
    asked,
    async read(buffer, length, at) {
      asked.push(at);
      if (options.sequential && at < position) throw new Error(`read at ${at} after ${position}`);
      position = at + length;
      if (options.failAt !== undefined && at + length > options.failAt)
        throw new InputError(`the image is damaged at byte ${options.failAt}`);
      buffer.set(bytes.subarray(at, at + length));
    },
    close: async () => undefined,
  };
}

/** A destination in memory: what it holds, the chunks written and recorded, how it was asked. */
class MemoryDestination implements Destination {
  readonly grid;
  readonly held: Uint8Array;
  readonly written: number[] = [];
  readonly recorded = new Set<number>();
  attempts = 0;
  abandoned?: Error;
  /** Fail the first `failures` writes with an error that may pass. */
  failures = 0;
  once?: boolean;
  room?: (chunk: Pick<Chunk, "start" | "length">) => Promise<Uint8Array>;

  constructor(
    size: number,
    private readonly start: Partial<Opened> = {},
  ) {
    this.grid = evenGrid(size, CHUNK);
    this.held = new Uint8Array(size).fill(0xee);
  }

  async open(): Promise<Opened> {
    return {
      done: new Set(),
      knownZero: false,
      record: (index) => {
        expect(this.recorded.has(index)).toBe(false);
        this.recorded.add(index);
      },
      close: () => undefined,
      remove: () => undefined,
      ...this.start,
    };
  }

  async write(chunk: Chunk): Promise<void> {
    this.attempts++;
    if (this.failures > 0) {
      this.failures--;
      throw new ApiError({ kind: "network", message: "reset", method: "PUT", path: "/x" });
    }
    this.written.push(chunk.index);
    if (chunk.bytes) this.held.set(chunk.bytes, chunk.start);
    else this.held.fill(0, chunk.start, chunk.start + chunk.length);
  }

  retryName = (chunk: Chunk) => `chunk ${chunk.index}`;
  what = () => "copy to memory";
  resumeHint = () => "run it again";
  abandon = async (failure: Error) => {
    this.abandoned = failure;
    return new Error(`${failure.message}; abandoned`);
  };
  finish = async () => "done";
  summary = () => "copied";
}

function transfer(source: Source, destination: Destination, extra: Partial<TransferRun> = {}): Promise<string> {
  return runTransfer(quietContext(), {
    label: "copy",
    source,
    destination,
    record: { identity: `test\0${Math.random()}`, name: "the test copy" },
    window: fixedWindow(3),
    retry: { attempts: 3, baseMs: 1, capMs: 2 },
    quiet: true,
    ...extra,
  });
}

const SIZE = 10 * CHUNK + 100;
const ZEROS: Array<[number, number]> = [[2 * CHUNK, 5 * CHUNK]];

test("every chunk is written once and recorded; zero chunks too where the destination does not hold zeros", async () => {
  const bytes = imageBytes(SIZE, 1, ZEROS);
  const destination = new MemoryDestination(SIZE);
  expect(await transfer(memorySource(bytes), destination)).toBe("done");
  expect(sameBytes(destination.held, bytes)).toBe(true);
  expect([...destination.written].sort((a, b) => a - b)).toEqual([...Array(11).keys()]);
  expect(destination.recorded.size).toBe(11);
});

test("zero chunks are left out (and recorded) where the destination holds zeros", async () => {
  const bytes = imageBytes(SIZE, 2, ZEROS);
  const destination = new MemoryDestination(SIZE, { knownZero: true });
  destination.held.fill(0);
  await transfer(memorySource(bytes), destination);
  expect(sameBytes(destination.held, bytes)).toBe(true);
  expect(destination.written.sort((a, b) => a - b)).toEqual([0, 1, 5, 6, 7, 8, 9, 10]);
  expect(destination.recorded.size).toBe(11);
});

test("a resume writes only what is not recorded, and nothing before the prefix the destination holds", async () => {
  const bytes = imageBytes(SIZE, 3);
  const destination = new MemoryDestination(SIZE, { done: new Set([4, 7]), from: 2 });
  const source = memorySource(bytes);
  await transfer(source, destination);
  expect(destination.written.sort((a, b) => a - b)).toEqual([2, 3, 5, 6, 8, 9, 10]);
  expect(source.asked.every((at) => at >= 2 * CHUNK)).toBe(true);
});

test("a sequential source is asked in order, even when the destination's room makes chunks wait", async () => {
  const bytes = imageBytes(SIZE, 4);
  const destination = new MemoryDestination(SIZE);
  let turn = 0;
  // later chunks get their room sooner than earlier ones
  destination.room = async (chunk) => {
    const wait = 10 - (turn++ % 3) * 5;
    await Bun.sleep(wait);
    return new Uint8Array(chunk.length);
  };
  const source = memorySource(bytes, { sequential: true });
  await transfer(source, destination);
  expect(source.asked).toEqual([...source.asked].sort((a, b) => a - b));
  expect(sameBytes(destination.held, bytes)).toBe(true);
});

test("a write that may pass is tried again; a 'once' destination's write is not", async () => {
  const bytes = imageBytes(SIZE, 5);
  const retried = new MemoryDestination(SIZE);
  retried.failures = 2;
  await transfer(memorySource(bytes), retried);
  expect(retried.attempts).toBe(13);
  expect(sameBytes(retried.held, bytes)).toBe(true);

  const once = new MemoryDestination(SIZE);
  once.once = true;
  once.failures = 1;
  await expect(transfer(memorySource(bytes), once, { window: fixedWindow(1) })).rejects.toThrow(
    /^copy to memory stopped at 0 B of 40 KiB: PUT \/x failed: network: reset; run it again$/,
  );
  expect(once.attempts).toBe(1);
});

test("a source that breaks mid-way: what the run made is abandoned, and the error says so", async () => {
  const bytes = imageBytes(SIZE, 6);
  const destination = new MemoryDestination(SIZE);
  await expect(transfer(memorySource(bytes, { failAt: 6 * CHUNK }), destination)).rejects.toThrow(
    "the image is damaged at byte 24576; abandoned",
  );
  expect(destination.abandoned).toBeInstanceOf(InputError);
});
