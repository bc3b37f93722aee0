// The API 2.0 download's attempts within one run: after a passing failure (a reset, a stalled
// answer, a 5xx, busy) the download goes on as a rerun would, from where FILE.part stands, under
// the retry policy the API 1.0 download uses (bounded backoff, bounded tries). A final error, or
// Ctrl-C / SIGTERM (the `interrupt` signal), ends the run at once.
import type { Context } from "../context.ts";
import { ApiError, messageOf, OperationError } from "../errors.ts";
import { isRetryable, logRetry, withRetry, type RetryPolicy } from "../retry.ts";
import { humanBytes } from "../size.ts";
import { Watchdog } from "./watchdog.ts";

/**
 * What a failure while the body arrives means: the watchdog's abort is a timeout; a broken
 * connection (fetch's error carries a code such as ECONNRESET, and names no system call) is a
 * network error; both may pass. A local file's failure (ENOSPC names its system call `write`) and
 * our own checks (OperationError) are final.
 */
export function bodyFailure(error: unknown, watchdog: Watchdog): unknown {
  const translated = watchdog.translate(error, "GET", "download");
  if (translated instanceof OperationError || !(translated instanceof Error)) return translated;
  const { code, syscall } = translated as { code?: unknown; syscall?: unknown };
  if (typeof code !== "string" || syscall !== undefined) return translated;
  return new ApiError({
    kind: "network",
    message: messageOf(translated),
    method: "GET",
    path: "download",
    cause: translated,
  });
}

/** Where the run stands when it ends in failure. */
export interface Standing {
  /** FILE.part, once its name is known. */
  part?: string;
  /** Drive bytes it holds that a rerun keeps. */
  kept: number;
  /** The drive's size, once an answer announced it (a body started in this run). */
  total?: number;
  /** The last attempt ended after its body was whole (renaming it failed, say): its error says all. */
  bodyDone: boolean;
}

export class DownloadAttempts {
  /** Attempts started in this run. */
  made = 0;

  constructor(
    private readonly ctx: Context,
    private readonly timeoutMs: number,
    private readonly policy: Readonly<RetryPolicy>,
    private readonly interrupt: AbortSignal,
    /** The download, for the retry lines: "download of drive UUID". */
    private readonly what: string,
    /** The GET's path, for a stall before its answer. */
    private readonly shownPath: string,
  ) {}

  /**
   * `attempt` until it succeeds, a final error comes, the tries run out or the run is interrupted.
   * Each attempt has a fresh watchdog (a stalled one stays aborted) and a signal that ends its requests.
   */
  run<T>(attempt: (watchdog: Watchdog, signal: AbortSignal) => Promise<T>): Promise<T> {
    return withRetry(
      async () => {
        this.made++;
        const watchdog = new Watchdog(this.timeoutMs);
        try {
          return await attempt(watchdog, AbortSignal.any([watchdog.signal, this.interrupt]));
        } catch (error) {
          throw watchdog.translate(error, "GET", this.shownPath);
        } finally {
          watchdog.stop();
        }
      },
      { policy: this.policy, signal: this.interrupt, onRetry: logRetry(this.ctx.log, this.what, () => undefined) },
    );
  }

  /**
   * The run's one line: why it stopped, the attempts made, what is kept. A final error of the
   * first attempt before any body (auth, missing, a refused name) is shown as it is, as is one
   * after a whole body (renaming it failed).
   */
  failure(error: unknown, at: Standing): unknown {
    const gaveUp = isRetryable(error);
    if (at.bodyDone || (!gaveUp && this.made === 1 && at.total === undefined)) return error;
    const reason = messageOf(error);
    const attempts = `${this.made} attempt${this.made === 1 ? "" : "s"}`;
    const tried = gaveUp ? `; gave up after ${attempts}` : this.made > 1 ? `; ${attempts} made` : "";
    const next =
      at.part && at.kept > 0
        ? `${at.part} kept: run the same command again to resume`
        : "nothing was kept: run the same command again";
    const where =
      at.total !== undefined
        ? `download cut short at ${humanBytes(at.kept)} of ${humanBytes(at.total)}: `
        : at.kept > 0
          ? `download stopped at ${humanBytes(at.kept)}: `
          : "";
    return new OperationError(`${where}${reason}${tried}; ${next}`);
  }
}
