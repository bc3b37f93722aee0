// Flags shared by the scripts (the nuxt/cli `_shared.ts` pattern).
import type { OptionsDef } from "./command.ts";
import { UsageError } from "../errors.ts";
import { parseSize } from "../size.ts";
import { DEFAULT_TIMEOUT_SECONDS, parseSeconds, pickApi, type Api, type Env } from "../config.ts";

export const connectionArgs = {
  uri: {
    type: "string",
    group: "connection",
    description: "API endpoint; overrides EHURI (API 1.0) or CSURI (API 2.0)",
    valueHint: "URL",
  },
  "auth-file": {
    type: "string",
    group: "connection",
    description: "File holding one line user:secret; overrides EHAUTH / CSAUTH",
    valueHint: "PATH",
  },
  timeout: {
    type: "string",
    group: "connection",
    description: "Seconds to wait for an answer (in a transfer: for any progress)",
    default: String(DEFAULT_TIMEOUT_SECONDS),
    valueHint: "SECONDS",
  },
  verbose: {
    type: "boolean",
    group: "connection",
    description: "Log each HTTP exchange (credentials masked) and error stacks",
  },
} as const satisfies OptionsDef;

export const apiArgs = {
  api: {
    type: "enum",
    group: "connection",
    options: ["1", "2"],
    description: "API generation, 1 or 2 (default: 2 when CSURI is set, else 1)",
  },
} as const satisfies OptionsDef;

/** The API generation a call will use, known before anything is sent (so a refusal can exit 2). */
export function apiOf(args: { api?: string; location?: string }, ctx: { env: Env }): Api {
  return pickApi({ api: args.api, env: ctx.env, location: args.location });
}

/** --wait and its bounds (create, clone, resize; image.ts has the same). Spread after connectionArgs: its --timeout wins. */
export const waitArgs = {
  wait: {
    type: "boolean",
    group: "wait",
    description: "Wait until the drive is ready (API 2.0: unmounted; API 1.0 clone: imaged), its status on stderr",
  },
  interval: {
    type: "string",
    group: "wait",
    description: "With --wait: seconds between checks",
    default: "2",
    valueHint: "SECONDS",
  },
  quiet: { type: "boolean", group: "wait", alias: "q", description: "No status display while waiting" },
  timeout: {
    type: "string",
    group: "wait",
    description: "Seconds to wait for each answer, and with --wait for the whole wait",
    default: "3600",
    valueHint: "SECONDS",
  },
} as const satisfies OptionsDef;

export interface WaitBounds {
  /** The whole wait (--timeout). */
  limitMs: number;
  /** Between checks (--interval). */
  intervalMs: number;
  /** --timeout for each request: the wait's limit, at most the usual 120 s. */
  requestTimeout: string;
}

export function waitBounds(args: { timeout?: string; interval?: string }): WaitBounds {
  const limitMs = parseSeconds(args.timeout, "--timeout", 3600);
  const intervalMs = parseSeconds(args.interval, "--interval", 2);
  return { limitMs, intervalMs, requestTimeout: String(Math.min(limitMs, DEFAULT_TIMEOUT_SECONDS * 1000) / 1000) };
}

export const jsonArgs = {
  json: { type: "boolean", group: "output", description: "Print JSON instead of KEY VALUE lines" },
} as const satisfies OptionsDef;

/** Flags upload.ts and download.ts share. */
export const transferArgs = {
  quiet: { type: "boolean", group: "transfer", alias: "q", description: "No progress display" },
  location: {
    type: "string",
    group: "connection",
    description: "API 2.0: CloudSigma location such as zrh (https://LOC.cloudsigma.com/api/2.0/)",
    valueHint: "LOC",
  },
  concurrency: {
    type: "string",
    group: "transfer",
    description: "Requests in flight at once, fixed (default: as many as the link carries more with)",
    valueHint: "N",
  },
} as const satisfies OptionsDef;

/** Many drives from a manifest (copy.ts, download.ts). */
export const fleetArgs = {
  manifest: {
    type: "string",
    group: "fleet",
    description: "One drive a line (DRIVE [NAME]; blank lines and # comments skipped): one transfer per line",
    valueHint: "FILE",
  },
  shard: {
    type: "string",
    group: "fleet",
    description:
      "With --manifest: only lines I, I+N, I+2N... (1-based, drive lines counted), so N machines split a fleet",
    valueHint: "I/N",
  },
  drives: {
    type: "string",
    group: "fleet",
    description: "With --manifest: drives at once, 1 to 32, each with its own chunks in flight [default: 1]",
    valueHint: "N",
  },
} as const satisfies OptionsDef;

/** -c/--chunk for the chunked engine: a multiple of 512 from 4k to the API's 4M limit per request. */
export function parseChunk(text: string): number {
  const chunk = parseSize(text, "--chunk");
  if (chunk < 4096 || chunk > 4 * 1024 * 1024 || chunk % 512 !== 0) {
    throw new UsageError(`invalid --chunk ${text}: expected a multiple of 512 from 4k to 4M`);
  }
  return chunk;
}

/** --concurrency: requests in flight, 1 to 64; undefined leaves it to the window (lib/chunks/window.ts). */
export function parseConcurrency(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!/^\d+$/.test(text) || value < 1 || value > 64)
    throw new UsageError(`invalid --concurrency '${text}': expected 1 to 64`);
  return value;
}
