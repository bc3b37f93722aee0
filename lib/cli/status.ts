// A changing state on stderr while a script waits (imaging 45%, drive creating): one live line on a
// terminal, else a log line when the state changes, at most every few seconds (cron and CI logs).
import type { RunContext } from "./runner.ts";
import type { HttpClient } from "../http.ts";
import { waitForDrive } from "../api2/wait.ts";
import type { Drive2 } from "../api2/drives.ts";
import { followImaging } from "../api1/imaging.ts";

const LOG_EVERY_MS = 5000;

export interface StatusLine {
  show(text: string): void;
  /** Clear the live line. */
  end(): void;
}

export function statusLine(ctx: RunContext, quiet: boolean): StatusLine {
  const live = ctx.io.stderrIsTTY && !quiet;
  let shown = false;
  let lastLogged = "";
  let lastLogAt = -Infinity;
  return {
    show(text) {
      if (live) {
        ctx.io.stderr.write(`\r\u001b[2K${text}`);
        shown = true;
      } else if (!quiet && text !== lastLogged && performance.now() - lastLogAt >= LOG_EVERY_MS) {
        ctx.log.info(text);
        lastLogged = text;
        lastLogAt = performance.now();
      }
    },
    end() {
      if (live && shown) ctx.io.stderr.write("\r\u001b[2K");
      shown = false;
    },
  };
}

/** API 2.0 --wait: poll the drive until it settles, its status on stderr; the settled drive. */
export async function waitShowingStatus(
  ctx: RunContext,
  client: HttpClient,
  drive: string,
  bounds: { limitMs: number; intervalMs: number },
  quiet: boolean,
): Promise<Drive2> {
  const line = statusLine(ctx, quiet);
  try {
    return await waitForDrive(client, drive, {
      ...bounds,
      onStatus: (status, seconds) => line.show(`drive ${drive}: ${status} (${seconds} s)`),
    });
  } finally {
    line.end();
  }
}

/** API 1.0 --wait on an imaging: follow it to the end, its percentage on stderr. */
export async function followImagingShowing(
  ctx: RunContext,
  client: HttpClient,
  drive: string,
  bounds: { limitMs: number; intervalMs: number },
  quiet: boolean,
): Promise<void> {
  const line = statusLine(ctx, quiet);
  try {
    await followImaging(client, drive, { ...bounds, onState: (shown) => line.show(`imaging ${drive}: ${shown}`) });
  } finally {
    line.end();
  }
}
