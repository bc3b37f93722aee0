// The connections a run keeps open between its requests of its own (lib/wire.ts: the streamed POSTs,
// the GETs into a buffer), by where they lead: on a long link each new connection costs its TCP and TLS handshakes (and a proxy's
// CONNECT), so a chunked upload reuses them instead of opening one per chunk. A connection comes
// back here only after an answer read whole; one found closed is dropped. The pool belongs to one
// run (lib/connect.ts makes it, the script closes it): nothing here is shared between runs.
import { ProxyRoutes } from "./proxy.ts";

/** What the pool needs from a connection it keeps. */
export interface Reusable {
  /** False once the other side closed it, failed, or sent anything while it sat idle. */
  readonly alive: boolean;
  /** While idle a connection must not keep the process alive. */
  idle(idle: boolean): void;
  close(): void;
}

export interface SocketPoolOptions {
  /** How connections reach out (HTTPS_PROXY...); default: directly. */
  proxies?: ProxyRoutes;
  /** Idle connections kept per destination (default 16: more than any --concurrency in use). */
  maxIdle?: number;
  /**
   * How long an idle connection is trusted (default 10 s, less when the server says
   * `Keep-Alive: timeout=N`): one the server dropped meanwhile costs a request sent again.
   */
  idleMs?: number;
  /** False: keep none (every request on a connection of its own, `Connection: close`). */
  keepAlive?: boolean;
}

interface Idle<T> {
  socket: T;
  until: number;
}

export class SocketPool<T extends Reusable = Reusable> {
  readonly proxies: ProxyRoutes;
  readonly keepAlive: boolean;
  /** Connections opened and reused, for --verbose and tests. */
  opened = 0;
  reused = 0;
  private readonly idle = new Map<string, Idle<T>[]>();
  private readonly maxIdle: number;
  private readonly idleMs: number;
  private closed = false;

  constructor(options: SocketPoolOptions = {}) {
    this.proxies = options.proxies ?? new ProxyRoutes();
    this.keepAlive = options.keepAlive ?? true;
    this.maxIdle = options.maxIdle ?? 16;
    this.idleMs = options.idleMs ?? 10_000;
  }

  /** An idle connection to `key` that is still open (the most recently used first), or none. */
  take(key: string): T | undefined {
    const list = this.idle.get(key);
    const now = performance.now();
    while (list?.length) {
      const { socket, until } = list.pop() as Idle<T>;
      if (socket.alive && now < until) {
        socket.idle(false);
        this.reused++;
        return socket;
      }
      socket.close();
    }
    return undefined;
  }

  /** Count a connection opened for `key` (the caller opened it: the pool does not know how). */
  noteOpened(): void {
    this.opened++;
  }

  /** Keep a connection whose answer was read whole; `idleMs` is the server's own limit, if it gave one. */
  give(key: string, socket: T, idleMs?: number): void {
    if (this.closed || !this.keepAlive || !socket.alive) {
      socket.close();
      return;
    }
    const list = this.idle.get(key) ?? [];
    this.idle.set(key, list);
    if (list.length >= this.maxIdle) list.shift()?.socket.close();
    socket.idle(true);
    list.push({ socket, until: performance.now() + Math.min(this.idleMs, idleMs ?? Infinity) });
  }

  /** Close every idle connection; later ones given back are closed at once. */
  close(): void {
    this.closed = true;
    for (const list of this.idle.values()) for (const { socket } of list.splice(0)) socket.close();
    this.idle.clear();
  }
}

/** What a request over the run's own sockets needs besides its URL: the run's pool, and --timeout. */
export interface OwnSockets {
  /** The run's kept connections and proxy settings. */
  sockets: SocketPool;
  /** --timeout: the longest time without progress. */
  timeoutMs: number;
}
