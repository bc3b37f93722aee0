// The chunk engine: a bounded parallel runner, the chunk grid, Ctrl-C handling, and `runChunks`,
// which every chunked transfer (API 1.0 upload and download, API 2.0 chunked upload) runs on.
import type { Context, Progress } from "../context.ts";
import { InterruptedError, messageOf, OperationError } from "../errors.ts";
import { humanBytes } from "../size.ts";

/**
 * Run `task` for each item with at most `limit` at once. The first failure stops new starts
 * (`stopped()` turns true, `onFailure` runs, e.g. to abort requests in flight); the ones running
 * finish or fail, then the first failure is thrown.
 */
export async function runLimited<T>(
  items: Iterable<T>,
  limit: number,
  task: (item: T) => Promise<void>,
  onFailure: (error: unknown) => void,
  stopped: () => boolean,
  /** Lanes wanted now (at most `limit`); a lane past it finishes its item and retires for good. */
  lanes?: () => number,
): Promise<void> {
  const iterator = items[Symbol.iterator]();
  let failure: { error: unknown } | undefined;
  const lane = async (_: unknown, index: number) => {
    for (;;) {
      if (failure || stopped()) return;
      if (index > 0 && lanes && index >= lanes()) return;
      const next = iterator.next();
      if (next.done) return;
      try {
        await task(next.value);
      } catch (error) {
        if (!failure) {
          failure = { error };
          onFailure(error);
        }
        return;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, limit) }, lane));
  if (failure) throw failure.error;
}

/** The chunk grid of `size` bytes from `offset`: chunk indices and the byte range each covers. */
export function chunkGrid(size: number, chunk: number, offset: number) {
  const count = Math.ceil(size / chunk);
  const first = Math.floor(offset / chunk);
  const pieceOf = (index: number) => [Math.max(index * chunk, offset), Math.min((index + 1) * chunk, size)] as const;
  /** Bytes already done: all before the offset, and the finished chunks after it. */
  const doneBytes = (finished: Iterable<number>) => {
    let done = offset;
    for (const index of finished) {
      if (index < first) continue;
      const [start, end] = pieceOf(index);
      done += end - start;
    }
    return done;
  };
  return { count, first, pieceOf, doneBytes };
}

/** An AbortController that Ctrl-C or SIGTERM aborts; `interrupted()` names the signal that came. */
export function abortOnInterrupt(): {
  controller: AbortController;
  interrupted: () => string | undefined;
  remove: () => void;
} {
  const controller = new AbortController();
  let received: string | undefined;
  const remove = onInterrupt((signal) => {
    received = signal;
    controller.abort(new OperationError(`interrupted (${signal})`));
  });
  return { controller, interrupted: () => received, remove };
}

/**
 * Ctrl-C and SIGTERM call `stop` (which lets the run end cleanly, the journal written, the
 * resume hint shown); a second signal exits at once. Returns the function that removes the handlers.
 */
export function onInterrupt(stop: (signal: string) => void): () => void {
  let seen = false;
  const handler = (signal: NodeJS.Signals) => {
    if (seen) process.exit(130);
    seen = true;
    stop(signal);
  };
  process.on("SIGINT", handler);
  process.on("SIGTERM", handler);
  return () => {
    process.off("SIGINT", handler);
    process.off("SIGTERM", handler);
  };
}

/**
 * A full garbage collection every this many bytes: fetch and gzip leave chunk-sized buffers behind
 * that Bun's GC does not count as pressure; peak RSS on 4 GiB grew to ~150 MiB (upload) and ~210 MiB
 * (download) without it, ~120 MiB with it. Every 8 MiB held loopback downloads near 2x the
 * baseline, every 16 MiB lets them reach 3.4x (bench/RESULTS.md).
 */
export const GC_EVERY = 16 * 1024 * 1024;

export interface ChunkRun {
  /** Progress label: "upload", "download". */
  label: string;
  /** The transfer, for the stop message: "upload to drive X". */
  what: string;
  /** Bytes of the whole transfer, and those already done before this run (a resume). */
  total: number;
  done: number;
  /** Chunk indices still to do, in order. */
  pending: Iterable<number>;
  /** Chunks in flight at once; `lanes` may lower it while running (a lane past it retires). */
  concurrency: number;
  lanes?: () => number;
  quiet: boolean;
  /** Bytes between full GCs (default GC_EVERY); Infinity for a transfer that leaves no garbage behind. */
  gcEvery?: number;
  /** Before the chunks, with the run's abort signal (e.g. a probe write). */
  prepare?(signal: AbortSignal): Promise<void>;
  /** Do one chunk (read, send, record it); resolves to the bytes it covered. */
  work(index: number, signal: AbortSignal): Promise<number>;
  /** A note for the progress line ("3 zero chunks skipped, 2 retries"). */
  note?(): string | undefined;
  /** On a stop: release what the run holds (journal, file) before the message is made. */
  onStop?(): Promise<void> | void;
  /** How to resume, appended to the stop message. */
  resumeHint(): string;
}

export interface ChunkRunResult {
  seconds: number;
  /** The run's progress display: the caller finishes it with its summary. */
  progress: Progress;
}

/**
 * The chunk engine every chunked transfer shares: runs `work` over the pending chunks with a
 * bounded window, paces full GCs, shows progress, turns Ctrl-C / SIGTERM into a clean stop, and
 * ends any stop with one line: what stopped, where, why, and how to resume.
 */
export async function runChunks(ctx: Context, run: ChunkRun): Promise<ChunkRunResult> {
  let done = run.done;
  let sinceGc = 0;
  const progress = ctx.progress({ label: run.label, total: run.total, quiet: run.quiet });
  const { controller, interrupted, remove } = abortOnInterrupt();
  const signal = controller.signal;
  const started = performance.now();
  const step = async (index: number) => {
    const covered = await run.work(index, signal);
    done += covered;
    sinceGc += covered;
    if (sinceGc >= (run.gcEvery ?? GC_EVERY)) {
      sinceGc = 0;
      Bun.gc(true);
    }
    progress.update(done, run.note?.());
  };
  try {
    await run.prepare?.(signal);
    await runLimited(
      run.pending,
      run.concurrency,
      step,
      () => controller.abort(),
      () => signal.aborted,
      run.lanes,
    );
    if (interrupted()) throw new OperationError(`interrupted (${interrupted()})`);
  } catch (error) {
    await run.onStop?.();
    progress.finish();
    const signal = interrupted();
    const reason = signal ? `interrupted (${signal})` : messageOf(error);
    const message = `${run.what} stopped at ${humanBytes(done)} of ${humanBytes(run.total)}: ${reason}; ${run.resumeHint()}`;
    throw signal ? new InterruptedError(message, signal) : new OperationError(message);
  } finally {
    remove();
  }
  return { seconds: (performance.now() - started) / 1000, progress };
}
