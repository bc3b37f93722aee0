// The transfer driver: one source into one destination, whatever each is. It owns what every
// transfer shares: the run lock, the destination's resume record, the window of chunks in flight,
// retries, GC pacing, progress, Ctrl-C, the one stop line, abandoning what a run made when its
// source broke, and --verify. The ends (endpoints.ts) only move bytes.
import type { Context, Progress } from "../context.ts";
import { BufferPool, isAllZero } from "../bytes.ts";
import { InputError, InterruptedError, messageOf, OperationError } from "../errors.ts";
import { isBusy, logRetry, withRetry, type RetryPolicy } from "../retry.ts";
import { humanBytes } from "../size.ts";
import { abortOnInterrupt, GC_EVERY, GcPacing, type Interrupt, runLimited, Turns } from "./engine.ts";
import type { Chunk, Destination, Opened, RunStats, Source } from "./endpoints.ts";
import type { Grid } from "./grid.ts";
import { journalPath } from "./journal.ts";
import { RunLock } from "./lock.ts";
import { verifyAgainst } from "./verify.ts";
import { PROCESS_CLOCKS, TransferWindow, type WindowPolicy } from "./window.ts";

export interface TransferRun {
  /** The progress label: "upload", "download", "copy". */
  label: string;
  source: Source;
  destination: Destination;
  /**
   * What makes this transfer this one (the same source and target): names its journal and run lock;
   * and how the refusal of a second run names it ("the upload of disk.img"). Undefined: a run that
   * keeps nothing between runs (one POST), so nothing to lock.
   */
  record?: { identity: string; name: string };
  /** Chunks in flight at once: how many, and how the number follows the link (the destination's lanes may lower it). */
  window: WindowPolicy;
  retry: Readonly<RetryPolicy>;
  quiet: boolean;
  /** Read the destination back and compare it with the source (read again from its start). */
  verify?: boolean;
  /** With verify: also hash both sides (sha256) as they are compared; called with the digest they share. */
  sha256?: (digest: string) => void;
  /** A stop that comes from outside (a run of many transfers, which handles Ctrl-C once for all); default: this run's own. */
  stop?: Interrupt;
}

/** Chunk indices still to do, in order. */
function* pendingOf(grid: Grid, opened: Opened): Generator<number> {
  for (let index = Math.max(grid.first, opened.from ?? 0); index < grid.count; index++)
    if (!opened.done.has(index)) yield index;
}

/** Bytes done before this run: all before the first chunk still to do (-o, a prefix the destination holds), and the chunks recorded after it. */
function bytesBefore(grid: Grid, size: number, opened: Opened): number {
  const from = Math.max(grid.first, opened.from ?? 0);
  let bytes = from >= grid.count ? size : grid.rangeOf(from)[0];
  for (const index of opened.done) {
    if (index < from || index >= grid.count) continue;
    const [start, end] = grid.rangeOf(index);
    bytes += end - start;
  }
  return bytes;
}

/** Run `run.source` into `run.destination`; resolves to what the destination made (a drive UUID, a path). */
export async function runTransfer(ctx: Context, run: TransferRun): Promise<string> {
  const journalFile = run.record ? journalPath(ctx.cwd, run.record.identity) : "";
  const lock = run.record && RunLock.acquire(journalFile, run.record.name);
  try {
    const opened = await run.destination.open(journalFile);
    const result = await moveChunks(ctx, run, opened);
    if (run.verify) {
      const digest = await verify(ctx, run, result);
      if (digest) run.sha256?.(digest);
    }
    return result;
  } finally {
    lock?.release();
  }
}

/** Compare the destination with the source; the sha256 both share when asked for. */
async function verify(ctx: Context, run: TransferRun, result: string): Promise<string | undefined> {
  const source = run.source;
  // a sequential source is read again from its start
  const again = source.sequential && source.reopen ? await source.reopen() : source;
  try {
    const readBack = run.destination.readBack;
    if (!readBack) throw new OperationError(`internal: ${run.destination.what()} cannot be read back to verify it`);
    return await verifyAgainst(ctx, again, await readBack.call(run.destination, result), {
      concurrency: run.window.initial,
      retry: run.retry,
      quiet: run.quiet,
      sha256: run.sha256 !== undefined,
    });
  } finally {
    if (again !== source) await again.close();
  }
}

async function moveChunks(ctx: Context, run: TransferRun, opened: Opened): Promise<string> {
  const dest = run.destination;
  const grid = dest.grid;
  const stats: RunStats = {
    before: bytesBefore(grid, run.source.size, opened),
    skipped: 0,
    retries: 0,
    seconds: 0,
    started: performance.now(),
  };
  let progress: Progress | undefined;
  if (opened.complete) ctx.log.info(opened.complete);
  else progress = await runChunks(ctx, run, opened, stats);
  let result: string;
  try {
    result = await dest.finish(stats);
  } catch (error) {
    progress?.finish();
    await opened.close();
    throw error;
  }
  progress?.finish(await dest.summary(stats));
  // the transfer is whole: a failed wait or verify must not turn a rerun into a fresh one
  opened.remove();
  await dest.settle?.();
  return result;
}

/** The chunks still to do, the window's number at a time; the run's progress display, for the summary. */
async function runChunks(ctx: Context, run: TransferRun, opened: Opened, stats: RunStats): Promise<Progress> {
  const dest = run.destination;
  const total = run.source.size;
  let done = stats.before;
  let moving = 0;
  // the source's garbage (the pieces of a drive's answers) and the destination's (its requests, its compression)
  const gc = new GcPacing(() => Math.min(run.source.gcEvery ?? Number.POSITIVE_INFINITY, dest.gcEvery ?? GC_EVERY));
  const progress = ctx.progress({ label: run.label, total, quiet: run.quiet });
  const { controller, interrupted, remove } = abortOnInterrupt(run.stop);
  const signal = controller.signal;
  const window = new TransferWindow(run.window, PROCESS_CLOCKS);
  /** The source itself failed (damaged, truncated, longer than its size): no resume can help. */
  let inputFailure: InputError | undefined;
  const mover = chunkMover(ctx, run, opened, stats, {
    showProgress: () => progress.update(done + moving, dest.note?.(stats)),
    window,
  });
  const step = async (index: number) => {
    let moved = 0;
    let covered: number;
    try {
      const outcome = await mover(index, signal, (sent) => {
        moving += sent - moved;
        moved = sent;
      });
      covered = outcome.covered;
      // a chunk left out made no request: it says nothing about the link
      if (outcome.requested) window.completed(covered);
    } catch (error) {
      if (error instanceof InputError) inputFailure ??= error;
      throw error;
    } finally {
      moving -= moved;
    }
    done += covered;
    const collection = gc.moved(covered);
    if (collection) Bun.gc(collection === "full");
    progress.update(done, dest.note?.(stats));
  };
  try {
    await dest.prepare?.(signal);
    await runLimited(
      pendingOf(dest.grid, opened),
      window.max,
      step,
      () => controller.abort(),
      () => signal.aborted,
      () => Math.min(window.size, dest.lanes?.() ?? window.size),
    );
    if (interrupted()) throw new OperationError(`interrupted (${interrupted()})`);
    await run.source.confirm?.(signal);
  } catch (error) {
    if (error instanceof InputError) inputFailure ??= error;
    await opened.close();
    progress.finish();
    if (inputFailure && dest.abandon) {
      opened.remove();
      throw await dest.abandon(inputFailure);
    }
    const stoppedBy = interrupted();
    const reason = stoppedBy ? `interrupted (${stoppedBy})` : messageOf(error);
    const at = done + moving;
    const message = dest.stopLine
      ? dest.stopLine(error, reason, at, stoppedBy)
      : `${dest.what()} stopped at ${humanBytes(at)} of ${humanBytes(total)}: ${reason}; ${dest.resumeHint()}`;
    throw stoppedBy ? new InterruptedError(message, stoppedBy) : new OperationError(message);
  } finally {
    remove();
    if (!run.window.fixed) ctx.log.debug(`chunks in flight: ${window.sizes.join(" -> ")}`);
  }
  stats.seconds = (performance.now() - stats.started) / 1000;
  return progress;
}

/**
 * One chunk, from the source into the destination: left out when the destination holds zeros
 * there already, else read (unless the destination streams it from a local source itself) and
 * written, each retried when the failure may pass (a busy server halves the window), then
 * recorded. Resolves to the bytes it covered, and whether it made a request for them.
 */
function chunkMover(
  ctx: Context,
  run: TransferRun,
  opened: Opened,
  stats: RunStats,
  { showProgress, window }: { showProgress: () => void; window: TransferWindow },
): (
  index: number,
  signal: AbortSignal,
  moved: (sent: number) => void,
) => Promise<{ covered: number; requested: boolean }> {
  const { source, destination: dest, retry: policy } = run;
  const grid = dest.grid;
  const pool = new BufferPool(grid.chunk);
  const turns = source.sequential ? new Turns() : undefined;
  // a local source that can be read anywhere goes straight into a streaming destination's socket;
  // one that cannot be read twice (or a drive) is read whole first, so that a retry sends it again
  const streamed = Boolean(dest.streams) && (Boolean(dest.once) || (!source.remote && !source.sequential));
  const scan = opened.knownZero || Boolean(dest.scansZeros);
  const counted = () => stats.retries++;
  /** A retry's line and count; a busy server also gets fewer requests in flight. */
  const retried = (what: string) => {
    const log = logRetry(ctx.log, what, counted);
    return (error: unknown, retry: number, delayMs: number) => {
      if (isBusy(error)) window.busy();
      log(error, retry, delayMs);
    };
  };

  // a drive's reads are retried here; a sequential source retries its own (only it knows where its stream stands)
  const read = (bytes: Uint8Array, position: number, signal: AbortSignal): Promise<void> =>
    source.remote && !source.sequential
      ? withRetry(() => source.read(bytes, bytes.length, position, signal), {
          policy,
          signal,
          onRetry: retried(`read at ${position}`),
        })
      : source.read(bytes, bytes.length, position, signal);

  /** The chunk's bytes, in reads of at most the source's maxRead, all at once (a sequential source's in order). */
  const readChunk = async (bytes: Uint8Array, start: number, signal: AbortSignal): Promise<void> => {
    const piece = source.maxRead ?? bytes.length;
    if (piece >= bytes.length) return read(bytes, start, signal);
    const reads: Array<Promise<void>> = [];
    for (let at = 0; at < bytes.length; at += piece)
      reads.push(read(bytes.subarray(at, at + piece), start + at, signal));
    // every read settles before the buffer can go back to the pool
    const failed = (await Promise.allSettled(reads)).find((outcome) => outcome.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
  };

  const write = (chunk: Chunk, signal: AbortSignal): Promise<void> =>
    dest.once
      ? dest.write(chunk, signal)
      : withRetry(() => dest.write(chunk, signal), {
          policy,
          signal,
          onRetry: retried(dest.retryName(chunk)),
        });

  const skip = (index: number, length: number) => {
    stats.skipped++;
    opened.record(index);
    return { covered: length, requested: false };
  };

  /** Read the chunk into the destination's room or a pooled buffer, then write it (a hole: zeros, unread). */
  const readAndWrite = async (chunk: Chunk, signal: AbortSignal, turn?: ReturnType<Turns["take"]>) => {
    const { start, length } = chunk;
    const room = dest.room ? await dest.room(chunk, signal) : undefined;
    const buffer = room ?? (length <= grid.chunk ? pool.take() : new Uint8Array(length));
    try {
      const bytes = buffer.subarray(0, length);
      if (chunk.zero) {
        bytes.fill(0);
      } else {
        if (turn) await turn.ready;
        const reading = readChunk(bytes, start, signal);
        turn?.done();
        await reading;
        chunk.zero = scan && isAllZero(bytes);
        if (chunk.zero && opened.knownZero) return false;
      }
      chunk.bytes = bytes;
      await write(chunk, signal);
      return true;
    } finally {
      if (!room && buffer.length === grid.chunk) pool.give(buffer);
    }
  };

  return async (index, signal, moved) => {
    const turn = turns?.take();
    try {
      const [start, end] = grid.rangeOf(index);
      const length = end - start;
      const hole = source.dataMap !== undefined && source.dataMap.nextData(start) >= end;
      if (hole && opened.knownZero) return skip(index, length);
      dest.starting?.(index, signal, window.size);
      const chunk: Chunk = {
        index,
        start,
        length,
        zero: hole,
        moved: (sent) => {
          moved(sent);
          showProgress();
        },
      };
      if (streamed || (hole && !dest.room)) {
        // no bytes to read: the destination streams them itself, or takes zeros without a buffer
        turn?.done();
        await write(chunk, signal);
      } else if (!(await readAndWrite(chunk, signal, turn))) {
        return skip(index, length);
      }
      opened.record(index);
      return { covered: length, requested: true };
    } finally {
      turn?.done();
    }
  };
}
