// Waiting for an API 2.0 drive to settle: poll `GET drives/{uuid}/` until its status is
// `unmounted` (or `mounted`), reporting every other status (creating, cloning, resizing, uploading...),
// bounded by a time limit whose error names the last status seen.
import { OperationError } from "../errors.ts";
import type { HttpClient } from "../http.ts";
import { getDrive, type Drive2 } from "./drives.ts";

/** Statuses a drive rests in: the wait ends there. */
export const SETTLED: ReadonlySet<string> = new Set(["unmounted", "mounted"]);

export interface WaitOptions {
  /** The whole wait, in milliseconds. */
  limitMs: number;
  /** Between two checks (the first two, with `growTo`). */
  intervalMs: number;
  /** The interval doubles after each check up to this (a quick server answers soon, a slow one is not asked too often). */
  growTo?: number;
  /** Called with each status seen that is not settled (and the seconds waited so far). */
  onStatus?: (status: string, elapsedSeconds: number) => void;
  signal?: AbortSignal;
  /** Which statuses end the wait (default: SETTLED, unmounted or mounted). */
  settled?: (status: string) => boolean;
}

/** Poll until the drive settles; resolves to its last answer; an OperationError at the time limit. */
export async function waitForDrive(client: HttpClient, drive: string, options: WaitOptions): Promise<Drive2> {
  const started = performance.now();
  let interval = options.intervalMs;
  // bounded: every turn sleeps, and the loop ends at the time limit at the latest
  for (;;) {
    const elapsed = performance.now() - started;
    const left = options.limitMs - elapsed;
    const answer = await getDrive(client, drive, {
      timeoutMs: Math.max(1000, Math.min(120_000, left)),
      signal: options.signal,
    });
    const status = answer.status ?? "";
    if (options.settled ? options.settled(status) : SETTLED.has(status)) return answer;
    const now = performance.now() - started;
    options.onStatus?.(status || "(no status)", Math.round(now / 1000));
    if (now >= options.limitMs) {
      throw new OperationError(
        `drive ${drive} is still ${status || "without a status"} after ${Math.round(now / 1000)} s (--timeout); it goes on on the server (check with info.ts)`,
      );
    }
    await Bun.sleep(Math.max(0, Math.min(interval, options.limitMs - now)));
    interval = nextInterval(interval, options);
  }
}

/** The next interval between checks: doubled up to `growTo`, else the same. */
export function nextInterval(interval: number, options: { intervalMs: number; growTo?: number }): number {
  return options.growTo === undefined ? interval : Math.min(options.growTo, Math.max(interval * 2, options.intervalMs));
}
