// One HTTP/1.1 connection of the run's own (plain, TLS, or TLS inside a proxy's CONNECT tunnel),
// for the requests that do not go through fetch: the streamed POSTs (lib/socket-post.ts) and the
// GETs read straight into a chunk's buffer (lib/socket-get.ts). fetch copies a body it sends and
// holds one it receives in pieces of its own; here the bytes go from the caller's buffer to the
// socket and from the socket to the caller's buffer.
//
// With the run's pool (lib/socket-pool.ts) a connection stays open for the next request where the
// server allows it, and goes the way the run's proxy settings say: to an https server through the
// proxy's CONNECT tunnel, TLS inside it checked for the server's name; to an http one as an
// absolute-form request.
import { nodeNet, nodeTls } from "./builtins.ts";
import type { Socket, SocketHandler } from "bun";
import { messageOf } from "./errors.ts";
import { describeNetworkError } from "./http.ts";
import { proxyError, proxyUrl, type ProxyServer } from "./proxy.ts";
import type { Reusable, SocketPool } from "./socket-pool.ts";

/** The most of an answer's body gathered (an upload answer is a UUID, an error a message). */
export const MAX_ANSWER = 1024 * 1024;

/**
 * What a connection through a proxy holds beside the body it receives, while one comes: through
 * bench/proxy.ts's tunnels the runtime's memory outside the JS heap grew by 1.2-1.8 MiB per download
 * connection against the same without it (4 GiB from a far server over https, 6 to 12 reads in
 * flight: bench/RESULTS-speed.md, "Figures the code relies on"); sending costs no more than direct.
 */
export const PROXIED_RECEIVE = 2 * 1024 * 1024;

/** A network failure with the code fetch would give (ECONNREFUSED, ECONNRESET...). */
export class WireError extends Error {
  constructor(
    message: string,
    readonly code?: string,
  ) {
    super(message);
    this.name = "WireError";
  }
}

export function abortError(): Error {
  return new DOMException("The operation was aborted.", "AbortError");
}

/** An answer's status line and headers, with what deciding to keep the connection needs. */
export interface AnswerHead {
  status: number;
  statusText: string;
  headers: Headers;
  /** Where the body begins in the input (1xx answers before it skipped). */
  bodyStart: number;
  /** HTTP/1.1 without `Connection: close`: the server lets the connection serve another request. */
  keepAlive: boolean;
  /** The server's `Keep-Alive: timeout=N`, in ms, when it gave one. */
  idleMs?: number;
}

/** An answer as read off the socket, its body gathered (at most MAX_ANSWER of it). */
export interface ParsedAnswer extends Omit<AnswerHead, "bodyStart"> {
  body: string;
  /** The answer ended where its own framing says (a length, the last chunk), not where the connection did. */
  framed: boolean;
  /** Bytes of the input it took, 1xx answers included. */
  consumed: number;
}

/** Parse `HTTP/1.1 200 OK\r\nheaders\r\n\r\n`, skipping 1xx answers. Undefined while incomplete. */
export function parseHead(raw: Buffer, offset = 0): AnswerHead | undefined {
  const split = raw.indexOf("\r\n\r\n", offset);
  if (split === -1) return undefined;
  const lines = raw.subarray(offset, split).toString("latin1").split("\r\n");
  const statusLine = /^HTTP\/1\.([01]) (\d{3}) ?(.*)$/.exec(lines[0] ?? "");
  if (!statusLine) throw new WireError(`malformed answer: '${(lines[0] ?? "").slice(0, 80)}'`);
  const status = Number(statusLine[2]);
  // 1xx (100 Continue) precede the real answer
  if (status >= 100 && status < 200) return parseHead(raw, split + 4);
  const headers = new Headers();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    if (colon > 0) headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  }
  const timeout = /(?:^|[,;\s])timeout=(\d+)/i.exec(headers.get("keep-alive") ?? "")?.[1];
  return {
    status,
    statusText: statusLine[3] ?? "",
    headers,
    bodyStart: split + 4,
    keepAlive: statusLine[1] === "1" && !/(^|,)\s*close\s*(,|$)/i.test(headers.get("connection") ?? ""),
    idleMs: timeout === undefined ? undefined : Number(timeout) * 1000,
  };
}

/** Parse a whole answer, decoding a chunked body. Undefined while incomplete. */
export function parseAnswer(raw: Buffer, ended: boolean, offset = 0): ParsedAnswer | undefined {
  const head = parseHead(raw, offset);
  if (!head) return undefined;
  const { bodyStart: start, ...rest } = head;
  const body = raw.subarray(start);
  const finish = (bytes: Buffer, end: number | undefined): ParsedAnswer => ({
    ...rest,
    body: bytes.subarray(0, MAX_ANSWER).toString("utf8"),
    framed: end !== undefined,
    consumed: end ?? raw.length,
  });
  // no body whatever the headers say
  if (head.status === 204 || head.status === 304) return finish(Buffer.alloc(0), start);
  if ((head.headers.get("transfer-encoding") ?? "").toLowerCase().includes("chunked")) {
    const parts: Buffer[] = [];
    let at = 0;
    for (;;) {
      const lineEnd = body.indexOf("\r\n", at);
      if (lineEnd === -1) return ended ? finish(Buffer.concat(parts), undefined) : undefined;
      const length = Number.parseInt(body.subarray(at, lineEnd).toString("latin1"), 16);
      if (!Number.isFinite(length)) throw new WireError("malformed chunked answer");
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
  const lengthText = head.headers.get("content-length");
  if (lengthText !== null) {
    const length = Number(lengthText);
    if (body.length < length && !ended && body.length < MAX_ANSWER) return undefined;
    return finish(body.subarray(0, length), body.length >= length ? start + length : undefined);
  }
  return ended ? finish(body, undefined) : undefined;
}

/**
 * One connection and what the request using it has seen; events while it sits idle in the pool
 * mean it is no good any more.
 */
export class Wire implements Reusable {
  socket?: Socket<Wire>;
  alive = true;
  /** A request (or the opening) is using it. */
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
  /** Takes the bytes that come instead of gathering them (a GET reading into a buffer); a throw fails the request. */
  reader?: (data: Uint8Array) => void;
  private wake?: () => void;

  constructor(
    readonly key: string,
    /** The proxy it goes through; for an http target, requests go to it in absolute form. */
    readonly proxy: ProxyServer | undefined,
    readonly absolute: boolean,
  ) {}

  /** A new request on it: what the last one saw is forgotten. */
  begin(): void {
    this.busy = true;
    this.received = [];
    this.receivedBytes = 0;
    this.drained = false;
    this.failure = undefined;
    this.answer = undefined;
    this.reader = undefined;
    this.parsing = true;
  }

  receive(data: Uint8Array): void {
    if (!this.busy) {
      this.close();
      return;
    }
    if (this.reader) {
      this.receivedBytes += data.length;
      try {
        this.reader(data);
      } catch (error) {
        this.failure ??= error as Error;
      }
      this.poke();
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
      wire.failure ??= new WireError(
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
    socket.data.failure ??= new WireError(error.message, (error as { code?: string }).code);
    socket.data.alive = false;
    socket.data.poke();
  },
};

/** Abort `wire`'s wait (and the connection) when `signal` fires; returns the undo. */
export function abortWith(wire: Wire, signal: AbortSignal | undefined): () => void {
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
export async function writeAll(wire: Wire, bytes: Uint8Array): Promise<boolean> {
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

/** How a request reaches its server: the run's pool (and proxy settings), a trusted CA for tests. */
export interface WireOptions {
  signal?: AbortSignal;
  /** Extra trusted CA certificates (PEM), for tests against a self-signed server. */
  ca?: string;
  /** Without it: a direct connection of its own, closed after. */
  pool?: SocketPool;
  /** The request's method, to name it when the proxy cannot be reached (default POST). */
  method?: string;
}

/** Where a connection leads, as the pool files it: the proxy, the server, the trusted CA. */
export function wireKey(url: URL, proxy: ProxyServer | undefined, ca: string | undefined): string {
  return `wire ${proxy ? `${proxy.shown} ` : ""}${url.protocol}//${url.host}${ca ? ` ca ${Bun.hash(ca)}` : ""}`;
}

/** A new connection to `url`'s server (through `proxy` when set), TLS checked for the server's name. */
export async function openWire(
  url: URL,
  proxy: ProxyServer | undefined,
  key: string,
  options: WireOptions,
): Promise<Wire> {
  const https = url.protocol === "https:";
  const host = url.hostname.replace(/^\[|\]$/g, "");
  const port = Number(url.port || (https ? 443 : 80));
  // made only for https: node:net and node:tls load on first use, and a plain connection needs neither
  const tlsOptions = () => ({
    // explicit: with a bare `{}` Bun 1.4.5 never calls handshake (measured), with `true` it does
    rejectUnauthorized: true,
    // SNI is for names only; an IP literal is checked against the certificate's IP entries
    serverName: nodeNet().isIP(host) ? undefined : host,
    ...(options.ca ? { ca: [...nodeTls().rootCertificates, options.ca] } : {}),
  });
  const wire = new Wire(key, proxy, proxy !== undefined && !https);
  const stopAborting = abortWith(wire, options.signal);
  try {
    try {
      wire.socket = await Bun.connect<Wire>({
        hostname: proxy?.hostname ?? host,
        port: proxy?.port ?? port,
        data: wire,
        tls: https && !proxy ? tlsOptions() : undefined,
        socket: HANDLERS,
      });
    } catch (error) {
      const failure = new WireError(messageOf(error), (error as { code?: string }).code);
      if (!proxy) throw failure;
      const unreachable = describeNetworkError(failure, new URL(proxyUrl(proxy)));
      const method = https ? "CONNECT" : (options.method ?? "POST");
      throw proxyError(proxy, { unreachable }, { method, path: url.host, cause: failure });
    }
    options.pool?.noteOpened();
    if (options.signal?.aborted) throw abortError();
    if (proxy && https) {
      await tunnel(wire, proxy, host, port);
      const [, secure] = (wire.socket as Socket<Wire>).upgradeTLS<Wire>({
        data: wire,
        tls: tlsOptions(),
        socket: HANDLERS,
      });
      wire.socket = secure;
    }
    if (https) {
      await wire.waitFor(() => wire.handshaken || wire.failure !== undefined || wire.ended);
      if (wire.failure) throw wire.failure;
      if (!wire.handshaken) throw new WireError("connection closed before the request was sent", "ECONNRESET");
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
  const authority = `${nodeNet().isIP(host) === 6 ? `[${host}]` : host}:${port}`;
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

/**
 * Run one request (`exchange`) to `url` with `headers` on a connection the pool kept, or a new one.
 * When it fails on a kept one before any byte of answer came (the server closed it as the request
 * went out), and sending it twice does no harm (`replayable`), it runs once more on a new connection.
 * Headers are checked before any connection is taken.
 */
export async function onWire<T>(
  url: URL,
  headers: Record<string, string>,
  options: WireOptions & { replayable?: boolean },
  exchange: (wire: Wire) => Promise<T>,
): Promise<T> {
  if (options.signal?.aborted) throw abortError();
  checkHeaders(headers);
  const proxy = options.pool?.proxies.for(url);
  const key = wireKey(url, proxy, options.ca);
  const kept = options.pool?.take(key) as Wire | undefined;
  if (!kept) return await exchange(await openWire(url, proxy, key, options));
  try {
    return await exchange(kept);
  } catch (error) {
    // a connection failure (it has a code), not a body that ended or a garbled answer
    const unanswered = kept.receivedBytes === 0 && error instanceof WireError && error.code !== undefined;
    if (!options.replayable || !unanswered || options.signal?.aborted) throw error;
  }
  return await exchange(await openWire(url, proxy, key, options));
}

/** A header that could end the head early or inject another: refused before anything is sent. */
export function checkHeaders(headers: Record<string, string>): void {
  for (const [name, value] of Object.entries(headers))
    if (/[\r\n]/.test(name) || /[\r\n]/.test(value)) throw new WireError(`header ${name} holds a line break`);
}

/**
 * The head of a request to `url` on `wire` (headers checked already), in origin or absolute form
 * (an http server through a proxy), ending with the blank line.
 */
export function requestHead(
  wire: Wire,
  method: string,
  url: URL,
  headers: Record<string, string>,
  keepAlive: boolean,
): Uint8Array {
  const head = [`${method} ${wire.absolute ? url.href : `${url.pathname}${url.search}`} HTTP/1.1`, `Host: ${url.host}`];
  for (const [name, value] of Object.entries(headers)) head.push(`${name}: ${value}`);
  if (wire.absolute && wire.proxy?.authorization) head.push(`Proxy-Authorization: ${wire.proxy.authorization}`);
  if (!keepAlive) head.push("Connection: close");
  head.push("", "");
  return new TextEncoder().encode(head.join("\r\n"));
}

/** Keep the connection for the next request when its exchange ended cleanly, or close it. */
export function release(wire: Wire, pool: SocketPool | undefined, reusable: boolean, idleMs?: number): void {
  if (pool?.keepAlive && reusable && wire.alive) pool.give(wire.key, wire, idleMs);
  else wire.close();
}

/**
 * Open `count` connections to `url`'s server (the run's proxy followed) and keep them in the pool
 * for the requests to come there: their handshakes then happen while the run does something else
 * (asks for the other links) instead of before each request's first byte. One that fails is dropped:
 * a request opens its own connection anyway.
 */
export function preconnect(url: URL, pool: SocketPool, count: number, ca?: string): void {
  if (!pool.keepAlive) return;
  const proxy = pool.proxies.for(url);
  const key = wireKey(url, proxy, ca);
  for (let i = 0; i < count; i++)
    openWire(url, proxy, key, { pool, ca }).then(
      (wire) => pool.give(key, wire),
      () => undefined,
    );
}
