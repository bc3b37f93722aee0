// One GET over a connection of the run's own (lib/wire.ts) whose body goes straight into the
// caller's buffer as the socket delivers it. Through fetch a body comes in buffers of the runtime's
// own, held until read and then left to the GC: a read in flight held its chunk about twice
// (bench/RESULTS.md, "Figures the code relies on": fetchedChunk). Here it holds its chunk once. The
// runtime still hands each piece it receives over in a buffer of its own, garbage the GC has to find
// (bench/RESULTS-speed.md, the runs by hand).
//
// A GET may be asked before the buffer it goes into exists (a read a round trip ahead: lib/api2/
// early-gets.ts): what of its body comes before then is held (copies of the socket's pieces), the
// connection paused once HOLD_AHEAD bytes wait, so the rest waits in the network, not in memory.
//
// Only a plain body of a stated length is read this way (a 2xx with Content-Length, no
// Transfer-Encoding or Content-Encoding); a redirect, or a body in any other form, is left to the
// caller to ask for again through fetch (`kind: "elsewhere"`), which handles them all.
import {
  abortWith,
  onWire,
  MAX_ANSWER,
  parseAnswer,
  parseHead,
  release,
  requestHead,
  WireError,
  writeAll,
  type AnswerHead,
  type Wire,
  type WireOptions,
} from "./wire.ts";

/** The buffer of a GET asked before its read: the body's length asked for, and the buffer once there is one. */
export interface LaterBuffer {
  /** A body longer than this is not read. */
  length: number;
  /** What comes before it is held (HeldBody); a rejection fails the GET. */
  buffer: Promise<Uint8Array>;
}

export interface SocketGet extends WireOptions {
  url: URL;
  /** Sent as given (the caller masks them when tracing). */
  headers: Record<string, string>;
  /** Where the body goes: a body longer than this is not read (`length` tells); or one that comes later. */
  into: Uint8Array | LaterBuffer;
  /** Called when a 2xx body begins to go into `into`, with the answer's status. */
  onBody?(status: number): void;
  /** Called as body bytes come: how many are in `into` so far. */
  onProgress?(got: number): void;
  /** Called as body bytes wait for a buffer still to come: how many wait, and whether the connection is paused. */
  onHeld?(bytes: number, paused: boolean): void;
}

interface Status {
  status: number;
  statusText: string;
  headers: Headers;
}

export type SocketGetAnswer =
  /** A 2xx body of `length` bytes (its Content-Length); when it fits, all of it is in `into`, else none. */
  | (Status & { kind: "body"; length: number })
  /** Any answer but a 2xx or 3xx, its body gathered (at most 1 MiB): an error to report. */
  | (Status & { kind: "answer"; body: string })
  /** A redirect, or a 2xx body not of a stated, plain length: not read; ask for it through fetch. */
  | (Status & { kind: "elsewhere"; why: string });

/** Heads are a few hundred bytes; more than this without the blank line that ends one is no answer. */
const MAX_HEAD = 64 * 1024;

/**
 * Body bytes held for a buffer still to come before the connection is paused: about what a far link
 * brings a connection in a round trip (8 MB/s over 50 ms is 400 KB), so a GET asked a round trip
 * ahead is rarely paused, while on an unshaped link each holds about that much, not its whole range.
 */
export const HOLD_AHEAD = 1024 * 1024;

/**
 * Send one GET and read its answer (see SocketGetAnswer). A connection the server cut mid-body
 * rejects with the network's error, after onProgress told how much came.
 */
export function socketGet(options: SocketGet): Promise<SocketGetAnswer> {
  // a GET may go twice
  return onWire(options.url, options.headers, { ...options, replayable: true, method: "GET" }, (wire) =>
    exchange(wire, options),
  );
}

/** One GET on `wire`; the connection goes back to the pool only when the answer was read whole. */
async function exchange(wire: Wire, options: SocketGet): Promise<SocketGetAnswer> {
  const keepAlive = options.pool?.keepAlive ?? false;
  wire.begin();
  const reading = new AnswerReading(options, wire);
  wire.reader = (data) => reading.take(data);
  const stopAborting = abortWith(wire, options.signal);
  if (!(options.into instanceof Uint8Array))
    options.into.buffer.then(
      (buffer) => {
        if (reading.over) return;
        reading.attach(buffer);
        wire.poke();
      },
      (error) => {
        // the wire may serve another request by then
        if (reading.over) return;
        wire.failure ??= error;
        wire.poke();
      },
    );
  try {
    await writeAll(wire, requestHead(wire, "GET", options.url, options.headers, keepAlive));
    // an answer held whole for its buffer is read once the buffer comes, whether or not the connection ended
    await wire.waitFor(
      () => reading.answer !== undefined || wire.failure !== undefined || (wire.ended && !reading.holding),
    );
    const answer = reading.answer ?? reading.ended();
    if (!answer) {
      if (wire.failure) throw wire.failure;
      throw new WireError(
        reading.inBody ? "the connection ended mid-body" : "connection closed without an answer",
        "ECONNRESET",
      );
    }
    release(wire, options.pool, keepAlive && reading.whole, reading.head?.idleMs);
    return answer;
  } catch (error) {
    wire.close();
    throw error;
  } finally {
    stopAborting();
    wire.reader = undefined;
    // a buffer that comes after the exchange ended gets nothing of it
    reading.over = true;
  }
}

/** Body bytes that came before their buffer: kept in order, the connection paused once `limit` wait. */
export class HeldBody {
  private pieces: Uint8Array[] = [];
  bytes = 0;
  paused = false;

  constructor(
    private readonly limit: number,
    private readonly pause: () => void,
  ) {}

  /** Bytes off the socket (Bun reuses its buffer after the callback: they are copied now). */
  hold(data: Uint8Array): void {
    if (data.length === 0) return;
    this.pieces.push(new Uint8Array(data));
    this.bytes += data.length;
    if (this.paused || this.bytes < this.limit) return;
    this.paused = true;
    this.pause();
  }

  /** What was held, in order; nothing is held after. */
  release(): Uint8Array[] {
    const pieces = this.pieces;
    this.pieces = [];
    this.bytes = 0;
    return pieces;
  }
}

/** What came of the answer so far: its head, then its body into the caller's buffer (held until there is one), or gathered. */
class AnswerReading {
  head?: AnswerHead;
  answer?: SocketGetAnswer;
  /** The answer ended at its own end, nothing after it: the connection can serve another request. */
  whole = false;
  /** The exchange ended (answered or failed): nothing more goes into a buffer. */
  over = false;
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  private mode: "head" | "hold" | "into" | "gather" | "done" = "head";
  /** The bytes asked for at most, and where they go once known. */
  private readonly room: number;
  private buffer?: Uint8Array;
  private readonly held: HeldBody;
  private length = 0;
  private got = 0;

  constructor(
    private readonly options: SocketGet,
    private readonly wire: Wire,
  ) {
    const { into } = options;
    if (into instanceof Uint8Array) this.buffer = into;
    this.room = into.length;
    this.held = new HeldBody(HOLD_AHEAD, () => wire.socket?.pause());
  }

  get inBody(): boolean {
    return this.mode === "into" || this.mode === "hold";
  }

  /** Body bytes wait for the buffer. */
  get holding(): boolean {
    return this.mode === "hold";
  }

  /** Bytes off the socket (Bun reuses its buffer after the callback: they are copied now). */
  take(data: Uint8Array): void {
    if (this.mode === "into") this.fill(data);
    else if (this.mode === "hold") this.hold(data);
    else if (this.mode === "done")
      // more than the answer held: the connection is not reused
      this.whole = false;
    else {
      this.pending.push(new Uint8Array(data));
      this.pendingBytes += data.length;
      if (this.mode === "gather") this.settleGathered(this.pendingBytes > MAX_ANSWER + MAX_HEAD);
      else this.readHead();
    }
  }

  /** The buffer came: what was held goes into it, and the connection reads on. */
  attach(buffer: Uint8Array): void {
    if (this.buffer || (this.mode !== "head" && this.mode !== "hold")) return;
    this.buffer = buffer.subarray(0, this.room);
    if (this.mode === "head") return;
    this.mode = "into";
    const paused = this.held.paused;
    for (const piece of this.held.release()) this.take(piece);
    if (paused) this.wire.socket?.resume();
  }

  /** The connection ended: what the answer was, if it is one without a stated end. */
  ended(): SocketGetAnswer | undefined {
    if (this.mode === "gather") this.settleGathered(true);
    return this.answer;
  }

  private readHead(): void {
    const raw = Buffer.concat(this.pending);
    const head = parseHead(raw);
    if (!head) {
      if (raw.length > MAX_HEAD) throw new WireError(`malformed answer: no end of its head in ${MAX_HEAD} bytes`);
      return;
    }
    this.head = head;
    const { status, headers } = head;
    if (status < 200 || status >= 400) {
      // an error: its message gathered
      this.mode = "gather";
      this.pending = [raw];
      this.settleGathered(false);
      return;
    }
    const notPlain = status >= 300 ? "a redirect" : notPlainBody(headers);
    if (notPlain) {
      this.finish({ ...statusOf(head), kind: "elsewhere", why: notPlain });
      return;
    }
    this.length = Number(headers.get("content-length"));
    if (this.length > this.room) {
      // longer than asked: none of it is read
      this.finish({ ...statusOf(head), kind: "body", length: this.length });
      return;
    }
    this.pending = [];
    this.options.onBody?.(status);
    const rest = raw.subarray(head.bodyStart);
    if (this.buffer || this.length === 0) {
      this.mode = "into";
      this.fill(rest);
    } else {
      this.mode = "hold";
      this.hold(rest);
    }
  }

  private hold(bytes: Uint8Array): void {
    this.held.hold(bytes);
    this.options.onHeld?.(this.held.bytes, this.held.paused);
  }

  private fill(bytes: Uint8Array): void {
    const room = this.length - this.got;
    const n = Math.min(room, bytes.length);
    if (n > 0) {
      (this.buffer as Uint8Array).set(n === bytes.length ? bytes : bytes.subarray(0, n), this.got);
      this.got += n;
      this.options.onProgress?.(this.got);
    }
    if (this.got < this.length) return;
    this.whole = bytes.length === n && (this.head?.keepAlive ?? false);
    this.mode = "done";
    this.answer = { ...statusOf(this.head as AnswerHead), kind: "body", length: this.length };
  }

  private settleGathered(ended: boolean): void {
    const raw = Buffer.concat(this.pending);
    const parsed = parseAnswer(raw, ended);
    if (!parsed) return;
    this.mode = "done";
    this.whole = parsed.framed && parsed.consumed === raw.length && parsed.keepAlive;
    this.answer = { ...statusOf(parsed), kind: "answer", body: parsed.body };
  }

  private finish(answer: SocketGetAnswer): void {
    this.mode = "done";
    this.whole = false;
    this.answer = answer;
  }
}

/** Why a 2xx body cannot go straight into the buffer (undefined: it can, a plain one of a stated length). */
function notPlainBody(headers: Headers): string | undefined {
  const encoding = (headers.get("content-encoding") ?? "identity").toLowerCase();
  const length = headers.get("content-length");
  if (headers.has("transfer-encoding")) return `a body sent as ${headers.get("transfer-encoding")}`;
  if (encoding !== "identity") return `a body in ${encoding}`;
  if (length === null || !/^\d+$/.test(length)) return "a body of no stated length";
  return undefined;
}

function statusOf(head: Status): Status {
  return { status: head.status, statusText: head.statusText, headers: head.headers };
}
