// The first write of an API 1.0 transfer with `--compress auto`: a small raw write that measures
// the link before the first gzip level is chosen.
import type { Source } from "../chunks/endpoints.ts";
import type { Grid } from "../chunks/grid.ts";
import { isAllZero } from "../bytes.ts";
import { isRetryable } from "../retry.ts";
import type { CompressionPlan } from "./compression.ts";

/** Bytes of the probe write: big enough to time on a slow link, small enough to cost little there. */
const PROBE_BYTES = 512 * 1024;

/**
 * Measure the link before choosing a gzip level: send the start of the first chunk that holds data,
 * raw and alone (its chunk is sent whole later: ~0.5 MiB twice), once gzip -1 showed that piece
 * compresses (else raw it is, and nothing is sent); for a sequential source, which is
 * read once in order, zeros where the first pending chunk goes (the caller allows that only on a new
 * drive). On a slow link it says "gzip -6", on a fast one "raw", for the time of one small write
 * either way (bench/RESULTS.md, "Figures the code relies on"), so neither case pays for a wrong
 * first guess over many chunks. Returns the bytes sent (0 when there was nothing to probe).
 */
export async function probeLink(
  source: Source,
  grid: Grid,
  done: ReadonlySet<number>,
  write: (start: number, body: Uint8Array) => Promise<void>,
  plan: CompressionPlan,
): Promise<number> {
  // small chunks are their own quick probe: the first decision comes after a few of them
  if (grid.chunk < 2 * PROBE_BYTES) return 0;
  for (let index = grid.first, looked = 0; index < grid.count && looked < 64; index++, looked++) {
    if (done.has(index)) continue;
    const start = grid.rangeOf(index)[0];
    const length = Math.min(PROBE_BYTES, source.size - start);
    if (length < PROBE_BYTES) return 0;
    if (source.dataMap && source.dataMap.nextData(start) >= start + length) continue;
    const bytes = new Uint8Array(length);
    try {
      if (!source.sequential) {
        await source.read(bytes, length, start);
        if (isAllZero(bytes)) continue;
        // how the image compresses (cheap next to the write): an image that does not goes raw, the link
        // need not be measured
        if (!(await plan.sample(bytes))) return 0;
      }
      const began = performance.now();
      await write(start, bytes);
      plan.seed(length, performance.now() - began);
      return length;
    } catch (error) {
      // a failing probe says nothing about the link: the chunks themselves retry or stop
      if (isRetryable(error)) return 0;
      throw error;
    }
  }
  return 0;
}
