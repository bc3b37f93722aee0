// Following an API 1.0 imaging (`drives/DRIVE/image/SOURCE`) to its end: poll `info/full`, whose
// `imaging` field is `true`, `queued` or a percentage such as `45%`, and is absent when done.
import { OperationError } from "../errors.ts";
import type { HttpClient } from "../http.ts";
import { driveInfo } from "./drives.ts";

/** `imaging` as a percentage (0-100), or undefined for `true`, `queued` and the like. */
export function imagingPercent(value: string | undefined): number | undefined {
  const match = /^(\d+(?:\.\d+)?)\s*%?$/.exec(value ?? "");
  return match ? Math.min(100, Number(match[1])) : undefined;
}

export interface ImagingWait {
  /** The whole wait, in milliseconds. */
  limitMs: number;
  intervalMs: number;
  /** Each state seen while imaging goes on: `45%`, `queued`, `true`. */
  onState?: (shown: string) => void;
}

/** Poll until the drive no longer images; an OperationError at the time limit (imaging goes on on the server). */
export async function followImaging(client: HttpClient, drive: string, options: ImagingWait): Promise<void> {
  const started = performance.now();
  // bounded: stops at the time limit at the latest
  for (;;) {
    const info = await driveInfo(client, drive, true);
    const state = info.imaging;
    if (state === undefined || state === "" || state === "false") return;
    const percent = imagingPercent(state);
    const shown = percent === undefined ? state : `${percent}%`;
    options.onState?.(shown);
    const elapsed = performance.now() - started;
    if (elapsed >= options.limitMs) {
      throw new OperationError(
        `drive ${drive} is still imaging (${shown}) after ${Math.round(elapsed / 1000)} s; it goes on on the server (check with info.ts --full)`,
      );
    }
    await Bun.sleep(Math.min(options.intervalMs, options.limitMs - elapsed));
  }
}
