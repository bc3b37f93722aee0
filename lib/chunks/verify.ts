// --verify: the destination read back (a drive) against the source read again, piece by piece,
// several pieces at once; the first byte that differs is named. A destination a server padded past
// the source's end (a minimum drive size, a size rounded up) must hold zeros there.
import type { Context } from "../context.ts";
import { BufferPool, isAllZero } from "../bytes.ts";
import { OperationError } from "../errors.ts";
import { logRetry, withRetry, type RetryPolicy } from "../retry.ts";
import { formatRate, humanBytes } from "../size.ts";
import { runLimited, Turns } from "./engine.ts";
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

/**
 * Compare `back` with `image`, several pieces at once. With `sha256`, each side's bytes of the
 * image's range are also hashed as they are compared (in order: a piece read early waits, holding
 * its buffers, for the pieces before it, so memory stays one piece per lane): the shared digest.
 */
export async function verifyAgainst(
  ctx: Context,
  image: Source,
  back: ReadBack,
  options: { concurrency: number; retry: Readonly<RetryPolicy>; quiet: boolean; sha256?: boolean },
): Promise<string | undefined> {
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
    const hashes = options.sha256
      ? { ours: new Bun.CryptoHasher("sha256"), theirs: new Bun.CryptoHasher("sha256"), turns: new Turns() }
      : undefined;
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
      const turn = hashes?.turns.take();
      const start = index * piece;
      if (start >= differs || start >= padding) return turn?.done();
      const length = Math.min(piece, end - start);
      const inImage = Math.max(0, Math.min(length, image.size - start));
      const local = ours.take();
      const remote = read.take();
      // both asked before the first await: a sequential source serves its reads in the order they come
      const localRead = inImage > 0 ? image.read(local, inImage, start) : Promise.resolve();
      const remoteRead = readBack(remote, length, start);
      try {
        await Promise.all([localRead, remoteRead]);
        if (hashes && turn) {
          await turn.ready;
          hashes.ours.update(local.subarray(0, inImage));
          hashes.theirs.update(remote.subarray(0, inImage));
        }
        const at = firstDifference(local, remote, inImage);
        if (at < inImage) differs = Math.min(differs, start + at);
        else if (inImage < length && !isAllZero(remote.subarray(inImage, length))) {
          const past = remote.subarray(inImage, length).findIndex((byte) => byte !== 0);
          padding = Math.min(padding, start + inImage + past);
        }
      } finally {
        turn?.done();
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
    const digest = hashes?.ours.digest("hex");
    if (hashes && hashes.theirs.digest("hex") !== digest)
      throw mismatch(`has another sha256 than ${back.against} over its ${image.size} bytes`);
    if (!options.quiet)
      ctx.log.success(
        `verified ${back.shown} against ${back.against} (${humanBytes(end)}, ${formatRate(end, started)})` +
          (digest ? `: sha256 ${digest} on both sides (the first ${image.size} bytes)` : ""),
      );
    return digest;
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
