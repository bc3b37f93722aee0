// An API 2.0 drive as a source: one GET of `drives/UUID/download/` from the direct host (following
// its redirect, credentials only to the origin named), read in order. The announced length must be
// the drive's size. A read cut by a failure that may pass (a reset, a stall past --timeout, a 5xx)
// asks again with `Range: bytes=N-` from where that read began, under the connection's retry
// policy; a server that ignores Range sends the drive from 0 again and the bytes before N are dropped.
import type { ConsolaInstance } from "consola";
import { directClient, type Connection } from "../connect.ts";
import type { Source } from "../chunks/endpoints.ts";
import { ApiError, OperationError } from "../errors.ts";
import type { HttpClient } from "../http.ts";
import { logRetry, withRetry, type RetryPolicy } from "../retry.ts";
import { getDrive } from "./drives.ts";
import { bodyFailure } from "./download-retry.ts";
import { NO_TOTAL_LIMIT, Watchdog } from "./watchdog.ts";

const EMPTY = new Uint8Array(0);

/** `bytes START-END/TOTAL` of a 206 answer. */
export function parseContentRange(header: string | null): { start: number; end: number; total: number } | undefined {
  const match = /^\s*bytes\s+(\d+)-(\d+)\/(\d+)\s*$/i.exec(header ?? "");
  if (!match) return undefined;
  const [start, end, total] = [Number(match[1]), Number(match[2]), Number(match[3])];
  if (!Number.isSafeInteger(total) || start > end || end >= total) return undefined;
  return { start, end, total };
}

export function contentLength(response: Response): number | undefined {
  const text = response.headers.get("content-length");
  if (text === null || !/^\d+$/.test(text.trim())) return undefined;
  const value = Number(text);
  return Number.isSafeInteger(value) ? value : undefined;
}

/** The drive's bytes in order, over as many GETs as passing failures need. */
class DriveStream {
  private reader?: ReadableStreamDefaultReader<Uint8Array>;
  private watchdog?: Watchdog;
  private piece: Uint8Array = EMPTY;
  private pieceAt = 0;
  /** The drive byte the open answer's next byte is. */
  private position = 0;
  private queue: Promise<unknown> = Promise.resolve();
  private readonly path: string;

  constructor(
    private readonly client: HttpClient,
    private readonly drive: string,
    readonly size: number,
    private readonly timeoutMs: number,
    private readonly policy: Readonly<RetryPolicy>,
    private readonly log: ConsolaInstance,
  ) {
    this.path = `drives/${drive}/download/`;
  }

  read(buffer: Uint8Array, length: number, position: number, signal?: AbortSignal): Promise<void> {
    const result = this.queue.then(() =>
      withRetry(() => this.serve(buffer, length, position, signal), {
        policy: this.policy,
        signal,
        onRetry: logRetry(this.log, `reading drive ${this.drive} at byte ${position}`, () => undefined),
      }),
    );
    this.queue = result.catch(() => undefined);
    return result;
  }

  private async serve(buffer: Uint8Array, length: number, position: number, signal?: AbortSignal): Promise<void> {
    if (position < this.position) this.drop();
    try {
      if (!this.reader) await this.get(position, signal);
      await this.take(undefined, position - this.position);
      await this.take(buffer, length);
    } catch (error) {
      // the next try starts a new GET at this read's first byte
      this.drop();
      this.position = position;
      throw bodyFailure(error, this.watchdog as Watchdog);
    }
  }

  /** Copy the next `length` bytes into `buffer` (none: drop them); the answer must hold them. */
  private async take(buffer: Uint8Array | undefined, length: number): Promise<void> {
    let done = 0;
    // bounded by the answer: each step takes one piece of it
    while (done < length) {
      if (this.pieceAt === this.piece.length) {
        const { value, done: ended } = await (this.reader as ReadableStreamDefaultReader<Uint8Array>).read();
        if (ended)
          throw new ApiError({
            kind: "network",
            message: `the answer ended at byte ${this.position} of ${this.size}`,
            method: "GET",
            path: this.client.url(this.path).pathname,
          });
        this.watchdog?.touch();
        this.piece = value;
        this.pieceAt = 0;
      }
      const step = Math.min(length - done, this.piece.length - this.pieceAt);
      buffer?.set(this.piece.subarray(this.pieceAt, this.pieceAt + step), done);
      this.pieceAt += step;
      this.position += step;
      done += step;
    }
  }

  /** A GET from byte `from`: its answer must be this drive's bytes from there (or from 0, Range ignored). */
  private async get(from: number, signal?: AbortSignal): Promise<void> {
    this.watchdog = new Watchdog(this.timeoutMs);
    const response = await this.client.request("GET", this.path, {
      // identity: the byte count must match Content-Length (and a Range its offsets)
      headers:
        from > 0 ? { range: `bytes=${from}-`, "accept-encoding": "identity" } : { "accept-encoding": "identity" },
      timeoutMs: NO_TOTAL_LIMIT,
      signal: signal ? AbortSignal.any([signal, this.watchdog.signal]) : this.watchdog.signal,
    });
    const range = response.status === 206 ? parseContentRange(response.headers.get("content-range")) : undefined;
    const start = range ? range.start : 0;
    const announced = range ? range.total : contentLength(response);
    const length = contentLength(response);
    if (
      announced !== this.size ||
      (range && (start > from || range.end !== this.size - 1)) ||
      length !== this.size - start
    ) {
      await response.body?.cancel().catch(() => undefined);
      throw new OperationError(
        `the server sent drive ${this.drive} as ${length ?? "an unannounced number of"} bytes from byte ${start} of ${announced ?? "?"}, but it holds ${this.size}: refusing to read it`,
      );
    }
    this.reader = (
      response.body ?? new ReadableStream<Uint8Array>()
    ).getReader() as ReadableStreamDefaultReader<Uint8Array>;
    this.position = start;
  }

  drop(): void {
    this.reader?.cancel().catch(() => undefined);
    this.reader = undefined;
    this.watchdog?.stop();
    this.piece = EMPTY;
    this.pieceAt = 0;
  }
}

/** Drive `drive` as a source, its size from the API (the GET must announce the same). */
export async function openApi2Drive(connection: Connection, drive: string, log: ConsolaInstance): Promise<Source> {
  const { size } = await getDrive(connection.client, drive);
  if (size === undefined) throw new OperationError(`drive ${drive}: the server gave no size`);
  const open = (): Source => {
    const stream = new DriveStream(directClient(connection), drive, size, connection.timeoutMs, connection.retry, log);
    return {
      size,
      sequential: true,
      remote: true,
      read: (buffer, length, position, signal) => stream.read(buffer, length, position, signal),
      reopen: async () => open(),
      close: async () => stream.drop(),
    };
  };
  return open();
}
