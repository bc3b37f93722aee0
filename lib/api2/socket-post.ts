// One streamed HTTP/1.1 POST over a plain socket, for the API 2.0 image upload.
//
// Why not fetch: fetch with a ReadableStream body needs a fresh buffer for every piece (it may hold
// any number of them), and on a GiB image that churn alone costs ~30 MiB of RSS; fetch with a
// Bun.file body is flat on plain http but reads the WHOLE file into memory over https (measured with
// Bun 1.4.5: 2 GiB RSS for a 1 GiB image). node:net with two reused buffers was flat up to 4 GiB but
// still grew on 16 GiB (per-write promises). Here one buffer is refilled as soon as Bun's socket
// write returns (it copies or sends what it accepts): 16 GiB went up in 43 MiB of RSS.
import { readSync } from "node:fs";
import net from "node:net";
import tls from "node:tls";
import type { Socket } from "bun";
import { OperationError } from "../errors.ts";
import type { Source } from "../chunks/endpoints.ts";

export interface StreamPost {
  url: URL;
  /** Sent as given (the caller masks them when tracing). */
  headers: Record<string, string>;
  /** The exact number of body bytes: sent as Content-Length. */
  size: number;
  /**
   * Fill `buffer` with the body bytes from `offset`; return how many (0 only at the end). A promise
   * (a decoded image) is awaited; a raw file's fill stays synchronous, the fast path.
   */
  fill(buffer: Uint8Array, offset: number, length: number): number | Promise<number>;
  /** Called after each piece the socket took. */
  onProgress?(sent: number): void;
  signal?: AbortSignal;
  /** Extra trusted CA certificates (PEM), for tests against a self-signed server. */
  ca?: string;
  /** Bytes per piece (default 1 MiB). */
  pieceSize?: number;
  /** A buffer to fill the pieces into (its length is the piece size), so many POSTs can reuse one. */
  buffer?: Uint8Array;
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

const MAX_ANSWER = 1024 * 1024;

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
export function imageBody(image: Source, start = 0): { fill: StreamPost["fill"]; failure: () => Error | undefined } {
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

/** A `fill` that copies the body from bytes in memory (a decoded chunk, sent again as it is on a retry). */
export function memoryBody(data: Uint8Array): { fill: StreamPost["fill"]; failure: () => Error | undefined } {
  return {
    fill(buffer, offset, length) {
      buffer.set(data.subarray(offset, offset + length));
      return length;
    },
    failure: () => undefined,
  };
}

/** A network failure with the code fetch would give (ECONNREFUSED, ECONNRESET...). */
export class StreamPostError extends Error {
  constructor(
    message: string,
    readonly code?: string,
  ) {
    super(message);
    this.name = "StreamPostError";
  }
}

function abortError(): Error {
  return new DOMException("The operation was aborted.", "AbortError");
}

/** Parse `HTTP/1.1 200 OK\r\nheaders\r\n\r\nbody`, decoding a chunked body. Undefined while incomplete. */
export function parseAnswer(raw: Buffer, ended: boolean): Omit<StreamPostAnswer, "sent"> | undefined {
  const split = raw.indexOf("\r\n\r\n");
  if (split === -1) return undefined;
  const lines = raw.subarray(0, split).toString("latin1").split("\r\n");
  const statusLine = /^HTTP\/1\.[01] (\d{3}) ?(.*)$/.exec(lines[0] ?? "");
  if (!statusLine) throw new StreamPostError(`malformed answer: '${(lines[0] ?? "").slice(0, 80)}'`);
  const status = Number(statusLine[1]);
  // 1xx (100 Continue) precede the real answer
  if (status >= 100 && status < 200) return parseAnswer(raw.subarray(split + 4), ended);
  const headers = new Headers();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    if (colon > 0) headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  }
  let body = raw.subarray(split + 4);
  if ((headers.get("transfer-encoding") ?? "").toLowerCase().includes("chunked")) {
    const parts: Buffer[] = [];
    let at = 0;
    for (;;) {
      const lineEnd = body.indexOf("\r\n", at);
      if (lineEnd === -1) return ended ? finish(Buffer.concat(parts)) : undefined;
      const length = Number.parseInt(body.subarray(at, lineEnd).toString("latin1"), 16);
      if (!Number.isFinite(length)) throw new StreamPostError("malformed chunked answer");
      if (length === 0) return finish(Buffer.concat(parts));
      if (body.length < lineEnd + 2 + length + 2) return ended ? finish(Buffer.concat(parts)) : undefined;
      parts.push(body.subarray(lineEnd + 2, lineEnd + 2 + length));
      at = lineEnd + 2 + length + 2;
    }
  }
  const lengthText = headers.get("content-length");
  if (lengthText !== null) {
    const length = Number(lengthText);
    if (body.length < length && !ended && body.length < MAX_ANSWER) return undefined;
    body = body.subarray(0, length);
  } else if (!ended) {
    return undefined;
  }
  return finish(body);

  function finish(bytes: Buffer) {
    return { status, statusText: statusLine?.[2] ?? "", headers, body: bytes.subarray(0, MAX_ANSWER).toString("utf8") };
  }
}

/**
 * Send one POST with a streamed body of exactly `size` bytes and read the answer. An answer the
 * server gives early (401, 411, an error) is returned even if it cut the body short.
 */
export async function streamPost(options: StreamPost): Promise<StreamPostAnswer> {
  const { url, size, signal } = options;
  if (signal?.aborted) throw abortError();
  const https = url.protocol === "https:";
  const host = url.hostname.replace(/^\[|\]$/g, "");
  const received: Uint8Array[] = [];
  let receivedBytes = 0;
  let ended = false;
  let ready = !https;
  let drained = false;
  let failure: Error | undefined;
  let answer: Omit<StreamPostAnswer, "sent"> | undefined;
  let wake: (() => void) | undefined;
  const poke = () => {
    const resolve = wake;
    wake = undefined;
    resolve?.();
  };
  const waitFor = (done: () => boolean) =>
    new Promise<void>((resolve) => {
      if (done()) return resolve();
      const check = () => {
        if (done()) resolve();
        else wake = check;
      };
      wake = check;
    });
  let socket: Socket | undefined;
  const onAbort = () => {
    failure = abortError();
    socket?.terminate();
    ended = true;
    poke();
  };
  signal?.addEventListener("abort", onAbort, { once: true });
  let sent = 0;
  try {
    try {
      socket = await Bun.connect({
        hostname: host,
        port: Number(url.port || (https ? 443 : 80)),
        tls: https
          ? {
              // explicit: with a bare `{}` Bun 1.4.5 never calls handshake (measured), with `true` it does
              rejectUnauthorized: true,
              // SNI is for names only; an IP literal is checked against the certificate's IP entries
              serverName: net.isIP(host) ? undefined : host,
              ...(options.ca ? { ca: [...tls.rootCertificates, options.ca] } : {}),
            }
          : undefined,
        socket: {
          // Bun checks the chain and the host name, and reports here; refusing is up to us
          handshake(_socket, success, authorizationError) {
            if (success && !authorizationError) ready = true;
            else
              failure ??= new StreamPostError(
                `TLS: ${authorizationError?.message ?? "handshake failed"}`,
                (authorizationError as { code?: string } | null)?.code,
              );
            poke();
          },
          data(_socket, data) {
            if (receivedBytes < MAX_ANSWER + 64 * 1024) {
              received.push(new Uint8Array(data));
              receivedBytes += data.length;
            }
            try {
              answer ??= parseAnswer(Buffer.concat(received), false);
            } catch (error) {
              failure ??= error as Error;
            }
            poke();
          },
          drain() {
            drained = true;
            poke();
          },
          end() {
            ended = true;
            poke();
          },
          close() {
            ended = true;
            poke();
          },
          error(_socket, error) {
            failure ??= new StreamPostError(error.message, (error as { code?: string }).code);
            poke();
          },
        },
      });
    } catch (error) {
      throw new StreamPostError((error as Error).message, (error as { code?: string }).code);
    }
    if (signal?.aborted) throw abortError();
    await waitFor(() => ready || failure !== undefined || ended);
    if (failure) throw failure;
    if (!ready) throw new StreamPostError("connection closed before the request was sent", "ECONNRESET");
    const open = socket;
    // Bun's write takes what the socket can take now and returns how much (the rest is ours to
    // resend after `drain`), so one buffer can be refilled as soon as write returns
    const writeAll = async (bytes: Uint8Array): Promise<boolean> => {
      let at = 0;
      while (at < bytes.length) {
        if (failure || ended || answer) return false;
        drained = false;
        const n = open.write(bytes.subarray(at));
        if (n > 0) at += n;
        if (at < bytes.length) await waitFor(() => drained || failure !== undefined || ended || answer !== undefined);
      }
      return true;
    };
    const head = [`POST ${url.pathname}${url.search} HTTP/1.1`, `Host: ${url.host}`];
    for (const [name, value] of Object.entries(options.headers)) {
      if (/[\r\n]/.test(name) || /[\r\n]/.test(value)) throw new StreamPostError(`header ${name} holds a line break`);
      head.push(`${name}: ${value}`);
    }
    head.push(`Content-Length: ${size}`, "Connection: close", "", "");
    if (await writeAll(new TextEncoder().encode(head.join("\r\n")))) {
      const buffer =
        options.buffer ?? new Uint8Array(Math.max(4096, Math.min(options.pieceSize ?? 1024 * 1024, size || 4096)));
      const piece = buffer.length;
      while (sent < size) {
        const filled = options.fill(buffer, sent, Math.min(piece, size - sent));
        const n = typeof filled === "number" ? filled : await filled;
        if (n <= 0) throw new StreamPostError(`the body ended at ${sent} of ${size} bytes`);
        if (!(await writeAll(n === piece ? buffer : buffer.subarray(0, n)))) break;
        sent += n;
        options.onProgress?.(sent);
      }
    }
    await waitFor(() => answer !== undefined || ended || failure?.name === "AbortError");
    if (!answer && ended) {
      try {
        answer = parseAnswer(Buffer.concat(received), true);
      } catch (error) {
        failure ??= error as Error;
      }
    }
    if (answer) return { ...answer, sent };
    throw failure ?? new StreamPostError("connection closed without an answer", "ECONNRESET");
  } finally {
    signal?.removeEventListener("abort", onAbort);
    socket?.terminate();
  }
}
