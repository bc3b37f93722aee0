// Retrying one request: bounded exponential backoff with jitter, only for errors that may pass
// (network, timeouts, 5xx, busy: ApiError.retryable); final kinds (auth, usage, full, missing,
// billing) are thrown at once so the run stops instead of hammering a server that said no.
import type { ConsolaInstance } from "consola";
import { ApiError } from "./errors.ts";

export interface RetryPolicy {
  /** Tries in all, the first included. */
  attempts: number;
  /** Delay before the first retry; doubles each time up to capMs. */
  baseMs: number;
  capMs: number;
}

/** The policy a run gets unless its caller passes another (Connection.retry carries it to the engines). */
export const DEFAULT_RETRY: Readonly<RetryPolicy> = Object.freeze({ attempts: 8, baseMs: 200, capMs: 10_000 });

export function isRetryable(error: unknown): boolean {
  return error instanceof ApiError && error.retryable;
}

/** The server says it has too much to do (API 1.0 `busy`, 429, 503): fewer requests in flight help. */
export function isBusy(error: unknown): boolean {
  return error instanceof ApiError && (error.kind === "busy" || error.status === 429 || error.status === 503);
}

/** The wait before retry number `retry` (1-based): half fixed, half random, so parallel chunks spread out. */
export function backoffMs(policy: Readonly<RetryPolicy>, retry: number): number {
  const ceiling = Math.min(policy.capMs, policy.baseMs * 2 ** (retry - 1));
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

/** Wait `ms`, or until `signal` aborts (rejecting with its reason). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * The `onRetry` of one chunk's request: counts it, and says so on stderr; the first retry of a
 * request only with --verbose (one passing error is routine), the later ones as warnings.
 */
export function logRetry(log: ConsolaInstance, what: string, count: () => void) {
  return (error: unknown, retry: number, delayMs: number): void => {
    count();
    const text = `${what} failed (${(error as Error).message}); retry ${retry} in ${(delayMs / 1000).toFixed(1)} s`;
    if (retry > 1) log.warn(text);
    else log.debug(text);
  };
}

/** Run `attempt` until it succeeds, a final error comes, the tries run out, or `signal` aborts. */
export async function withRetry<T>(
  attempt: () => Promise<T>,
  options: {
    policy: Readonly<RetryPolicy>;
    signal?: AbortSignal;
    onRetry?: (error: unknown, retry: number, delayMs: number) => void;
  },
): Promise<T> {
  const policy = options.policy;
  for (let tried = 1; ; tried++) {
    try {
      return await attempt();
    } catch (error) {
      if (options.signal?.aborted || !isRetryable(error) || tried >= policy.attempts) throw error;
      const delay = backoffMs(policy, tried);
      options.onRetry?.(error, tried, delay);
      await sleep(delay, options.signal);
    }
  }
}
