// One streamed HTTP/1.1 POST over a plain socket, for the API 2.0 image upload.
//
// Why not fetch: fetch with a ReadableStream body needs a fresh buffer for every piece (it may hold
// any number of them), and that churn alone grows RSS; fetch with a Bun.file body is flat on plain
// http but, with Bun 1.4.5, reads the WHOLE file into memory over https. node:net with two reused
// buffers still grew on the largest images (per-write promises). Here one buffer is refilled as soon
// as Bun's socket write returns (it copies or sends what it accepts), and RSS stays flat
// (bench/RESULTS-api2.md, "How the design was chosen").
//
// With the run's pool (lib/socket-pool.ts) a connection stays open for the next POST where the
// server allows it (an answer read whole, its length known, no `Connection: close`), and goes the
// way the run's proxy settings say: to an https server through the proxy's CONNECT tunnel, TLS
// inside it checked for the server's name; to an http one as an absolute-form request.
import { readSync } from "node:fs";
import net from "node:net";
import tls from "node:tls";
import type { Socket, SocketHandler } from "bun";
import { messageOf, OperationError } from "./errors.ts";
import { describeNetworkError } from "./http.ts";
import { proxyError, proxyUrl, type ProxyServer } from "./proxy.ts";
import type { Reusable, SocketPool } from "./socket-pool.ts";

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

/** An answer as read off the socket, with what deciding to keep the connection needs. */
export interface ParsedAnswer extends Omit<StreamPostAnswer, "sent"> {
  /** The answer ended where its own framing says (a length, the last chunk), not where the connection did. */
  framed: boolean;
  /** Bytes of the input it took, 1xx answers included. */
  consumed: number;
  /** HTTP/1.1 without `Connection: close`: the server lets the connection serve another request. */
  keepAlive: boolean;
  /** The server's `Keep-Alive: timeout=N`, in ms, when it gave one. */
  idleMs?: number;
}

/** Parse `HTTP/1.1 200 OK\r\nheaders\r\n\r\nbody`, decoding a chunked body. Undefined while incomplete. */
export function parseAnswer(raw: Buffer, ended: boolean, offset = 0): ParsedAnswer | undefined {
  const split = raw.indexOf("\r\n\r\n", offset);
  if (split === -1) return undefined;
  const lines = raw.subarray(offset, split).toString("latin1").split("\r\n");
  const statusLine = /^HTTP\/1\.([01]) (\d{3}) ?(.*)$/.exec(lines[0] ?? "");
  if (!statusLine) throw new StreamPostError(`malformed answer: '${(lines[0] ?? "").slice(0, 80)}'`);
  const status = Number(statusLine[2]);
  // 1xx (100 Continue) precede the real answer
  if (status >= 100 && status < 200) return parseAnswer(raw, ended, split + 4);
  const headers = new Headers();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    if (colon > 0) headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  }
  const start = split + 4;
  const body = raw.subarray(start);
  const finish = (bytes: Buffer, end: number | undefined): ParsedAnswer => {
    const timeout = /(?:^|[,;\s])timeout=(\d+)/i.exec(headers.get("keep-alive") ?? "")?.[1];
    return {
      status,
      statusText: statusLine[3] ?? "",
      headers,
      body: bytes.subarray(0, MAX_ANSWER).toString("utf8"),
      framed: end !== undefined,
      consumed: end ?? raw.length,
      keepAlive: statusLine[1] === "1" && !/(^|,)\s*close\s*(,|$)/i.test(headers.get("connection") ?? ""),
      idleMs: timeout === undefined ? undefined : Number(timeout) * 1000,
    };
  };
  // no body whatever the headers say
  if (status === 204 || status === 304) return finish(Buffer.alloc(0), start);
  if ((headers.get("transfer-encoding") ?? "").toLowerCase().includes("chunked")) {
    const parts: Buffer[] = [];
    let at = 0;
    for (;;) {
      const lineEnd = body.indexOf("\r\n", at);
      if (lineEnd === -1) return ended ? finish(Buffer.concat(parts), undefined) : undefined;
      const length = Number.parseInt(body.subarray(at, lineEnd).toString("latin1"), 16);
      if (!Number.isFinite(length)) throw new StreamPostError("malformed chunked answer");
      if (length === 0) {
        // the last chunk, then trailer lines up to an empty one
        const close =
          body.subarray(lineEnd + 2, lineEnd + 4).toString("latin1") === "\r\n"
            ? lineEnd + 2
            : body.indexOf("\r\n\r\n", lineEnd);
        if (close === -1 && !ended) return undefined;
        return finish(Buffer.concat(parts), close === -1 ? undefined : start + close + 2);
      }
      if (body.length < lineEnd + 2 + length + 2) return ended ? finish(Buffer.concat(parts), undefined) : undefined;
      parts.push(body.subarray(lineEnd + 2, lineEnd + 2 + length));
      at = lineEnd + 2 + length + 2;
    }
  }
  const lengthText = headers.get("content-length");
  if (lengthText !== null) {
    const length = Number(lengthText);
    if (body.length < length && !ended && body.length < MAX_ANSWER) return undefined;
    return finish(body.subarray(0, length), body.length >= length ? start + length : undefined);
  }
  return ended ? finish(body, undefined) : undefined;
}

/**
 * One connection (plain, TLS, or TLS inside a proxy's tunnel) and what the POST using it has
 * seen; events while it sits idle in the pool mean it is no good any more.
 */
class Wire implements Reusable {
  socket?: Socket<Wire>;
  alive = true;
  /** A POST (or the opening) is using it. */
  busy = true;
  received: Uint8Array[] = [];
  receivedBytes = 0;
  ended = false;
  drained = false;
  handshaken = false;
  failure?: Error;
  /** Answers are parsed as they come (not while a tunnel opens). */
  parsing = false;
  answer?: ParsedAnswer;
  private wake?: () => void;

  constructor(
    readonly key: string,
    /** The proxy it goes through; for an http target, requests go to it in absolute form. */
    readonly proxy: ProxyServer | undefined,
    readonly absolute: boolean,
  ) {}

  /** A new POST on it: what the last one saw is forgotten. */
  begin(): void {
    this.busy = true;
    this.received = [];
    this.receivedBytes = 0;
    this.drained = false;
    this.failure = undefined;
    this.answer = undefined;
    this.parsing = true;
  }

  receive(data: Uint8Array): void {
    if (!this.busy) {
      this.close();
      return;
    }
    if (this.receivedBytes < MAX_ANSWER + 64 * 1024) {
      this.received.push(new Uint8Array(data));
      this.receivedBytes += data.length;
    }
    if (this.parsing) {
      try {
        this.answer ??= parseAnswer(Buffer.concat(this.received), false);
      } catch (error) {
        this.failure ??= error as Error;
      }
    }
    this.poke();
  }

  poke(): void {
    const resolve = this.wake;
    this.wake = undefined;
    resolve?.();
  }

  waitFor(done: () => boolean): Promise<void> {
    return new Promise<void>((resolve) => {
      if (done()) return resolve();
      const check = () => {
        if (done()) resolve();
        else this.wake = check;
      };
      this.wake = check;
    });
  }

  idle(idle: boolean): void {
    this.busy = !idle;
    if (idle) this.socket?.unref();
    else this.socket?.ref();
  }

  close(): void {
    this.alive = false;
    this.socket?.terminate();
  }
}

/** Every Wire's socket events (after a TLS upgrade the raw socket still reports: only the wire's current socket counts). */
const HANDLERS: SocketHandler<Wire> = {
  // Bun checks the chain and the host name, and reports here; refusing is up to us
  handshake(socket, success, authorizationError) {
    const wire = socket.data;
    if (socket !== wire.socket) return;
    if (success && !authorizationError) wire.handshaken = true;
    else
      wire.failure ??= new StreamPostError(
        `TLS: ${authorizationError?.message ?? "handshake failed"}`,
        (authorizationError as { code?: string } | null)?.code,
      );
    wire.poke();
  },
  data(socket, data) {
    if (socket === socket.data.socket) socket.data.receive(data);
  },
  drain(socket) {
    if (socket !== socket.data.socket) return;
    socket.data.drained = true;
    socket.data.poke();
  },
  end(socket) {
    if (socket !== socket.data.socket) return;
    socket.data.ended = true;
    socket.data.alive = false;
    socket.data.poke();
  },
  close(socket) {
    if (socket !== socket.data.socket) return;
    socket.data.ended = true;
    socket.data.alive = false;
    socket.data.poke();
  },
  error(socket, error) {
    if (socket !== socket.data.socket) return;
    socket.data.failure ??= new StreamPostError(error.message, (error as { code?: string }).code);
    socket.data.alive = false;
    socket.data.poke();
  },
};

/** Abort `wire`'s wait (and the connection) when `signal` fires; returns the undo. */
function abortWith(wire: Wire, signal: AbortSignal | undefined): () => void {
  const onAbort = () => {
    wire.failure = abortError();
    wire.close();
    wire.ended = true;
    wire.poke();
  };
  signal?.addEventListener("abort", onAbort, { once: true });
  return () => signal?.removeEventListener("abort", onAbort);
}

/**
 * Bun's write takes what the socket can take now and returns how much (the rest is ours to resend
 * after `drain`), so one buffer can be refilled as soon as this returns. False: the exchange ended
 * (a failure, the connection closed, an answer came) before every byte went.
 */
async function writeAll(wire: Wire, bytes: Uint8Array): Promise<boolean> {
  const socket = wire.socket as Socket<Wire>;
  let at = 0;
  while (at < bytes.length) {
    if (wire.failure || wire.ended || wire.answer) return false;
    wire.drained = false;
    const n = socket.write(bytes.subarray(at));
    if (n > 0) at += n;
    if (at < bytes.length)
      await wire.waitFor(() => wire.drained || wire.failure !== undefined || wire.ended || wire.answer !== undefined);
  }
  return true;
}

/** Where a connection leads, as the pool files it: the proxy, the server, the trusted CA. */
function wireKey(url: URL, proxy: ProxyServer | undefined, ca: string | undefined): string {
  return `post ${proxy ? `${proxy.shown} ` : ""}${url.protocol}//${url.host}${ca ? ` ca ${Bun.hash(ca)}` : ""}`;
}

/** A new connection to `url`'s server (through `proxy` when set), TLS checked for the server's name. */
async function openWire(url: URL, proxy: ProxyServer | undefined, key: string, options: StreamPost): Promise<Wire> {
  const https = url.protocol === "https:";
  const host = url.hostname.replace(/^\[|\]$/g, "");
  const port = Number(url.port || (https ? 443 : 80));
  const tlsOptions = {
    // explicit: with a bare `{}` Bun 1.4.5 never calls handshake (measured), with `true` it does
    rejectUnauthorized: true,
    // SNI is for names only; an IP literal is checked against the certificate's IP entries
    serverName: net.isIP(host) ? undefined : host,
    ...(options.ca ? { ca: [...tls.rootCertificates, options.ca] } : {}),
  };
  const wire = new Wire(key, proxy, proxy !== undefined && !https);
  const stopAborting = abortWith(wire, options.signal);
  try {
    try {
      wire.socket = await Bun.connect<Wire>({
        hostname: proxy?.hostname ?? host,
        port: proxy?.port ?? port,
        data: wire,
        tls: https && !proxy ? tlsOptions : undefined,
        socket: HANDLERS,
      });
    } catch (error) {
      const failure = new StreamPostError(messageOf(error), (error as { code?: string }).code);
      if (!proxy) throw failure;
      const unreachable = describeNetworkError(failure, new URL(proxyUrl(proxy)));
      throw proxyError(proxy, { unreachable }, { method: https ? "CONNECT" : "POST", path: url.host, cause: failure });
    }
    options.pool?.noteOpened();
    if (options.signal?.aborted) throw abortError();
    if (proxy && https) {
      await tunnel(wire, proxy, host, port);
      const [, secure] = (wire.socket as Socket<Wire>).upgradeTLS<Wire>({
        data: wire,
        tls: tlsOptions,
        socket: HANDLERS,
      });
      wire.socket = secure;
    }
    if (https) {
      await wire.waitFor(() => wire.handshaken || wire.failure !== undefined || wire.ended);
      if (wire.failure) throw wire.failure;
      if (!wire.handshaken) throw new StreamPostError("connection closed before the request was sent", "ECONNRESET");
    }
    return wire;
  } catch (error) {
    wire.close();
    throw error;
  } finally {
    stopAborting();
  }
}

/** Ask the proxy for a tunnel to `host:port`; anything but a 2xx is the proxy's refusal, named. */
async function tunnel(wire: Wire, proxy: ProxyServer, host: string, port: number): Promise<void> {
  const authority = `${net.isIP(host) === 6 ? `[${host}]` : host}:${port}`;
  const request = { method: "CONNECT", path: authority };
  const head = [`CONNECT ${authority} HTTP/1.1`, `Host: ${authority}`];
  if (proxy.authorization) head.push(`Proxy-Authorization: ${proxy.authorization}`);
  const headEnd = () => Buffer.concat(wire.received).indexOf("\r\n\r\n");
  await writeAll(wire, new TextEncoder().encode(`${head.join("\r\n")}\r\n\r\n`));
  await wire.waitFor(() => wire.failure !== undefined || wire.ended || headEnd() !== -1);
  if (wire.failure?.name === "AbortError") throw wire.failure;
  const raw = Buffer.concat(wire.received);
  const end = raw.indexOf("\r\n\r\n");
  if (end === -1) {
    const why = wire.failure
      ? describeNetworkError(wire.failure, new URL(proxyUrl(proxy)))
      : "it closed the connection without answering CONNECT";
    throw proxyError(proxy, { unreachable: why }, { ...request, cause: wire.failure });
  }
  const status = /^HTTP\/1\.[01] (\d{3}) ?(.*)/.exec(raw.subarray(0, end).toString("latin1"));
  if (!status) throw proxyError(proxy, { status: 0, reason: "(not an HTTP answer)" }, request);
  const code = Number(status[1]);
  if (code < 200 || code >= 300) throw proxyError(proxy, { status: code, reason: status[2] }, request);
  // the server speaks first only after our TLS hello: anything more is not a tunnel
  if (raw.length > end + 4)
    throw proxyError(proxy, { status: code, reason: "and then bytes that are not TLS" }, request);
  wire.received = [];
  wire.receivedBytes = 0;
}

/** A header that could end the head early or inject another: refused before anything is sent. */
function checkHeaders(headers: Record<string, string>): void {
  for (const [name, value] of Object.entries(headers))
    if (/[\r\n]/.test(name) || /[\r\n]/.test(value)) throw new StreamPostError(`header ${name} holds a line break`);
}

/**
 * Open `count` connections to `url`'s server (the run's proxy followed) and keep them in the pool
 * for the POSTs to come there: their handshakes then happen while the run does something else
 * (asks for the other links) instead of before each POST's first byte. One that fails is dropped:
 * a POST opens its own connection anyway.
 */
export function preconnect(url: URL, pool: SocketPool, count: number, ca?: string): void {
  if (!pool.keepAlive) return;
  const proxy = pool.proxies.for(url);
  const key = wireKey(url, proxy, ca);
  const options: StreamPost = { url, headers: {}, size: 0, fill: () => 0, pool, ca };
  for (let i = 0; i < count; i++)
    openWire(url, proxy, key, options).then(
      (wire) => pool.give(key, wire),
      () => undefined,
    );
}

/**
 * Send one POST with a streamed body of exactly `size` bytes and read the answer. An answer the
 * server gives early (401, 411, an error) is returned even if it cut the body short.
 */
export async function streamPost(options: StreamPost): Promise<StreamPostAnswer> {
  if (options.signal?.aborted) throw abortError();
  checkHeaders(options.headers);
  const pool = options.pool;
  const proxy = pool?.proxies.for(options.url);
  const key = wireKey(options.url, proxy, options.ca);
  const kept = pool?.take(key) as Wire | undefined;
  if (kept) {
    try {
      return await exchange(kept, options);
    } catch (error) {
      // a connection failure (it has a code), not a body that ended or a garbled answer
      const unanswered = kept.receivedBytes === 0 && error instanceof StreamPostError && error.code !== undefined;
      if (!options.replayable || !unanswered || options.signal?.aborted) throw error;
      // the server closed the kept connection as this POST went out: once more, on a new one
    }
  }
  return await exchange(await openWire(options.url, proxy, key, options), options);
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
    const head = [`POST ${wire.absolute ? url.href : `${url.pathname}${url.search}`} HTTP/1.1`, `Host: ${url.host}`];
    for (const [name, value] of Object.entries(options.headers)) head.push(`${name}: ${value}`);
    if (wire.absolute && wire.proxy?.authorization) head.push(`Proxy-Authorization: ${wire.proxy.authorization}`);
    head.push(`Content-Length: ${size}`, ...(keepAlive ? [] : ["Connection: close"]), "", "");
    if (await writeAll(wire, new TextEncoder().encode(head.join("\r\n")))) {
      const buffer =
        options.buffer ?? new Uint8Array(Math.max(4096, Math.min(options.pieceSize ?? 1024 * 1024, size || 4096)));
      const piece = buffer.length;
      while (sent < size) {
        const filled = options.fill(buffer, sent, Math.min(piece, size - sent));
        const n = typeof filled === "number" ? filled : await filled;
        if (n <= 0) throw new StreamPostError(`the body ended at ${sent} of ${size} bytes`);
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
    if (!answer) throw wire.failure ?? new StreamPostError("connection closed without an answer", "ECONNRESET");
  } catch (error) {
    wire.close();
    throw error;
  } finally {
    stopAborting();
  }
  wire.parsing = false;
  const whole = answer.framed && answer.consumed === wire.receivedBytes && sent === size;
  if (pool && keepAlive && whole && answer.keepAlive && wire.alive) pool.give(wire.key, wire, answer.idleMs);
  else wire.close();
  if (wire.absolute && answer.status === 407 && wire.proxy)
    throw proxyError(wire.proxy, { status: 407, reason: answer.statusText }, { method: "POST", path: url.host });
  const { status, statusText, headers, body } = answer;
  return { status, statusText, headers, body, sent };
}
