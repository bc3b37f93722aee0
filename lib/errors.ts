// The two kinds of failure a script can end with, and their exit statuses:
// 2 when the call itself is wrong (nothing was sent), 1 when the operation failed.

/** The call is wrong: bad flag, argument, size, UUID or configuration. Exit status 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** The operation failed after it started (file, network, server). Exit status 1. */
export class OperationError extends Error {
  override name = "OperationError";
}

/**
 * The image being read is broken (corrupt or truncated compressed data, more or fewer bytes than
 * its size): rerunning the same command cannot help, so an upload does not offer to resume. Exit status 1.
 */
export class InputError extends OperationError {
  override name = "InputError";
}

/** The kinds a drive API error can carry in `X-Elastic-Error`, plus our own client-side kinds. */
export const SERVER_KINDS = [
  "usage",
  "auth",
  "billing",
  "missing",
  "method",
  "busy",
  "failed",
  "system",
  "full",
] as const;
export type ServerKind = (typeof SERVER_KINDS)[number];
/**
 * `permission` (403) and `conflict` (409) come from API 2.0 answers, whose bodies are JSON error lists;
 * `proxy`: the proxy (HTTPS_PROXY...) did not let the request through.
 * `tls`: the server's certificate was refused (final: it will not pass on its own).
 */
export type ErrorKind =
  | ServerKind
  | "permission"
  | "conflict"
  | "network"
  | "tls"
  | "timeout"
  | "protocol"
  | "proxy"
  | "unexpected";

/** Kinds where the same request may succeed if sent again. */
const RETRYABLE: ReadonlySet<ErrorKind> = new Set(["busy", "failed", "system", "network", "timeout"]);

/** What an ApiError is made of: named, so a call site says what each value is. */
export interface ApiErrorFields {
  kind: ErrorKind;
  /** The server's message (or ours, for a network or protocol failure). */
  message: string;
  /** The HTTP status; undefined when no answer came. */
  status?: number;
  method: string;
  /** The path as shown to the user (no credentials, no one-time tokens). */
  path: string;
  /** Overrides the kind's default: a retry may help. */
  retryable?: boolean;
  /** API 2.0: the answer's `X-REQUEST-ID`, which the provider's support asks for. */
  requestId?: string;
  /** API 2.0: the server's own `error_type` (`backend`, `notexist`, `permission`...), shown instead of the kind. */
  errorType?: string;
  /** The lower-level failure behind this one (a socket error, a TLS refusal). */
  cause?: unknown;
}

/** A failed HTTP exchange with the drive API, typed by the server's error kind. */
export class ApiError extends OperationError {
  override name = "ApiError";
  readonly kind: ErrorKind;
  readonly serverMessage: string;
  readonly status: number | undefined;
  readonly method: string;
  readonly path: string;
  readonly retryable: boolean;
  readonly requestId: string | undefined;
  readonly errorType: string | undefined;

  constructor(fields: ApiErrorFields) {
    const { kind, message, status, method, path, requestId, errorType } = fields;
    const shownKind = errorType || kind;
    const code = status === undefined ? shownKind : `${status} ${shownKind}`;
    const id = requestId ? ` (X-REQUEST-ID ${requestId})` : "";
    super(`${method} ${path} failed: ${code}${message ? `: ${message}` : ""}${id}`, { cause: fields.cause });
    this.kind = kind;
    this.serverMessage = message;
    this.status = status;
    this.method = method;
    this.path = path;
    this.retryable =
      fields.retryable ?? (RETRYABLE.has(kind) || (status !== undefined && status >= 500 && kind !== "full"));
    this.requestId = requestId;
    this.errorType = errorType;
  }

  /** The same failure with other fields changed (e.g. made final). */
  with(changes: Partial<ApiErrorFields>): ApiError {
    const { kind, serverMessage: message, status, method, path, retryable, requestId, errorType, cause } = this;
    return new ApiError({ kind, message, status, method, path, retryable, requestId, errorType, cause, ...changes });
  }
}

/** The run was stopped by Ctrl-C or SIGTERM: shells and CI tell that from a failure by 130 / 143. */
export class InterruptedError extends OperationError {
  override name = "InterruptedError";
  constructor(
    message: string,
    readonly signal: string,
  ) {
    super(message);
  }
}

/** 128 + the signal's number, as a shell reports a process it killed. */
const SIGNAL_STATUS: Record<string, number> = { SIGINT: 130, SIGTERM: 143 };

export function exitStatusOf(error: unknown): number {
  if (error instanceof InterruptedError) return SIGNAL_STATUS[error.signal] ?? 1;
  return error instanceof UsageError ? 2 : 1;
}

/** An error's message for a one-line report; Bun's network errors end in a hint about `verbose: true` that means nothing to our users. */
export function messageOf(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.replace(/\.? For more information.*$/s, "");
}
