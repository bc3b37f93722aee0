// The emulator's far, shaped link (off by default): what a client sees of a server across a WAN.
// - `rttMs`: each answer costs one round trip; paid by the origin's handler after it has read the
//   request (emulator/transport.ts), so it adds to the time the bodies take instead of hiding in it.
// - `connectCostMs`: a new connection's handshakes (TCP, plus TLS where served): nothing crosses it
//   either way before that long after it was accepted; a reused connection never pays it again.
// - `bandwidth`: bytes per second each way, one budget shared by every connection to every origin.
// - `connBandwidth`: bytes per second each way for each connection.
// The last three live in a TCP front (Bun.listen) before each origin's Bun.serve: it forwards the
// bytes unchanged (TLS passes through, so its handshake is paced too) and paces them, so answers keep
// their Content-Length and every body (1.0 reads and writes, 2.0 chunks, the single POST, downloads)
// is shaped alike. Each direction of a connection sends its bytes in slices of about SLICE_MS of
// link time; a slice is forwarded when it has crossed: never earlier than its bytes allow from the
// moment the first of them arrived. Without connect cost and bandwidths there is no front at all.
import type { Socket } from "bun";

export interface LinkOptions {
  /** Each answer comes this many milliseconds later (a round trip). */
  rttMs?: number;
  /** Milliseconds a new connection waits before any byte crosses it (its TCP and TLS handshakes). */
  connectCostMs?: number;
  /** Bytes per second each way, shared by all connections to both origins. */
  bandwidth?: number;
  /** Bytes per second each way for each connection. */
  connBandwidth?: number;
}

/** What crossed the fronts, for tests. */
export interface LinkStats {
  /** Connections accepted: each paid the connect cost once. */
  connections: number;
  /** Bytes from the clients to the origins, and back (TLS records included where served). */
  bytesUp: number;
  bytesDown: number;
}

/** Link time one slice takes: small enough to share the link fairly, large enough to cost few timers. */
const SLICE_MS = 10;
const MIN_SLICE = 1024;
const MAX_SLICE = 1024 * 1024;
/** A direction that stayed busy may catch up this much timer lateness, never more (no bursts after a stall). */
const CATCH_UP_MS = 20;
/** Bytes a direction holds before it stops reading its source (the source's own buffers hold the rest). */
const MIN_HOLD = 64 * 1024;

/** One direction of the shared link: when it is next free, on the performance.now() clock. */
interface Lane {
  freeAt: number;
}

type Side = Socket<Connection>;

/** One direction of one connection: what came from `source`, paced to `sink`. */
class Pipe {
  source?: Side;
  sink?: Side;
  private readonly queue: Uint8Array[] = [];
  private queued = 0;
  /** When the last slice finished crossing (ideal time): the next one starts no earlier. */
  private clock: number;
  /** The queue ran empty since the last slice: the next one starts no earlier than its bytes arrive. */
  private idle = true;
  /** A slice that is crossing, and when it has crossed. */
  private crossing?: Uint8Array;
  private crossedAt = 0;
  /** Bytes of a crossed slice the sink has not taken yet (it said so: wait for drain). */
  private unsent?: Uint8Array;
  private timer?: ReturnType<typeof setTimeout>;
  private sourceEnded = false;
  private stopped = false;
  private paused = false;

  constructor(
    private readonly link: WanLink,
    private readonly lane: Lane,
    openAt: number,
  ) {
    this.clock = openAt;
  }

  push(bytes: Uint8Array): void {
    this.queue.push(bytes);
    this.queued += bytes.length;
    if (!this.paused && this.queued >= this.holdLimit()) {
      this.paused = true;
      this.source?.pause();
    }
    this.pump();
  }

  /** The source sent its last byte: the sink ends once everything crossed. */
  end(): void {
    this.sourceEnded = true;
    this.pump();
  }

  drain(): void {
    const unsent = this.unsent;
    this.unsent = undefined;
    if (unsent) this.write(unsent);
    this.pump();
  }

  /** The sink is gone: nothing more moves. */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.queue.length = 0;
    this.queued = 0;
    this.crossing = undefined;
    this.unsent = undefined;
  }

  /** Move what may move now; then wait for a timer (a slice crossing) or a drain (the sink is full). */
  pump(): void {
    const sink = this.sink;
    // bounded: each turn forwards a slice taken off the queue, or returns to wait
    while (sink && !this.stopped && !this.timer && !this.unsent) {
      if (!this.crossing) {
        if (this.queued === 0) {
          this.idle = true;
          if (this.sourceEnded) {
            this.stopped = true;
            sink.end();
          }
          return;
        }
        this.send(performance.now());
      }
      const wait = this.crossedAt - performance.now();
      if (wait > 0) {
        this.timer = setTimeout(() => {
          this.timer = undefined;
          this.pump();
        }, wait);
        return;
      }
      const slice = this.crossing as Uint8Array;
      this.crossing = undefined;
      this.write(slice);
    }
  }

  /** The bytes per second this direction may use: its own cap, and the shared link's. */
  private rates(): { shared: number; rate: number } {
    const { bandwidth, connBandwidth } = this.link.options;
    const shared = bandwidth && bandwidth > 0 ? bandwidth : Number.POSITIVE_INFINITY;
    const own = connBandwidth && connBandwidth > 0 ? connBandwidth : Number.POSITIVE_INFINITY;
    return { shared, rate: Math.min(shared, own) };
  }

  private sliceSize(): number {
    const { rate } = this.rates();
    return Math.max(MIN_SLICE, Math.min(MAX_SLICE, Math.floor(rate * (SLICE_MS / 1000))));
  }

  /** Bytes held before the source is paused: a few slices, so the link never waits for them. */
  private holdLimit(): number {
    return Math.max(MIN_HOLD, 4 * this.sliceSize());
  }

  /** Put the next slice on the link: it starts when this direction and the shared link are free. */
  private send(now: number): void {
    const { shared, rate } = this.rates();
    const slice = this.take(this.sliceSize());
    let start = Math.max(this.clock, this.idle ? now : now - CATCH_UP_MS);
    this.idle = false;
    if (shared !== Number.POSITIVE_INFINITY) {
      start = Math.max(start, this.lane.freeAt);
      this.lane.freeAt = start + (slice.length / shared) * 1000;
    }
    this.clock = start + (slice.length / rate) * 1000;
    this.crossing = slice;
    this.crossedAt = this.clock;
  }

  /** Up to `size` bytes off the queue, copied only when they span pieces. */
  private take(want: number): Uint8Array {
    const size = Math.min(this.queued, want);
    const first = this.queue[0] as Uint8Array;
    let slice: Uint8Array;
    if (first.length > size) {
      slice = first.subarray(0, size);
      this.queue[0] = first.subarray(size);
    } else if (first.length === size) {
      slice = this.queue.shift() as Uint8Array;
    } else {
      slice = new Uint8Array(size);
      // bounded: each turn takes a piece, or part of one, until the slice is full
      for (let at = 0; at < size; ) {
        const piece = this.queue[0] as Uint8Array;
        const part = Math.min(piece.length, size - at);
        slice.set(part === piece.length ? piece : piece.subarray(0, part), at);
        if (part === piece.length) this.queue.shift();
        else this.queue[0] = piece.subarray(part);
        at += part;
      }
    }
    this.queued -= size;
    if (this.paused && this.queued < this.holdLimit()) {
      this.paused = false;
      this.source?.resume();
    }
    return slice;
  }

  private write(bytes: Uint8Array): void {
    const written = (this.sink as Side).write(bytes);
    if (written >= 0 && written < bytes.length) this.unsent = bytes.subarray(written);
  }
}

/** A client connection through a front, and its connection to the origin behind it. */
interface Connection {
  /** Client to origin, and back. */
  up: Pipe;
  down: Pipe;
  client: Side;
  origin?: Side;
  /** Sides closed so far (the connection is forgotten at two). */
  closed: number;
  /** The open connections of its front. */
  front: Set<Connection>;
}

/** A front listening: its port, and stop (every connection through it reset). */
export interface Front {
  readonly port: number;
  stop(): void;
}

export class WanLink {
  readonly stats: LinkStats = { connections: 0, bytesUp: 0, bytesDown: 0 };
  private readonly upLane: Lane = { freeAt: 0 };
  private readonly downLane: Lane = { freeAt: 0 };

  /** Read at every slice and answer: a test may change them while the emulator runs. */
  constructor(readonly options: LinkOptions) {}

  /** A front is needed for a connect cost or a bandwidth; a round trip alone is paid by the handler. */
  get shaped(): boolean {
    const { connectCostMs, bandwidth, connBandwidth } = this.options;
    return Boolean((connectCostMs ?? 0) > 0 || (bandwidth ?? 0) > 0 || (connBandwidth ?? 0) > 0);
  }

  /** A front on 127.0.0.1:`port` (0: a free one) forwarding every connection to 127.0.0.1:`origin`. */
  front(port: number, origin: number): Front {
    const open = new Set<Connection>();
    const listener = Bun.listen<Connection>({
      hostname: "127.0.0.1",
      port,
      allowHalfOpen: true,
      socket: {
        open: (client) => this.accept(client, origin, open),
        data: (client, data) => {
          this.stats.bytesUp += data.length;
          client.data.up.push(new Uint8Array(data));
        },
        drain: (client) => client.data.down.drain(),
        end: (client) => client.data.up.end(),
        close: (client, error) => this.closed(client.data, "client", error),
        error: (client, error) => this.closed(client.data, "client", error),
      },
    });
    return {
      port: listener.port,
      stop: () => {
        listener.stop(true);
        for (const connection of [...open]) this.reset(connection);
      },
    };
  }

  private accept(client: Side, origin: number, front: Set<Connection>): void {
    this.stats.connections++;
    client.setNoDelay(true);
    const openAt = performance.now() + (this.options.connectCostMs ?? 0);
    const connection: Connection = {
      up: new Pipe(this, this.upLane, openAt),
      down: new Pipe(this, this.downLane, openAt),
      client,
      closed: 0,
      front,
    };
    connection.up.source = client;
    connection.down.sink = client;
    client.data = connection;
    front.add(connection);
    Bun.connect<Connection>({
      hostname: "127.0.0.1",
      port: origin,
      allowHalfOpen: true,
      data: connection,
      socket: {
        open: (socket) => {
          socket.setNoDelay(true);
          connection.origin = socket;
          connection.down.source = socket;
          connection.up.sink = socket;
          connection.up.pump();
        },
        data: (_socket, data) => {
          this.stats.bytesDown += data.length;
          connection.down.push(new Uint8Array(data));
        },
        drain: () => connection.up.drain(),
        end: () => connection.down.end(),
        close: (_socket, error) => this.closed(connection, "origin", error),
        error: (_socket, error) => this.closed(connection, "origin", error),
        connectError: () => this.reset(connection),
      },
    }).catch(() => this.reset(connection));
  }

  /**
   * One side closed. After an error (a reset) the other side is reset at once; after a clean close
   * what still crosses towards the other side arrives, then that side ends too.
   */
  private closed(connection: Connection, side: "client" | "origin", error: Error | undefined): void {
    if (!connection.front.has(connection)) return;
    if (error) {
      this.reset(connection);
      return;
    }
    const [from, to] = side === "client" ? [connection.up, connection.down] : [connection.down, connection.up];
    to.stop();
    from.end();
    if (++connection.closed === 2) connection.front.delete(connection);
  }

  private reset(connection: Connection): void {
    connection.front.delete(connection);
    connection.up.stop();
    connection.down.stop();
    connection.client.terminate();
    connection.origin?.terminate();
  }
}
