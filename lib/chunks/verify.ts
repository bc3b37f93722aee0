// --verify: the destination read back (a drive) against the source read again, piece by piece,
// several pieces at once; the first byte that differs is named. A destination a server padded past
// the source's end (a minimum drive size, a size rounded up) must hold zeros there.
import type { Context } from "../context.ts";
import { BufferPool, isAllZero } from "../bytes.ts";
import { OperationError } from "../errors.ts";
import { logRetry, withRetry, type RetryPolicy } from "../retry.ts";
import { formatRate, humanBytes } from "../size.ts";
import { runLimited } from "./engine.ts";
import type { Source } from "./endpoints.ts";

/** What a transfer made, to be read back. */
export interface ReadBack {
  /** The destination's bytes (a drive, read back). */
  source: Source;
  /** "drive UUID". */
  shown: string;
  /** How messages name the source: "disk.img", "drive UUID". */
  against: string;
  /** Bytes past the source's size must be zero (the destination was made for it and padded). */
  zerosPast: boolean;
  /** "the upload itself finished; the drive is kept": said with a mismatch. */
  kept: string;
}

/** Bytes compared per step (API 1.0's largest read). */
const PIECE = 4 * 1024 * 1024;

export async function verifyAgainst(
  ctx: Context,
  image: Source,
  back: ReadBack,
  options: { concurrency: number; retry: Readonly<RetryPolicy>; quiet: boolean },
): Promise<void> {
  const theirs = back.source;
  const mismatch = (why: string) => new OperationError(`verify failed: ${back.shown} ${why}; ${back.kept}`);
  try {
    if (theirs.size < image.size)
      throw mismatch(`is shorter than the image (${theirs.size} of ${image.size} bytes) at byte ${theirs.size}`);
    const end = back.zerosPast ? theirs.size : image.size;
    const piece = Math.min(PIECE, theirs.maxRead ?? PIECE, image.maxRead ?? PIECE);
    const ours = new BufferPool(piece);
    const read = new BufferPool(piece);
    const progress = ctx.progress({ label: "verify", total: end, quiet: options.quiet });
    const started = performance.now();
    const controller = new AbortController();
    let checked = 0;
    let differs = Infinity;
    let padding = Infinity;
    const readBack = (buffer: Uint8Array, length: number, start: number) =>
      theirs.remote && !theirs.sequential
        ? withRetry(() => theirs.read(buffer, length, start, controller.signal), {
            policy: options.retry,
            signal: controller.signal,
            onRetry: logRetry(ctx.log, `verify: read at ${start}`, () => undefined),
          })
        : theirs.read(buffer, length, start, controller.signal);
    const compare = async (index: number) => {
      const start = index * piece;
      if (start >= differs || start >= padding) return;
      const length = Math.min(piece, end - start);
      const inImage = Math.max(0, Math.min(length, image.size - start));
      const local = ours.take();
      const remote = read.take();
      // both asked before the first await: a sequential source serves its reads in the order they come
      const localRead = inImage > 0 ? image.read(local, inImage, start) : Promise.resolve();
      const remoteRead = readBack(remote, length, start);
      try {
        await Promise.all([localRead, remoteRead]);
        const at = firstDifference(local, remote, inImage);
        if (at < inImage) differs = Math.min(differs, start + at);
        else if (inImage < length && !isAllZero(remote.subarray(inImage, length))) {
          const past = remote.subarray(inImage, length).findIndex((byte) => byte !== 0);
          padding = Math.min(padding, start + inImage + past);
        }
      } finally {
        await Promise.allSettled([localRead, remoteRead]);
        ours.give(local);
        read.give(remote);
      }
      checked += length;
      progress.update(checked);
    };
    await runLimited(
      Array.from({ length: Math.ceil(end / piece) }, (_, index) => index),
      options.concurrency,
      compare,
      () => controller.abort(),
      () => controller.signal.aborted,
    ).finally(() => progress.finish());
    if (differs !== Infinity)
      throw mismatch(`differs from the image at byte ${differs} (${back.against}: first at byte ${differs})`);
    if (padding !== Infinity) throw mismatch(`holds non-zero bytes past the image's end at byte ${padding}`);
    if (!options.quiet)
      ctx.log.success(
        `verified ${back.shown} against ${back.against} (${humanBytes(end)}, ${formatRate(end, started)})`,
      );
  } finally {
    await theirs.close();
  }
}

/** The first index below `length` where the two differ, or `length`. */
function firstDifference(a: Uint8Array, b: Uint8Array, length: number): number {
  if (Buffer.from(a.buffer, a.byteOffset, length).equals(Buffer.from(b.buffer, b.byteOffset, length))) return length;
  let at = 0;
  while (at < length && a[at] === b[at]) at++;
  return at;
}
