// The two kinds of failure a script can end with, and their exit statuses (CLI.md):
// 2 when the call itself is wrong (nothing was sent), 1 when the operation failed.

/** The call is wrong: bad flag, argument, size, UUID or configuration. Exit status 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** The operation failed after it started (file, network, server). Exit status 1. */
export class OperationError extends Error {
  override name = "OperationError";
}

/** The kinds a drive API error can carry in `X-Elastic-Error`, plus our own client-side kinds. */
export const SERVER_KINDS = ["usage", "auth", "billing", "missing", "method", "busy", "failed", "system", "full"] as const;
export type ServerKind = (typeof SERVER_KINDS)[number];
export type ErrorKind = ServerKind | "network" | "timeout" | "protocol" | "unexpected";

/** Kinds where the same request may succeed if sent again. */
const RETRYABLE: ReadonlySet<ErrorKind> = new Set(["busy", "failed", "system", "network", "timeout"]);

/** A failed HTTP exchange with the drive API, typed by the server's error kind. */
export class ApiError extends OperationError {
  override name = "ApiError";
  constructor(
    readonly kind: ErrorKind,
    readonly serverMessage: string,
    readonly status: number | undefined,
    readonly method: string,
    readonly path: string,
    readonly retryable: boolean = RETRYABLE.has(kind) || (status !== undefined && status >= 500 && kind !== "full"),
  ) {
    const where = `${method} ${path}`;
    const code = status === undefined ? kind : `${status} ${kind}`;
    super(`${where} failed: ${code}${serverMessage ? `: ${serverMessage}` : ""}`);
  }
}

export function exitStatusOf(error: unknown): number {
  return error instanceof UsageError ? 2 : 1;
}

/** An error's message for a one-line report; Bun's network errors end in a hint about `verbose: true` that means nothing to our users. */
export function messageOf(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.replace(/\.? For more information.*$/s, "");
}
