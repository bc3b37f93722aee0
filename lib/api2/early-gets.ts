// Ranged GETs asked for a round trip before their reads. On a far link the GETs in flight share the
// link evenly, so those that started together end together, and each next one waits a round trip
// for its first byte: the whole link idle once a wave. So a read that is nearly done (what is left
// of it, at its second half's pace, takes no longer than the link's round trip: the shortest time an
// answer's head took) asks at once for the range after the furthest one asked; when the driver then
// reads that range, it hands the GET its buffer and the answer goes on into it. Meanwhile what
// arrives of it is held, a round trip's worth at most before the connection pauses
// (lib/socket-get.ts HOLD_AHEAD), no chunk buffer.
import type { Watchdog } from "../watchdog.ts";
import type { RangeAnswer } from "./socket-ranges.ts";

export interface EarlyGet {
  readonly length: number;
  /** Hand the GET its read's buffer: the answer goes into it; resolves when it is whole. */
  take(buffer: Uint8Array): Promise<RangeAnswer>;
  /** Bytes of the answer in the read's buffer so far (a failure before any: the read asks afresh). */
  got(): number;
  /** Bounds the time without progress from the ask on; the read that takes the GET goes on with it. */
  readonly watchdog: Watchdog;
  /** Cancels the GET (nobody took it, or its read was stopped). */
  readonly controller: AbortController;
}

/**
 * Tells once when a read is nearly done: when the bytes still to come take no longer than a round
 * trip, at the pace of its second half (its first pieces may come in a burst: what the runtime
 * held before the read took the answer).
 */
export class EndWatch {
  private mark?: { at: number; got: number };
  private told = false;

  constructor(private readonly length: number) {}

  /** `got` bytes of the read have come by `now` (ms); the link's round trip is `roundTripMs`. */
  endsWithin(got: number, now: number, roundTripMs: number): boolean {
    if (this.told || got >= this.length) return false;
    if (!this.mark) {
      if (got >= this.length / 2) this.mark = { at: now, got };
      return false;
    }
    const moved = got - this.mark.got;
    const elapsed = now - this.mark.at;
    if (moved <= 0 || elapsed <= 0) return false;
    this.told = ((this.length - got) * elapsed) / moved <= roundTripMs;
    return this.told;
  }
}

/** The GETs asked early, by the position of their first byte. */
export class EarlyGets {
  private readonly gets = new Map<number, EarlyGet>();

  get size(): number {
    return this.gets.size;
  }

  add(position: number, get: EarlyGet): void {
    this.gets.set(position, get);
  }

  /**
   * The GET asked early for exactly this range, if any (one for another length is dropped). Reads
   * are made in order (a retry goes back, never past), so those asked for ranges before a new read's
   * will not be taken: dropped too.
   */
  take(position: number, length: number): EarlyGet | undefined {
    for (const [at, get] of this.gets) {
      if (at > position) continue;
      this.gets.delete(at);
      if (at === position && get.length === length) return get;
      drop(get);
    }
    return undefined;
  }

  /** Drop every GET not taken (the run ends, or the server ignores Range). */
  clear(): void {
    for (const get of this.gets.values()) drop(get);
    this.gets.clear();
  }
}

function drop(get: EarlyGet): void {
  get.controller.abort();
  get.watchdog.stop();
}
