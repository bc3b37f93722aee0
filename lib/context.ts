// What the engines need from whoever runs them (the CLI runner, a test, a bench): where to log,
// where relative paths start, the environment, and how to show progress. The CLI implements it
// (lib/cli/runner.ts); nothing below lib/cli imports the CLI itself.
import type { ConsolaInstance } from "consola";
import type { RetryPolicy } from "./retry.ts";

export interface ProgressOptions {
  label: string;
  total: number;
  quiet?: boolean;
  /** Milliseconds between log lines when stderr is not a terminal. */
  logEveryMs?: number;
  /** false: log lines even on a terminal, never one live line (several transfers at once would overwrite each other's). */
  live?: boolean;
}

export interface Progress {
  /** Set the bytes done so far (not an increment) and an optional note such as "3 zero chunks skipped". */
  update(done: number, note?: string): void;
  /** Clear the live line; log a last summary. */
  finish(summary?: string): void;
}

export interface Context {
  log: ConsolaInstance;
  /** Log each HTTP exchange (credentials masked). */
  verbose: boolean;
  /** The folder relative paths, journals and downloads start from. */
  cwd: string;
  env: Record<string, string | undefined>;
  /** Register a secret so that no message shows it. */
  addSecret(secret: string): void;
  progress(options: ProgressOptions): Progress;
  /** The retry policy of this run's requests, when its caller wants another than DEFAULT_RETRY (a test paced fast). */
  retry?: Readonly<RetryPolicy>;
}
