// The window of requests in flight: one policy for every chunked path (API 1.0 upload and download,
// the API 2.0 chunked upload, the ranged API 2.0 download). On a far link each request waits a
// round trip, and a shaped link holds each connection to a share of it, so more requests in flight
// move more; on a near link more only hold more memory. So the window grows while throughput grows
// (doubling at first, then one at a time, with a probe now and then), goes back when a larger
// window moved no more, and halves when the server says it is busy; it never leaves [min, max],
// where max comes from memory (bytes a request in flight holds x max). Growth is tried only while
// the process waits more than it works (under BUSY_CPU of a core): when it is the bottleneck
// itself (a near link), one more request only holds more memory. `--concurrency` fixes it.
// It is fed what completed, and reads the caller's clocks (the time, the CPU time spent) when it
// decides: no timers and no module state, so a test drives it with numbers.

export interface WindowPolicy {
  /** Requests in flight at the start. */
  initial: number;
  /** Never fewer. */
  min: number;
  /** Never more: what memory allows (see windowFor). */
  max: number;
  /** --concurrency: the window stays at `initial`. */
  fixed: boolean;
}

/**
 * Bytes the requests in flight may hold at most, whatever the link: with what the runtime holds of
 * its own and the garbage a transfer leaves between collections, peak RSS stays under 128 MiB
 * (bench/RESULTS-speed.md). A path whose requests hold less beside their chunks passes its own
 * (API 1.0 writes: API1_WRITES_MEMORY).
 */
export const WINDOW_MEMORY = 48 * 1024 * 1024;
/** The most requests in flight the window ever grows to (--concurrency's own limit). */
export const MAX_WINDOW = 64;

/**
 * What a request in flight holds when its chunk goes through fetch (an API 1.0 read given no
 * sockets, a 2.0 drive's one stream in a copy): the chunk in the driver's buffer, and about as much
 * again in the runtime (the body it copies or gathers), as peak RSS per request in flight shows
 * (bench/RESULTS-speed.md). The requests over the run's own sockets (API 1.0 reads and writes, API
 * 2.0 ranged GETs) hold their chunk once.
 */
export function fetchedChunk(chunk: number): number {
  return 2 * chunk;
}

/**
 * Below this many ms for a transfer's first API call (a new connection, most of it the runtime's
 * first request: well under this on loopback) the server is near (the same machine, a LAN): the
 * process, not the link, is the bottleneck, so an API 2.0 download takes its cheapest way (one
 * stream); a far one (a round trip of 50 ms or more, its handshakes) takes the way that keeps the
 * most in flight (ranged GETs). API 1.0 reads go over the run's own sockets either way.
 * Figures: bench/RESULTS-speed.md.
 */
export const NEAR_LINK_MS = 50;

/** `wanted` requests in flight at the start, or fewer where each holds `bytesPerRequest` and `memory` allows fewer. */
export function startWithin(wanted: number, bytesPerRequest: number, memory = WINDOW_MEMORY): number {
  return Math.max(1, Math.min(wanted, Math.floor(memory / Math.max(1, bytesPerRequest))));
}

/** --concurrency N: N requests in flight, whatever the link shows. */
export function fixedWindow(requests: number): WindowPolicy {
  const n = Math.max(1, Math.floor(requests));
  return { initial: n, min: n, max: n, fixed: true };
}

/**
 * The window of a path whose requests in flight each hold `bytesPerRequest` (a chunk read whole, or
 * the piece a streamed POST refills): from `initial`, up to what WINDOW_MEMORY holds, or `concurrency`
 * when the user fixed it.
 */
export function windowFor(
  initial: number,
  bytesPerRequest: number,
  concurrency?: number,
  memory = WINDOW_MEMORY,
): WindowPolicy {
  if (concurrency !== undefined) return fixedWindow(concurrency);
  const max = Math.max(initial, Math.min(MAX_WINDOW, Math.floor(memory / Math.max(1, bytesPerRequest))));
  return { initial, min: 1, max, fixed: false };
}

/** A larger window must move this much more to count as growth (noise on a shared machine stays below). */
const GAIN = 1.1;
/** Rounds at a steady window before trying one more request in flight (the link may have changed). */
const PROBE_ROUNDS = 4;
/**
 * More requests are tried only in a round where the process used less than this share of a core:
 * on loopback it moves the bytes as fast as it can and uses a whole core or more, while on far
 * links it mostly waits, well under this (bench/RESULTS-speed.md).
 */
const BUSY_CPU = 0.75;

/** What the window reads to measure a round, in ms: the time, and the CPU time the process spent (user and system). */
export interface Clocks {
  now(): number;
  cpuMs(): number;
}

/** The real ones: performance.now() and process.cpuUsage(). */
export const PROCESS_CLOCKS: Clocks = {
  now: () => performance.now(),
  cpuMs: () => {
    const { user, system } = process.cpuUsage();
    return (user + system) / 1000;
  },
};

/** The window at one moment and the throughput it moved (bytes per ms). */
interface Sample {
  size: number;
  rate: number;
}

export class TransferWindow {
  /** Requests in flight wanted now. */
  size: number;
  /** Doubling while each round moves more; off after the first round that does not, or a busy answer. */
  private slowStart: boolean;
  /** The round being measured: since when (and the CPU time then), what completed, how many completions end it. */
  private roundStart: number;
  private roundCpu: number;
  private roundBytes = 0;
  private roundDone = 0;
  private roundLength: number;
  private rounds = 0;
  /** The last round's window and throughput, to compare the next one with. */
  private last?: Sample;
  private steadyRounds = 0;
  /** The round in which the window last halved for a busy answer: once a round is enough. */
  private busyRound = -1;
  /** Every size the window took, in order (for --verbose and tests). */
  readonly sizes: number[];

  constructor(
    private readonly policy: Readonly<WindowPolicy>,
    private readonly clocks: Clocks,
  ) {
    this.size = clamp(policy.initial, policy);
    this.slowStart = !policy.fixed;
    this.roundStart = clocks.now();
    this.roundCpu = clocks.cpuMs();
    this.roundLength = this.size;
    this.sizes = [this.size];
  }

  /** The most requests in flight it may ever want. */
  get max(): number {
    return this.policy.fixed ? this.size : this.policy.max;
  }

  /** A request completed, having moved `bytes`. */
  completed(bytes: number): void {
    if (this.policy.fixed) return;
    this.roundBytes += bytes;
    this.roundDone++;
    if (this.roundDone < this.roundLength) return;
    // the clocks are read once a round: the CPU time is a system call
    const [now, cpuMs] = [this.clocks.now(), this.clocks.cpuMs()];
    const elapsed = Math.max(1, now - this.roundStart);
    this.decide(this.roundBytes / elapsed, (cpuMs - this.roundCpu) / elapsed < BUSY_CPU);
    this.newRound(now, cpuMs);
  }

  /** The server said it is busy (429, 503, API 1.0 busy): half as many in flight, once a round. */
  busy(): void {
    if (this.policy.fixed || this.busyRound === this.rounds) return;
    this.slowStart = false;
    this.last = undefined;
    this.steadyRounds = 0;
    this.resize(Math.floor(this.size / 2));
    this.newRound(this.clocks.now(), this.clocks.cpuMs());
    this.busyRound = this.rounds;
  }

  /** `waiting`: the process spent the round mostly waiting (growth may help). */
  private decide(rate: number, waiting: boolean): void {
    const last = this.last;
    if (!last) {
      // the first round (or the first after a busy answer) only sets the mark, unless still doubling
      this.last = { size: this.size, rate };
      if (this.slowStart && waiting) this.grow();
      return;
    }
    if (this.size > last.size) {
      if (rate > last.rate * GAIN) {
        // more in flight moved more: keep growing, while the process mostly waits
        this.last = { size: this.size, rate };
        if (waiting) this.grow();
      } else {
        // it did not: back to the window that moved as much, and stay there
        this.slowStart = false;
        this.steadyRounds = 0;
        this.last = { size: last.size, rate: Math.max(last.rate, rate) };
        this.resize(last.size);
      }
      return;
    }
    // steady: follow the link down when it slows; now and then try one more in flight
    this.last = { size: this.size, rate: rate < last.rate / GAIN ? rate : last.rate };
    if (++this.steadyRounds >= PROBE_ROUNDS && waiting) {
      this.steadyRounds = 0;
      this.last = { size: this.size, rate };
      this.grow();
    }
  }

  private grow(): void {
    this.resize(this.slowStart ? this.size * 2 : this.size + 1);
  }

  private resize(size: number): void {
    const next = clamp(size, this.policy);
    if (next !== this.size) this.sizes.push(next);
    this.size = next;
  }

  private newRound(now: number, cpuMs: number): void {
    this.rounds++;
    this.roundStart = now;
    this.roundCpu = cpuMs;
    this.roundBytes = 0;
    this.roundDone = 0;
    // a round lasts as many completions as requests in flight: each lane's latest request measured once
    this.roundLength = Math.max(2, this.size);
  }
}

function clamp(size: number, policy: Readonly<WindowPolicy>): number {
  return Math.max(policy.min, Math.min(policy.max, Math.floor(size)));
}
