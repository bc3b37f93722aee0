// What the transfer driver (driver.ts) and the verify run on: a bounded parallel runner, Ctrl-C
// handling, and the GC pacing figure.
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
