// Copying an emulated drive's bytes into another file (a clone, a snapshot) the sparse way: only
// the ranges the source holds data in are read (SEEK_DATA through lib/chunks/holes.ts), and only
// the 4 KiB blocks holding a non-zero byte are written (the target is all zeros already), so the
// copy is as sparse as the data.
import { readSync, writeSync } from "node:fs";
import { dataRuns } from "../lib/bytes.ts";
import type { DataMap } from "../lib/chunks/holes.ts";

const STEP = 4 * 1024 * 1024;

/**
 * Copy the first `size` bytes of `from` into `to`, one piece of at most 4 MiB a step; yields after
 * each piece, so an asynchronous caller can let other work run between them (a synchronous one
 * runs it to the end: a copy as of one instant).
 */
export function* copyData(from: number, to: number, size: number, map: DataMap | undefined): Generator<void> {
  const buffer = new Uint8Array(STEP);
  let at = 0;
  // bounded: `at` only grows, by at least one byte a step
  while (at < size) {
    const start = map ? map.nextData(at) : at;
    if (start >= size) return;
    const length = Math.min(STEP, size - start);
    const read = readSync(from, buffer, 0, length, start);
    if (read <= 0) return;
    for (const [head, tail] of dataRuns(buffer.subarray(0, read), start))
      writeSync(to, buffer, head, tail - head, start + head);
    at = start + read;
    yield;
  }
}
