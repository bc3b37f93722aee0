// How each upload chunk goes on the wire: raw, or gzipped at some level. `never` and `always` are
// fixed; `auto` measures the link and the compressor while the upload runs and picks the level
// with the best predicted throughput: raw on a fast link (the link outruns any gzip level on this
// kind of machine), level 6 on a ~10 MB/s WAN link (level 1 sent more bytes there than the link
// could afford, level 9 cost too much CPU: bench/RESULTS.md, "Figures the code relies on"). A chunk
// that gzip cannot shrink enough (already-compressed data) goes raw whatever the level.
import type { ZlibOptions } from "node:zlib";
import { nodeZlib } from "../builtins.ts";
import type { CompressMode } from "../transfer.ts";

/** 0 means raw. */
export type Level = 0 | 1 | 6 | 9;
const LEVELS: readonly Level[] = [0, 1, 6, 9];

/** `--compress always`: the vendor tools' gzip default, which the 10 MB/s benchmark also picks. */
export const ALWAYS_LEVEL = 6;
/**
 * `auto` starts at level 6: on a slow link every chunk sent at a weaker level costs bytes that
 * cannot be won back (level 1 sends noticeably more), while on a fast link the first decision, after
 * a few chunks, finds the compressor to be the bottleneck and turns to raw (bench/RESULTS.md,
 * "Figures the code relies on" and "What the defaults were chosen from").
 */
const START_LEVEL: Level = 6;
/** Send raw when gzip saves less than this share of a chunk. */
const MIN_SAVING = 0.08;
/** Switch only for a predicted gain above this, so noise does not flip the level back and forth. */
const HYSTERESIS = 1.15;
/**
 * From raw to gzip only for a clear gain: raw costs no CPU, and the compressor's speed before it is
 * measured is a figure from an idle core, optimistic on a machine shared with other work.
 */
const RAW_TO_GZIP = 2;

// Starting points before anything is measured: 4 MiB chunks of real binaries through Bun.gzipSync
// on this project's machine (ratio and bytes per second of input).
const PRIOR_RATIO: Record<Level, number> = { 0: 1, 1: 0.4, 6: 0.3, 9: 0.29 };
const PRIOR_SPEED: Record<Level, number> = { 0: Infinity, 1: 209e6, 6: 58e6, 9: 15e6 };

export interface Encoded {
  body: Uint8Array;
  gzipped: boolean;
}

interface Packed {
  out: Uint8Array;
  /** Time spent compressing, in ms. */
  ms: number;
}

/**
 * node:zlib's callback gzip runs on the thread pool: the event loop stays free (a 4 MiB level 6
 * chunk through Bun.gzipSync blocks its caller long enough to stall every request in flight and
 * spoil the link measurement) and a second core can help, at no memory cost; Workers did the same
 * for a whole JS heap each (bench/RESULTS.md, "What the defaults were chosen from"). Same deflate,
 * same ratio.
 */
async function gzipOffThread(data: Uint8Array, level: number): Promise<Packed> {
  const started = performance.now();
  const options: ZlibOptions = { level };
  const out = await new Promise<Uint8Array>((resolve, reject) =>
    nodeZlib().gzip(data, options, (error, gzipped) => (error ? reject(error) : resolve(gzipped))),
  );
  return { out, ms: performance.now() - started };
}

/**
 * Compressions at once: one per core (two here). More would only share the same cores, hold more
 * 4 MiB buffers, and make each one's time say less about the compressor's speed.
 */
const GZIP_PARALLEL = Math.max(1, Math.min(2, navigator.hardwareConcurrency ?? 2));

function ewma(old: number | undefined, value: number, weight = 0.25): number {
  return old === undefined ? value : old + (value - old) * weight;
}

export class CompressionPlan {
  private current: Level;
  private readonly ratio = new Map<Level, number>();
  private readonly speed = new Map<Level, number>();
  /** Shortest request seen: the fixed cost of one request (round trip and server overhead), ms. */
  private latencyMs = Infinity;
  private meanChunk: number | undefined;
  // the running measurement of the link since the last decision
  private inFlight = 0;
  private lastChange = performance.now();
  private busyIntegral = 0;
  private epochStart = performance.now();
  private epochRequests = 0;
  private epochWire = 0;
  private epochMs = 0;
  /** The link's estimated capacity in bytes/s, once measured. */
  private link: number | undefined;
  private triedRaw = false;
  /** What the probe write measured, if there was one. */
  private probedLink: number | undefined;
  private decisions = 0;
  private compressing = 0;
  private readonly gzipQueue: Array<() => void> = [];
  private started = false;
  /** Levels used, for the summary. */
  readonly switches: string[] = [];

  constructor(
    readonly mode: CompressMode,
    private readonly slots: number,
    /** Told each decision and its figures (shown with --verbose). */
    private readonly trace: (text: string) => void = () => undefined,
    /** Requests in flight while gzipping (the destination runs fewer then: Api1DriveDestination.lanes). */
    private readonly gzipSlots = slots,
  ) {
    this.current = mode === "never" ? 0 : mode === "always" ? ALWAYS_LEVEL : START_LEVEL;
  }

  get level(): Level {
    return this.current;
  }

  /** The shortest request seen so far, in ms (Infinity before any): the link's fixed cost per request. */
  get latency(): number {
    return this.latencyMs;
  }

  /** Encode one non-zero chunk for the wire. */
  async encode(raw: Uint8Array): Promise<Encoded> {
    const level = this.current;
    this.meanChunk = ewma(this.meanChunk, raw.length);
    if (level === 0) return { body: raw, gzipped: false };
    while (this.compressing >= GZIP_PARALLEL) await new Promise<void>((resolve) => this.gzipQueue.push(resolve));
    this.compressing++;
    let packed: Uint8Array;
    let ms: number;
    try {
      ({ out: packed, ms } = await gzipOffThread(raw, level));
    } finally {
      this.compressing--;
      this.gzipQueue.shift()?.();
    }
    const seconds = Math.max(1e-4, ms / 1000);
    this.ratio.set(level, ewma(this.ratio.get(level), packed.length / raw.length));
    this.speed.set(level, ewma(this.speed.get(level), raw.length / seconds));
    if (this.mode === "auto" && packed.length > raw.length * (1 - MIN_SAVING)) return { body: raw, gzipped: false };
    return { body: packed, gzipped: true };
  }

  /**
   * How the image compresses, from a piece of it (the probe's): gzip -1's ratio, before any chunk. False when it does not (random, already compressed data): raw then, whatever the link.
   */
  async sample(raw: Uint8Array): Promise<boolean> {
    if (this.mode !== "auto") return true;
    // the ratio only: the speed of one small piece on an idle pool thread says little about the chunks'
    const { out } = await gzipOffThread(raw, 1);
    this.ratio.set(1, out.length / raw.length);
    if (out.length <= raw.length * (1 - MIN_SAVING)) return true;
    if (this.current !== 0) this.switchTo(0, "the image does not compress");
    return false;
  }

  /**
   * Start from a measured link: one raw write of `bytes` took `ms` (sent alone, before the
   * parallel chunks). Picks the level the model predicts best; later decisions refine it.
   */
  seed(bytes: number, ms: number): void {
    if (this.mode !== "auto") return;
    const latency = Number.isFinite(this.latencyMs) ? this.latencyMs : 0;
    const link = bytes / (Math.max(0.5, ms - latency) / 1000);
    const chunk = this.meanChunk ?? 4 * 1024 * 1024;
    // a tie goes to the cheapest: raw costs no CPU (data that does not compress predicts the same everywhere)
    let best: Level = 0;
    for (const level of LEVELS) if (this.predict(level, link, chunk) > this.predict(best, link, chunk)) best = level;
    this.trace(
      `compress: probe ${bytes} bytes in ${ms.toFixed(1)} ms, link ~${(link / 1e6).toFixed(1)} MB/s; predicted MB/s ` +
        LEVELS.map(
          (level) => `${level === 0 ? "raw" : `-${level}`} ${(this.predict(level, link, chunk) / 1e6).toFixed(0)}`,
        ).join(", "),
    );
    if (best !== this.current) this.switchTo(best, `probe: link ~${(link / 1e6).toFixed(1)} MB/s`);
    this.link = link;
    this.probedLink = link;
  }

  /** A request without a body (info, create): its time is mostly the fixed cost per request. */
  noteLatency(ms: number): void {
    this.latencyMs = Math.min(this.latencyMs, ms);
  }

  requestStarted(): void {
    if (!this.started) {
      // the clock starts with the first request: creating the drive is not part of the link
      this.started = true;
      this.epochStart = this.lastChange = performance.now();
    }
    this.advance();
    this.inFlight++;
  }

  /** A write finished (or failed): `wire` bytes took `ms`. */
  requestFinished(wire: number, ms: number, ok: boolean): void {
    this.advance();
    this.inFlight--;
    if (!ok) return;
    this.latencyMs = Math.min(this.latencyMs, ms);
    this.epochRequests++;
    this.epochWire += wire;
    this.epochMs += ms;
    if (this.mode === "auto") this.maybeDecide();
  }

  private advance(): void {
    const now = performance.now();
    this.busyIntegral += this.inFlight * (now - this.lastChange);
    this.lastChange = now;
  }

  private ratioOf(level: Level): number {
    if (level === 0) return 1;
    const measured = this.ratio.get(level);
    if (measured !== undefined) return measured;
    // scale the prior's saving by what this data saved at a level that was measured: data that
    // does not compress at one level (random, already compressed) does not at another either
    for (const other of LEVELS) {
      const seen = this.ratio.get(other);
      if (other === 0 || seen === undefined) continue;
      const saving = Math.max(0, 1 - seen) * ((1 - PRIOR_RATIO[level]) / (1 - PRIOR_RATIO[other]));
      return Math.max(0, Math.min(1, 1 - saving));
    }
    return PRIOR_RATIO[level];
  }

  private speedOf(level: Level): number {
    // an idle core's figure is optimistic where the machine is shared (the server, other work): halve it until measured
    return this.speed.get(level) ?? PRIOR_SPEED[level] / 2;
  }

  /**
   * Image bytes per second each level would move: the smaller of what the compressors can feed
   * and what the link carries, where each of the requests in flight at that level (`slots`, raw;
   * `gzipSlots`, gzipped) costs the fixed latency plus its compressed bytes over its share of the
   * link bandwidth. On a far link fewer in flight move less: gzip with 4 where raw has 12 loses at
   * 100 ms a round trip on a link of several hundred MB/s, which a model counting 12 for both
   * found the other way round (bench/RESULTS-speed.md).
   */
  predict(level: Level, linkBytesPerSecond: number, chunk: number): number {
    const latency = Number.isFinite(this.latencyMs) ? this.latencyMs / 1000 : 0;
    const wire = chunk * this.ratioOf(level);
    const slots = level === 0 ? this.slots : Math.min(this.slots, this.gzipSlots);
    const seconds = latency + (slots * wire) / linkBytesPerSecond;
    const send = seconds > 0 ? (slots * chunk) / seconds : Infinity;
    return Math.min(send, this.speedOf(level) * GZIP_PARALLEL);
  }

  private maybeDecide(): void {
    const elapsed = performance.now() - this.epochStart;
    // the first decision comes early (a fast link should not wait long for raw); later ones see a full round
    const first = this.decisions === 0;
    if (this.epochRequests < (first ? Math.min(4, this.slots) : this.slots)) return;
    if (!first && elapsed < 250 && this.epochRequests < 4 * this.slots) return;
    this.decisions++;
    const meanMs = this.epochMs / this.epochRequests;
    const meanWire = this.epochWire / this.epochRequests;
    const busy = this.busyIntegral / Math.max(1, elapsed);
    const transfer = Math.max(0.2, meanMs - (Number.isFinite(this.latencyMs) ? this.latencyMs : 0)) / 1000;
    // the whole link: requests in flight on average, each moving its bytes in the transfer part of its time
    const measured = (Math.max(1, busy) * meanWire) / transfer;
    // few requests in flight while gzipping: the compressor is the bottleneck, and the link
    // carried less than it could (and request times include the compressor's pauses): a lower bound
    // (not while the first chunks are still filling the slots: few in flight then says nothing, and a
    // raw probe on a slow link would cost bytes that cannot be won back)
    const compressorBound = !first && this.current !== 0 && busy < 0.6 * this.slots;
    const link = compressorBound ? Math.max(this.link ?? 0, measured) : measured;
    this.link = link;
    const chunk = this.meanChunk ?? meanWire;
    // ...unless a probe found the link slow: then raw cannot win, and raw chunks cost bytes. (Without a
    // probe, the figures measured while gzip competes for the CPU are too poor to rule raw out.)
    const rawConceivable =
      this.probedLink === undefined ||
      this.predict(0, link, chunk) * RAW_TO_GZIP > this.predict(this.current, link, chunk);
    if (compressorBound && rawConceivable && !this.triedRaw) {
      // the link may well be faster than gzip: measure it with raw chunks once, the model decides from there
      this.triedRaw = true;
      this.switchTo(0, `compressor-bound at ${busy.toFixed(1)} of ${this.slots} in flight`);
      this.newEpoch();
      return;
    }
    let best = this.current;
    let bestRate = this.predict(best, link, chunk);
    const currentRate = bestRate;
    for (const level of LEVELS) {
      const rate = this.predict(level, link, chunk);
      if (rate > bestRate) {
        best = level;
        bestRate = rate;
      }
    }
    this.trace(
      `compress: link ~${(link / 1e6).toFixed(1)} MB/s, latency ${this.latencyMs.toFixed(1)} ms, ${busy.toFixed(1)} in flight; predicted MB/s ` +
        LEVELS.map(
          (level) => `${level === 0 ? "raw" : `-${level}`} ${(this.predict(level, link, chunk) / 1e6).toFixed(0)}`,
        ).join(", "),
    );
    const margin = this.current === 0 ? RAW_TO_GZIP : HYSTERESIS;
    if (this.current !== 0 && this.ratioOf(this.current) > 1 - MIN_SAVING)
      // every chunk goes raw anyway: stop paying for the compression
      this.switchTo(0, "gzip does not shrink this data");
    else if (best !== this.current && bestRate > currentRate * margin)
      this.switchTo(best, `link ~${(link / 1e6).toFixed(1)} MB/s`);
    this.newEpoch();
  }

  private switchTo(level: Level, why: string): void {
    const name = (l: Level) => (l === 0 ? "raw" : `gzip -${l}`);
    this.switches.push(`${name(this.current)} -> ${name(level)} (${why})`);
    this.current = level;
  }

  private newEpoch(): void {
    this.epochStart = performance.now();
    this.busyIntegral = 0;
    this.epochRequests = 0;
    this.epochWire = 0;
    this.epochMs = 0;
  }

  describe(): string {
    return this.current === 0 ? "raw" : `gzip -${this.current}`;
  }
}
