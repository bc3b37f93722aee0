// A stall watchdog for long transfers (an API 2.0 download or upload, a streamed POST): the user's
// --timeout bounds the time without progress, not the whole transfer.
import { ApiError } from "./errors.ts";
import { networkError } from "./http.ts";

/** The transfer itself may take hours: HttpClient's whole-request timeout is replaced by the watchdog. */
export const NO_TOTAL_LIMIT = 2 ** 31 - 1;

/**
 * Aborts when nothing moved for `timeoutMs`: a long transfer is fine as long as it progresses, and
 * the user's --timeout keeps its meaning ("how long to wait for the other side").
 */
export class Watchdog {
  private readonly controller = new AbortController();
  private last = performance.now();
  private readonly timer: ReturnType<typeof setInterval>;
  stalled = false;

  constructor(readonly timeoutMs: number) {
    this.timer = setInterval(
      () => {
        if (performance.now() - this.last < timeoutMs) return;
        this.stalled = true;
        this.controller.abort();
      },
      Math.max(50, Math.min(1000, timeoutMs / 4)),
    );
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  touch(): void {
    this.last = performance.now();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Turn the abort it caused into a timeout error; anything else passes unchanged. */
  translate(error: unknown, method: string, path: string): unknown {
    if (this.stalled && (error as Error)?.name === "AbortError") {
      return new ApiError({
        kind: "timeout",
        message: `nothing moved for ${Math.round(this.timeoutMs / 1000)} s`,
        method,
        path,
      });
    }
    return error;
  }

  /** The failure of a request over a socket of our own that got no answer: its stall, else the network's (networkError). */
  unanswered(error: unknown, method: string, url: URL, path: string): unknown {
    const translated = this.translate(error, method, path);
    return translated instanceof ApiError ? translated : networkError(error, url, method, path);
  }
}
