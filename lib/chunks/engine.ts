// What the transfer driver (driver.ts) and the verify run on: a bounded parallel runner, Ctrl-C
// handling, and the GC pacing.
import { OperationError } from "../errors.ts";

/**
 * Run `task` for each item, in order, with at most `lanes()` at once (read again whenever a task
 * ends, so the number may grow or shrink as the run goes; never above `limit`). The first failure
 * stops new starts (`stopped()` turns true, `onFailure` runs, e.g. to abort requests in flight);
 * the ones running finish or fail, then the first failure is thrown.
 */
export function runLimited<T>(
  items: Iterable<T>,
  limit: number,
  task: (item: T) => Promise<void>,
  onFailure: (error: unknown) => void,
  stopped: () => boolean,
  /** Tasks wanted at once now (at least 1, at most `limit`); default `limit`. */
  lanes?: () => number,
): Promise<void> {
  const iterator = items[Symbol.iterator]();
  let failure: { error: unknown } | undefined;
  let running = 0;
  let exhausted = false;
  return new Promise<void>((resolve, reject) => {
    const fail = (error: unknown) => {
      if (failure) return;
      failure = { error };
      onFailure(error);
    };
    const pump = () => {
      const wanted = () => Math.max(1, Math.min(limit, lanes ? lanes() : limit));
      // bounded: each turn starts a task on an item taken off the iterator, or ends the loop
      while (!failure && !exhausted && !stopped() && running < wanted()) {
        let next: IteratorResult<T>;
        try {
          next = iterator.next();
        } catch (error) {
          fail(error);
          break;
        }
        if (next.done) {
          exhausted = true;
          break;
        }
        running++;
        task(next.value).then(
          () => {
            running--;
            pump();
          },
          (error) => {
            running--;
            fail(error);
            pump();
          },
        );
      }
      if (running > 0) return;
      if (failure) reject(failure.error);
      else resolve();
    };
    pump();
  });
}

/**
 * Turns taken in the order tasks start, each ready once the one before it is done: chunks of a
 * sequential source ask for their bytes in chunk order (a chunk that awaits something first, room
 * in a compressed output, waits for its turn); a verify hashes its pieces in order.
 */
export class Turns {
  private last: Promise<void> = Promise.resolve();
  take(): { ready: Promise<void>; done: () => void } {
    const ready = this.last;
    let done!: () => void;
    this.last = new Promise<void>((resolve) => (done = resolve));
    return { ready, done };
  }
}

/** A run's stop by Ctrl-C or SIGTERM: its controller aborts, `interrupted()` names the signal that came. */
export interface Interrupt {
  controller: AbortController;
  interrupted: () => string | undefined;
  remove: () => void;
}

/**
 * An AbortController that Ctrl-C or SIGTERM aborts; `interrupted()` names the signal that came.
 * Given `outer` (a run of many transfers, which handles the signals once for all), it aborts when
 * `outer` does, even if that was before this one began.
 */
export function abortOnInterrupt(outer?: Interrupt): Interrupt {
  const controller = new AbortController();
  let received: string | undefined;
  const stop = (signal: string) => {
    received = signal;
    controller.abort(new OperationError(`interrupted (${signal})`));
  };
  if (outer) {
    const follow = () => stop(outer.interrupted() ?? "SIGINT");
    if (outer.controller.signal.aborted) follow();
    outer.controller.signal.addEventListener("abort", follow, { once: true });
    return {
      controller,
      interrupted: () => received,
      remove: () => outer.controller.signal.removeEventListener("abort", follow),
    };
  }
  const remove = onInterrupt(stop);
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
 * that Bun's GC does not count as pressure, and without it peak RSS grows past 128 MiB on 4 GiB.
 * Each collection costs time: every 16 MiB keeps peak RSS under that and lets loopback downloads run
 * well faster than every 8 (bench/RESULTS.md, "What the defaults were chosen from" and "A full GC
 * every 16 MiB of download instead of 8").
 */
export const GC_EVERY = 16 * 1024 * 1024;

/**
 * Between the full collections, one asked for without waiting every this many bytes
 * (`Bun.gc(false)`: the call returns at once, 0.01 ms against 3 ms for a full one, and the runtime
 * collects as the transfer goes on). The pieces a socket or fetch hands over are then freed sooner:
 * 4 GiB from a far server over sockets peaked at 114-123 MiB against 132-133, as fast; through a
 * proxy 116-117 against 128-129; on loopback the same time (bench/RESULTS-speed.md, "Figures the
 * code relies on").
 */
export const ASYNC_GC_EVERY = 4 * 1024 * 1024;

/**
 * The process's resident memory below which a full collection that is due waits: the garbage it
 * would free cannot take the process near 128 MiB before the next one is due, and each costs the
 * run CPU (the heap marked, the freed pages faulted in again). The API 1.0 download on loopback,
 * 1 GiB: 1.18-1.21 s against 1.41-1.48 s with one every 16 MiB, 98-106 MiB peak RSS
 * (bench/RESULTS-speed.md, "Figures the code relies on").
 */
export const FULL_GC_ABOVE_RSS = 96 * 1024 * 1024;

/** The process's memory as GcPacing reads it: its resident bytes now, and the least worth a full collection. */
export interface GcMemory {
  rss: () => number;
  fullAbove: number;
}

const PROCESS_MEMORY: GcMemory = { rss: () => process.memoryUsage.rss(), fullAbove: FULL_GC_ABOVE_RSS };

/**
 * Which collection a transfer asks for as its bytes move: a full one every `fullEvery()` bytes (the
 * source's and destination's figure, read each time: a source may change its way mid-run) once the
 * process holds `memory.fullAbove` bytes or more (below, it waits, and is asked again as each chunk
 * ends), one without waiting every `asyncEvery` between; none where nothing is left for the GC
 * (`fullEvery()` infinite).
 */
export class GcPacing {
  private sinceFull = 0;
  private sinceAsync = 0;

  constructor(
    private readonly fullEvery: () => number,
    private readonly asyncEvery = ASYNC_GC_EVERY,
    private readonly memory: GcMemory = PROCESS_MEMORY,
  ) {}

  /** `bytes` more moved: the collection due now, if any. */
  moved(bytes: number): "full" | "async" | undefined {
    this.sinceFull += bytes;
    this.sinceAsync += bytes;
    const every = this.fullEvery();
    if (this.sinceFull >= every && this.memory.rss() >= this.memory.fullAbove) {
      this.sinceFull = 0;
      this.sinceAsync = 0;
      return "full";
    }
    if (!Number.isFinite(every) || this.sinceAsync < this.asyncEvery) return undefined;
    this.sinceAsync = 0;
    return "async";
  }
}
