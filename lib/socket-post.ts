// One streamed HTTP/1.1 POST over a connection of the run's own (lib/wire.ts), for the image
// uploads (the API 2.0 chunks and single POST, the API 1.0 writes).
//
// Why not fetch: fetch with a ReadableStream body needs a fresh buffer for every piece (it may hold
// any number of them), and that churn alone grows RSS; fetch with a Bun.file body is flat on plain
// http but, with Bun 1.4.5, reads the WHOLE file into memory over https. node:net with two reused
// buffers still grew on the largest images (per-write promises). Here one buffer is refilled as soon
// as Bun's socket write returns (it copies or sends what it accepts), and RSS stays flat
// (bench/RESULTS-api2.md, "How the design was chosen"). A connection is kept for the next request
// when the answer was read whole, its length known, and the server did not say `Connection: close`.
import { readSync } from "node:fs";
import { OperationError } from "./errors.ts";
import { proxyError } from "./proxy.ts";
import type { SocketPool } from "./socket-pool.ts";
import {
  abortWith,
  onWire,
  parseAnswer,
  release,
  requestHead,
  WireError,
  writeAll,
  type ParsedAnswer,
  type Wire,
} from "./wire.ts";

export interface StreamPost {
  url: URL;
  /** Sent as given (the caller masks them when tracing). */
  headers: Record<string, string>;
  /** The exact number of body bytes: sent as Content-Length. */
  size: number;
  /**
   * Fill `buffer` with the body bytes from `offset`; return how many (0 only at the end). A promise
   * (a decoded image) is awaited; a raw file's fill stays synchronous, the fast path. Not called
   * when the body is given as `bytes`.
   */
  fill?(buffer: Uint8Array, offset: number, length: number): number | Promise<number>;
  /** Called after each piece the socket took. */
  onProgress?(sent: number): void;
  signal?: AbortSignal;
  /** Extra trusted CA certificates (PEM), for tests against a self-signed server. */
  ca?: string;
  /** Bytes per piece (default 1 MiB). */
  pieceSize?: number;
  /** A buffer to fill the pieces into (its length is the piece size), so many POSTs can reuse one. */
  buffer?: Uint8Array;
  /**
   * The whole body, in memory (`size` bytes): sent from it directly, `fill` not called. It must not
   * change until the POST settles (the socket takes each piece as it can, without a copy of its own).
   */
  bytes?: Uint8Array;
  /**
   * The run's connections: one kept open is reused, this one kept for the next POST, and the
   * run's proxy settings followed. Without it: a direct connection of its own, closed after.
   */
  pool?: SocketPool;
  /**
   * `fill` can give the body again from its start, and sending it twice does no harm (a chunk to
   * its link): a POST that fails on a kept connection before any byte of answer came (the server
   * closed it as the request went out) is sent once more, on a new connection.
   */
  replayable?: boolean;
}

export interface StreamPostAnswer {
  status: number;
  statusText: string;
  headers: Headers;
  /** The answer body, at most 1 MiB of it (an upload answer is a UUID or an error message). */
  body: string;
  /** Body bytes the socket took before the answer came or the connection ended. */
  sent: number;
}

/**
 * A `fill` that reads the body from an open file, from byte `start` on; a file that ends early or
 * fails to read ends the body, and `failure()` then says why in the file's terms.
 */
export function fileBody(
  fd: number,
  shown: string,
  start = 0,
): { fill: StreamPost["fill"]; failure: () => Error | undefined } {
  let failure: Error | undefined;
  return {
    fill(buffer, offset, length) {
      try {
        const n = readSync(fd, buffer, 0, length, start + offset);
        if (n === 0) failure = new OperationError(`${shown} shrank to ${start + offset} bytes during the upload`);
        return n;
      } catch (error) {
        failure = new OperationError(`reading ${shown} at byte ${start + offset} failed: ${(error as Error).message}`);
        return 0;
      }
    },
    failure: () => failure,
  };
}

/**
 * A `fill` that reads the body through an image's read() from byte `start` on (a decoded image:
 * a sequential one must be read once, in order); `failure()` says why a read failed.
 */
export function imageBody(
  image: PositionalReader,
  start = 0,
): { fill: StreamPost["fill"]; failure: () => Error | undefined } {
  let failure: Error | undefined;
  return {
    async fill(buffer, offset, length) {
      try {
        await image.read(buffer, length, start + offset);
      } catch (error) {
        failure = error as Error;
        throw error;
      }
      return length;
    },
    failure: () => failure,
  };
}

/** What imageBody reads from: an image that reads `length` bytes at any position (a chunk source). */
export interface PositionalReader {
  read(buffer: Uint8Array, length: number, position: number): Promise<void>;
}

/**
 * Send one POST with a streamed body of exactly `size` bytes and read the answer. An answer the
 * server gives early (401, 411, an error) is returned even if it cut the body short.
 */
export function streamPost(options: StreamPost): Promise<StreamPostAnswer> {
  return onWire(options.url, options.headers, options, (wire) => exchange(wire, options));
}

/** One POST on `wire`; the connection goes back to the pool only when the answer allows it. */
async function exchange(wire: Wire, options: StreamPost): Promise<StreamPostAnswer> {
  const { url, size, pool } = options;
  const keepAlive = pool?.keepAlive ?? false;
  wire.begin();
  const stopAborting = abortWith(wire, options.signal);
  let sent = 0;
  let answer: ParsedAnswer | undefined;
  try {
    const head = requestHead(wire, "POST", url, { ...options.headers, "Content-Length": String(size) }, keepAlive);
    if (options.bytes) {
      // the body is in memory already: sent from where it is, a piece at a time, no copy
      const piece = options.pieceSize ?? 1024 * 1024;
      if (await writeAll(wire, head))
        while (sent < size) {
          const n = Math.min(piece, size - sent);
          if (!(await writeAll(wire, options.bytes.subarray(sent, sent + n)))) break;
          sent += n;
          options.onProgress?.(sent);
        }
    } else if (await writeAll(wire, head)) {
      const buffer =
        options.buffer ?? new Uint8Array(Math.max(4096, Math.min(options.pieceSize ?? 1024 * 1024, size || 4096)));
      const piece = buffer.length;
      while (sent < size) {
        const filled = options.fill?.(buffer, sent, Math.min(piece, size - sent)) ?? 0;
        const n = typeof filled === "number" ? filled : await filled;
        if (n <= 0) throw new WireError(`the body ended at ${sent} of ${size} bytes`);
        if (!(await writeAll(wire, n === piece ? buffer : buffer.subarray(0, n)))) break;
        sent += n;
        options.onProgress?.(sent);
      }
    }
    await wire.waitFor(() => wire.answer !== undefined || wire.ended || wire.failure?.name === "AbortError");
    answer = wire.answer;
    if (!answer && wire.ended) {
      try {
        answer = parseAnswer(Buffer.concat(wire.received), true);
      } catch (error) {
        wire.failure ??= error as Error;
      }
    }
    if (!answer) throw wire.failure ?? new WireError("connection closed without an answer", "ECONNRESET");
  } catch (error) {
    wire.close();
    throw error;
  } finally {
    stopAborting();
  }
  wire.parsing = false;
  const whole = answer.framed && answer.consumed === wire.receivedBytes && sent === size;
  release(wire, pool, keepAlive && whole && answer.keepAlive, answer.idleMs);
  if (wire.absolute && answer.status === 407 && wire.proxy)
    throw proxyError(wire.proxy, { status: 407, reason: answer.statusText }, { method: "POST", path: url.host });
  const { status, statusText, headers, body } = answer;
  return { status, statusText, headers, body, sent };
}
