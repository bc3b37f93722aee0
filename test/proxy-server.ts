// Network pieces for proxy tests, both on 127.0.0.1 port 0: a forward proxy (CONNECT tunnels, and
// plain-http requests in absolute form) that alone resolves made-up host names and counts what goes
// through it, and a front that serves a plain server (the emulator), over TLS under a certificate
// when asked (test/certificates.ts makes them), and counts its connections.
import type { Socket, TCPSocketListener } from "bun";

/** A copy that owns its memory (a socket's data buffer is Bun's to reuse; Buffer#slice would be a view of it). */
const copy = (bytes: Uint8Array) => new Uint8Array(bytes);

/** Bytes a socket did not take yet, sent on `drain`: the helpers never drop bytes under load. */
class Outbox {
  private queue: Uint8Array[] = [];
  constructor(private readonly socket: Socket<unknown>) {}

  send(bytes: Uint8Array): void {
    if (this.queue.length > 0) {
      this.queue.push(copy(bytes));
      return;
    }
    const n = this.socket.write(bytes);
    if (n < bytes.length) this.queue.push(copy(bytes.subarray(Math.max(0, n))));
  }

  flush(): void {
    while (this.queue.length > 0) {
      const bytes = this.queue[0] as Uint8Array;
      const n = this.socket.write(bytes);
      if (n < bytes.length) {
        this.queue[0] = bytes.subarray(Math.max(0, n));
        return;
      }
      this.queue.shift();
    }
  }
}

/** A connection to 127.0.0.1:port whose bytes go back through `onData`; bytes sent before it is open wait. */
class Upstream {
  private socket?: Socket<unknown>;
  private outbox?: Outbox;
  private early: Uint8Array[] = [];
  private closed = false;

  constructor(port: number, onData: (bytes: Uint8Array) => void, onClose: () => void) {
    Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        data: (_socket, data) => onData(data),
        drain: () => this.outbox?.flush(),
        close: () => {
          this.closed = true;
          onClose();
        },
        error: () => {},
      },
    }).then(
      (socket) => {
        this.socket = socket;
        this.outbox = new Outbox(socket);
        if (this.closed) socket.end();
        for (const bytes of this.early.splice(0)) this.outbox.send(bytes);
      },
      () => onClose(),
    );
  }

  send(bytes: Uint8Array): void {
    if (this.outbox) this.outbox.send(bytes);
    else this.early.push(copy(bytes));
  }

  end(): void {
    this.closed = true;
    this.socket?.end();
  }
}

export interface ProxyOptions {
  /** Host names only this proxy resolves, each to the local port that serves it (whatever port the client asks). */
  hosts?: Record<string, number>;
  /** `user:password` this proxy requires in Proxy-Authorization (else it answers 407). */
  credentials?: string;
  /** Answer every CONNECT with this status (403, 502...) instead of opening the tunnel. */
  refuse?: number;
}

export interface ProxyRequest {
  method: string;
  /** `host:port` of a CONNECT, or the absolute URL of a plain-http request. */
  target: string;
  proxyAuthorization?: string;
  /** Every header of the request the proxy saw (a tunnel's inner requests are not seen). */
  headers: Record<string, string>;
}

interface ProxyConnection {
  outbox: Outbox;
  buffer: Buffer;
  /** Once a tunnel is open (or a request forwarded): where the client's bytes go. */
  upstream?: Upstream;
  upstreamTarget?: string;
  tunnel: boolean;
  /** Bytes of the current forwarded request body still to pass on. */
  bodyLeft: number;
}

/** A forward proxy on 127.0.0.1 that counts what goes through it. */
export class TestProxy {
  /** Client connections accepted. */
  connections = 0;
  /** CONNECT tunnels opened. */
  tunnels = 0;
  /** Plain-http requests forwarded. */
  forwarded = 0;
  /** Every request the proxy itself received, in order. */
  readonly requests: ProxyRequest[] = [];
  private readonly listener: TCPSocketListener<ProxyConnection>;

  constructor(readonly options: ProxyOptions = {}) {
    this.listener = Bun.listen<ProxyConnection>({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        open: (socket) => {
          this.connections++;
          socket.data = { outbox: new Outbox(socket), buffer: Buffer.alloc(0), tunnel: false, bodyLeft: 0 };
        },
        data: (socket, data) => this.receive(socket, data),
        drain: (socket) => socket.data.outbox.flush(),
        close: (socket) => socket.data.upstream?.end(),
        error: () => {},
      },
    });
  }

  get port(): number {
    return this.listener.port;
  }

  /** The proxy's URL, with `user:password@` when given. */
  url(credentials?: string): string {
    return `http://${credentials ? `${credentials}@` : ""}127.0.0.1:${this.port}`;
  }

  stop(): void {
    this.listener.stop(true);
  }

  private receive(socket: Socket<ProxyConnection>, data: Uint8Array): void {
    const state = socket.data;
    if (state.tunnel) {
      state.upstream?.send(data);
      return;
    }
    state.buffer = Buffer.concat([state.buffer, data]);
    // a forwarded request: its head, then Content-Length bytes of body, then the next request
    for (;;) {
      if (state.bodyLeft > 0) {
        const part = state.buffer.subarray(0, state.bodyLeft);
        if (part.length === 0) return;
        state.upstream?.send(part);
        state.bodyLeft -= part.length;
        state.buffer = state.buffer.subarray(part.length);
        continue;
      }
      const end = state.buffer.indexOf("\r\n\r\n");
      if (end === -1) return;
      const head = state.buffer.subarray(0, end).toString("latin1");
      state.buffer = state.buffer.subarray(end + 4);
      if (!this.request(socket, head)) return;
      if (state.tunnel) {
        if (state.buffer.length > 0) state.upstream?.send(state.buffer);
        state.buffer = Buffer.alloc(0);
        return;
      }
    }
  }

  /** One request head: open a tunnel, forward it, or refuse it (false: nothing more on this connection). */
  private request(socket: Socket<ProxyConnection>, head: string): boolean {
    const state = socket.data;
    const [line = "", ...lines] = head.split("\r\n");
    const [method = "", target = ""] = line.split(" ");
    const headers: Record<string, string> = {};
    for (const header of lines) {
      const colon = header.indexOf(":");
      if (colon > 0) headers[header.slice(0, colon).trim().toLowerCase()] = header.slice(colon + 1).trim();
    }
    this.requests.push({ method, target, proxyAuthorization: headers["proxy-authorization"], headers });
    const refuse = (status: number, reason: string) => {
      state.outbox.send(
        new TextEncoder().encode(
          `HTTP/1.1 ${status} ${reason}\r\nContent-Length: 0\r\nConnection: close\r\n${status === 407 ? 'Proxy-Authenticate: Basic realm="test"\r\n' : ""}\r\n`,
        ),
      );
      socket.end();
      return false;
    };
    const { credentials, refuse: refusal } = this.options;
    if (credentials && headers["proxy-authorization"] !== `Basic ${Buffer.from(credentials).toString("base64")}`)
      return refuse(407, "Proxy Authentication Required");
    if (method === "CONNECT") {
      if (refusal) return refuse(refusal, "Refused By Test");
      const port = this.resolve(target);
      if (port === undefined) return refuse(502, "Bad Gateway");
      this.tunnels++;
      state.tunnel = true;
      state.upstream = new Upstream(
        port,
        (bytes) => state.outbox.send(bytes),
        () => socket.end(),
      );
      state.outbox.send(new TextEncoder().encode("HTTP/1.1 200 Connection Established\r\n\r\n"));
      return true;
    }
    let url: URL;
    try {
      url = new URL(target);
    } catch {
      return refuse(400, "Bad Request");
    }
    const port = this.resolve(url.host);
    if (port === undefined || url.protocol !== "http:") return refuse(502, "Bad Gateway");
    if (headers["transfer-encoding"]) return refuse(501, "Not Implemented");
    this.forwarded++;
    if (state.upstreamTarget !== url.host) {
      state.upstream?.end();
      state.upstreamTarget = url.host;
      state.upstream = new Upstream(
        port,
        (bytes) => state.outbox.send(bytes),
        () => socket.end(),
      );
    }
    const rest = lines.filter((header) => !/^proxy-/i.test(header));
    state.upstream?.send(
      new TextEncoder().encode(`${method} ${url.pathname}${url.search} HTTP/1.1\r\n${rest.join("\r\n")}\r\n\r\n`),
    );
    state.bodyLeft = Number(headers["content-length"] ?? 0);
    return true;
  }

  /** The local port for `host:port`: a made-up name from `hosts`, else 127.0.0.1 itself; undefined: unknown. */
  private resolve(hostPort: string): number | undefined {
    const match = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(hostPort);
    if (!match) return undefined;
    const host = (match[1] as string).toLowerCase();
    const mapped = this.options.hosts?.[host];
    if (mapped !== undefined) return mapped;
    return host === "127.0.0.1" && match[2] ? Number(match[2]) : undefined;
  }
}

export interface FrontOptions {
  /** Serve over TLS with this key and certificate (test/certificates.ts). */
  tls?: { key: string; cert: string };
  /** After the first answer on a connection, close it (a server that keeps no connection open, and does not say so). */
  closeAfterAnswer?: boolean;
}

interface FrontConnection {
  outbox: Outbox;
  upstream?: Upstream;
  /** closeAfterAnswer: the answer's bytes seen so far, until its end is known. */
  answer: Buffer;
  closing?: boolean;
}

/** Passes a plain-http server on 127.0.0.1 on (over TLS when asked), counting the connections it takes. */
export class Front {
  /** Connections accepted, and still open. */
  connections = 0;
  open = 0;
  private readonly listener: TCPSocketListener<FrontConnection>;

  constructor(target: number, options: FrontOptions = {}) {
    this.listener = Bun.listen<FrontConnection>({
      hostname: "127.0.0.1",
      port: 0,
      tls: options.tls,
      socket: {
        open: (socket) => {
          this.connections++;
          this.open++;
          const state: FrontConnection = { outbox: new Outbox(socket), answer: Buffer.alloc(0) };
          socket.data = state;
          state.upstream = new Upstream(
            target,
            (bytes) => {
              state.outbox.send(bytes);
              if (options.closeAfterAnswer && answerEnds(state, bytes)) {
                // closed as a server that keeps no connection does it: whatever the client sends next is lost
                state.closing = true;
                socket.end();
              }
            },
            () => socket.end(),
          );
        },
        data: (socket, data) => {
          if (!socket.data.closing) socket.data.upstream?.send(data);
        },
        drain: (socket) => socket.data.outbox.flush(),
        close: (socket) => {
          this.open--;
          socket.data.upstream?.end();
        },
        error: () => {},
      },
    });
  }

  get port(): number {
    return this.listener.port;
  }

  stop(): void {
    this.listener.stop(true);
  }
}

/** Whether the answer the front is passing on is whole (a head and Content-Length bytes of body). */
function answerEnds(state: FrontConnection, bytes: Uint8Array): boolean {
  state.answer = Buffer.concat([state.answer, bytes]);
  const end = state.answer.indexOf("\r\n\r\n");
  if (end === -1) return false;
  const head = state.answer.subarray(0, end).toString("latin1");
  if (/^HTTP\/1\.1 1\d\d/.test(head)) {
    state.answer = state.answer.subarray(end + 4);
    return answerEnds(state, new Uint8Array());
  }
  const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? 0);
  return state.answer.length >= end + 4 + length;
}
