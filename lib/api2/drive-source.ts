// An API 2.0 drive as a source: `drives/UUID/download/` on the direct host (following its redirect,
// credentials only to the origin named), every answer checked against the drive's size. Two ways:
// - openApi2Drive: one GET read in order (a copy's source, --verify's read back). A read cut by a
//   failure that may pass (a reset, a stall past --timeout, a 5xx) asks again with
//   `Range: bytes=N-` from where that read began, under the connection's retry policy; a server that
//   ignores Range sends the drive from 0 again and the bytes before N are dropped.
// - openApi2RangedDrive: reads at any offset, each its own GET of `Range: bytes=A-B` over the run's
//   sockets, straight into its chunk (socket-ranges.ts), as many in flight as the run's window (a
//   far link holds each connection to a share of it); the driver retries a read that may pass; a
//   read nearly done asks for the next range a round trip ahead (early-gets.ts). A server that
//   ignores Range (a 200, or another range than asked) is read through one GET in order from then
//   on, from 0 again; one that sends ranges chunked or compressed, through that GET too.
import type { ConsolaInstance } from "consola";
import { directClient, type Connection } from "../connect.ts";
import { bodyReader, type BodyReader } from "../body.ts";
import { GC_EVERY } from "../chunks/engine.ts";
import type { Source } from "../chunks/endpoints.ts";
import { NEAR_LINK_MS } from "../chunks/window.ts";
import { ApiError, messageOf, OperationError } from "../errors.ts";
import type { HttpClient } from "../http.ts";
import { logRetry, withRetry, type RetryPolicy } from "../retry.ts";
import { DownloadLinks } from "./download-links.ts";
import { EarlyGets, EndWatch } from "./early-gets.ts";
import { contentLength, cutAnswer, parseContentRange, refusedAnswer } from "./content-range.ts";
import { SocketRanges, type RangeAnswer } from "./socket-ranges.ts";
import { HOLD_AHEAD, type LaterBuffer } from "../socket-get.ts";
import { PROXIED_RECEIVE } from "../wire.ts";
import { getDrive } from "./drives.ts";
import { NO_TOTAL_LIMIT, Watchdog } from "../watchdog.ts";

/**
 * What a failure while a body arrives means: the watchdog's abort is a timeout; a broken
 * connection (fetch's error carries a code such as ECONNRESET, and names no system call) is a
 * network error; both may pass. A local file's failure (ENOSPC names its system call `write`) and
 * our own checks (OperationError) are final.
 */
function bodyFailure(error: unknown, watchdog: Watchdog): unknown {
  const translated = watchdog.translate(error, "GET", "download");
  if (translated instanceof OperationError || !(translated instanceof Error)) return translated;
  const { code, syscall } = translated as { code?: unknown; syscall?: unknown };
  if (typeof code !== "string" || syscall !== undefined) return translated;
  return new ApiError({
    kind: "network",
    message: messageOf(translated),
    method: "GET",
    path: "download",
    cause: translated,
  });
}

/** The API path a drive is downloaded from (the direct host's; it may redirect). */
export function downloadPath(drive: string): string {
  return `drives/${drive}/download/`;
}

/**
 * Bytes one GET of the drive read in order asks for at most, through a proxy: there the runtime
 * takes the answer's body as fast as the network gives it, whatever the reader has read (a 1 GiB
 * drive held 1.4 GB of memory in one GET: bench/RESULTS-speed.md), so a drive is read in spans of
 * this size, one after the other, and memory stays bounded by one span.
 */
export const PROXIED_SPAN = 8 * 1024 * 1024;

/**
 * Bytes between full collections for a drive read in spans: each span's answer, once read, is
 * garbage the GC does not count as pressure (4 GiB through a proxy over https: 138-147 MiB peak RSS
 * without, 113-116 every 32 MiB in the same time, 104 every 16 MiB but 20% slower:
 * bench/RESULTS-speed.md, "Figures the code relies on").
 */
export const SPANS_GC_EVERY = 32 * 1024 * 1024;

/** What every GET of one drive shares: the request, the size every answer must announce, the stall bound. */
class DriveDownload {
  readonly path: string;
  /** Bytes a GET in order asks for at most (through a proxy); undefined: to the drive's end. */
  readonly span?: number;

  constructor(
    readonly client: HttpClient,
    readonly drive: string,
    readonly size: number,
    readonly timeoutMs: number,
  ) {
    this.path = downloadPath(drive);
    if (client.proxied(this.path)) this.span = PROXIED_SPAN;
  }

  /** The GET (`range` as asked, none: the whole drive), with --timeout bounding the time without progress. */
  request(range: string | undefined, watchdog: Watchdog, signal?: AbortSignal): Promise<Response> {
    return this.client.request("GET", this.path, {
      // identity: the byte count must match Content-Length (and a Range its offsets)
      headers: range ? { range, "accept-encoding": "identity" } : { "accept-encoding": "identity" },
      timeoutMs: NO_TOTAL_LIMIT,
      signal: signal ? AbortSignal.any([signal, watchdog.signal]) : watchdog.signal,
    });
  }

  /** The answer announced something that is not this drive: final, nothing of it is used. */
  async refuse(response: Response, said: string): Promise<never> {
    await response.body?.cancel().catch(() => undefined);
    throw refusedAnswer(this.drive, this.size, said);
  }

  /** A body that ended (cleanly) before the bytes asked: a cut like any other, which may pass. */
  cut(at: number): ApiError {
    return cutAnswer(at, this.size, this.client.url(this.path).pathname);
  }
}

/** Bytes of an answer a read does not want (before its first byte) are read into this, and dropped. */
const SKIP_PIECE = 64 * 1024;

/**
 * The drive's bytes in order, over as many GETs as passing failures need. `viaPipe`: the answer's
 * body goes through a kernel pipe straight into the readers' buffers (lib/body.ts): no garbage, for
 * the one stream that moves a whole drive.
 */
class DriveStream {
  private body?: BodyReader;
  private watchdog?: Watchdog;
  /** The drive byte the open answer's next byte is, and the byte after its last (a span's end, or the drive's). */
  private position = 0;
  private end = 0;
  private queue: Promise<unknown> = Promise.resolve();
  private skipped?: Uint8Array;

  constructor(
    private readonly download: DriveDownload,
    private readonly policy: Readonly<RetryPolicy>,
    private readonly log: ConsolaInstance,
    private readonly viaPipe = false,
  ) {}

  /**
   * Bytes between full collections: through its JS stream each piece of an answer is garbage; through
   * the pipe none is, but a span's answer is once read.
   */
  get gcEvery(): number {
    if (!this.viaPipe) return GC_EVERY;
    return this.download.span === undefined ? Number.POSITIVE_INFINITY : SPANS_GC_EVERY;
  }

  /** The next byte of the open answer, if there is one: a read from there goes on with it. */
  get next(): number | undefined {
    return this.body ? this.position : undefined;
  }

  /** Reads are served in the order they come; `retried`: each under the retry policy (else one try, the caller retries). */
  read(buffer: Uint8Array, length: number, position: number, signal?: AbortSignal, retried = true): Promise<void> {
    const serve = () => this.serve(buffer, length, position, signal);
    const result = this.queue.then(() =>
      retried
        ? withRetry(serve, {
            policy: this.policy,
            signal,
            onRetry: logRetry(this.log, `reading drive ${this.download.drive} at byte ${position}`, () => undefined),
          })
        : serve(),
    );
    this.queue = result.catch(() => undefined);
    return result;
  }

  private async serve(buffer: Uint8Array, length: number, position: number, signal?: AbortSignal): Promise<void> {
    if (position < this.position) this.drop();
    try {
      if (!this.body) await this.get(position, signal);
      await this.take(undefined, position - this.position, signal);
      await this.take(buffer, length, signal);
    } catch (error) {
      // the next try starts a new GET at this read's first byte
      this.drop();
      this.position = position;
      throw bodyFailure(error, this.watchdog as Watchdog);
    }
  }

  /** Read the next `length` bytes into `buffer` (none: drop them); the answer must hold them. */
  private async take(buffer: Uint8Array | undefined, length: number, signal?: AbortSignal): Promise<void> {
    let done = 0;
    // bounded by the answer: each step takes some of it
    while (done < length) {
      this.skipped ??= buffer ? undefined : new Uint8Array(SKIP_PIECE);
      const room = buffer
        ? buffer.subarray(done, length)
        : (this.skipped as Uint8Array).subarray(0, Math.min(SKIP_PIECE, length - done));
      if (this.position === this.end && this.end < this.download.size) {
        // a span read whole: the next one goes on from here
        this.drop();
        await this.get(this.position, signal);
        continue;
      }
      const n = await (this.body as BodyReader).read(room);
      if (n === 0) throw this.download.cut(this.position);
      this.watchdog?.touch();
      this.position += n;
      done += n;
    }
  }

  /** A GET from byte `from`: its answer must be this drive's bytes from there (or from 0, Range ignored). */
  private async get(from: number, signal?: AbortSignal): Promise<void> {
    this.watchdog = new Watchdog(this.download.timeoutMs);
    const { span, size } = this.download;
    const last = span === undefined ? size - 1 : Math.min(from + span, size) - 1;
    const range = last < size - 1 ? `bytes=${from}-${last}` : from > 0 ? `bytes=${from}-` : undefined;
    await this.accept(await this.download.request(range, this.watchdog, signal), from, last);
  }

  private async accept(response: Response, from: number, last = this.download.size - 1): Promise<void> {
    const size = this.download.size;
    const range = response.status === 206 ? parseContentRange(response.headers.get("content-range")) : undefined;
    const start = range ? range.start : 0;
    const announced = range ? range.total : contentLength(response);
    const length = contentLength(response);
    if (length === undefined) {
      await response.body?.cancel().catch(() => undefined);
      throw new OperationError(
        `the server sent drive ${this.download.drive} without a Content-Length: a cut download could not be told from a whole one`,
      );
    }
    // a 206 from at most `from` to the last byte asked; a 200: the whole drive
    const end = range ? range.end + 1 : size;
    if (announced !== size || (range && (start > from || range.end !== last)) || length !== end - start)
      await this.download.refuse(response, `announced ${length} bytes from byte ${start} of ${announced ?? "?"}`);
    this.body = await bodyReader(response, this.viaPipe);
    this.position = start;
    this.end = end;
  }

  drop(): void {
    this.body?.cancel();
    this.body = undefined;
    this.watchdog?.stop();
  }
}

/** The drive's size from the API: every answer must announce the same. */
async function driveSize(connection: Connection, drive: string): Promise<number> {
  const { size } = await getDrive(connection.client, drive);
  if (size === undefined) throw new OperationError(`drive ${drive}: the server gave no size`);
  return size;
}

/** Drive `drive` as a source read in order through one GET (resumed with Range), its size from the API. */
export async function openApi2Drive(connection: Connection, drive: string, log: ConsolaInstance): Promise<Source> {
  const size = await driveSize(connection, drive);
  const open = (): Source => {
    const download = new DriveDownload(directClient(connection), drive, size, connection.timeoutMs);
    const stream = new DriveStream(download, connection.retry, log);
    return {
      size,
      sequential: true,
      remote: true,
      gcEvery: stream.gcEvery,
      read: (buffer, length, position, signal) => stream.read(buffer, length, position, signal),
      reopen: async () => open(),
      close: async () => stream.drop(),
    };
  };
  return open();
}

/**
 * Reads at any offset, each one ranged GET over the run's sockets (socket-ranges.ts), several at
 * once; or (`oneStream`: a near link, where one connection is all the link there is) one GET read in
 * order through a pipe. Once the server shows it ignores Range, or sends ranges in a form only fetch
 * reads, every read goes through that one GET.
 */
class RangedDrive implements Source {
  readonly sequential = false;
  readonly remote = true;
  readonly size: number;
  /** The one GET read in order (a near link's reads, or all of them once ranges proved unusable). */
  private readonly stream: DriveStream;
  private inStream = false;
  /** Ranged reads under way, and the end of the furthest one asked for (what is left to ask for). */
  private inFlight = 0;
  private furthest = 0;
  /** GETs asked a round trip before their reads (early-gets.ts). */
  private readonly early = new EarlyGets();
  /** The shortest time a ranged GET's answer took to come, in ms: the link's round trip. */
  private roundTrip = Number.POSITIVE_INFINITY;

  constructor(
    private readonly download: DriveDownload,
    private readonly ranges: SocketRanges,
    private readonly log: ConsolaInstance,
    policy: Readonly<RetryPolicy>,
    readonly oneStream: boolean,
    private readonly links?: DownloadLinks,
  ) {
    this.size = download.size;
    this.stream = new DriveStream(download, policy, log, true);
  }

  /** Ranged answers leave their pieces for the GC; the one stream, what its way of reading leaves. */
  get gcEvery(): number {
    return this.oneStream || this.inStream ? this.stream.gcEvery : GC_EVERY;
  }

  /**
   * What a ranged read of `chunk` bytes in flight holds at most: its chunk, what the GET asked ahead
   * for the next read holds before that read's buffer comes (HOLD_AHEAD), and through a proxy what
   * the connection holds beside them (PROXIED_RECEIVE; 4 GiB from a far server over https, 4 MiB chunks:
   * 109-115 MiB peak RSS with 8 in flight, 112-120 with 9, 115-125 with 10, 122-130 with 12:
   * bench/RESULTS-speed.md, "Figures the code relies on").
   */
  heldPerRead(chunk: number): number {
    return chunk + HOLD_AHEAD + (this.ranges.proxied ? PROXIED_RECEIVE : 0);
  }

  read(buffer: Uint8Array, length: number, position: number, signal?: AbortSignal): Promise<void> {
    if (this.oneStream || this.inStream) return this.stream.read(buffer, length, position, signal, false);
    return this.ranged(buffer.subarray(0, length), position, signal);
  }

  /** One ranged GET for `bytes`, from `position`. */
  private async ranged(bytes: Uint8Array, position: number, signal?: AbortSignal): Promise<void> {
    this.inFlight++;
    let answer: RangeAnswer;
    try {
      answer = await this.answer(bytes, position, signal);
    } finally {
      this.inFlight--;
    }
    if (answer.kind !== "read") return this.toOneStream(answer, bytes, position, signal);
  }

  /**
   * The range into `bytes`: through the GET asked early for it if there is one (a fresh GET should
   * that have failed before any of its body came), else a new one.
   */
  private async answer(bytes: Uint8Array, position: number, signal?: AbortSignal): Promise<RangeAnswer> {
    const early = this.early.take(position, bytes.length);
    if (early) {
      const stop = () => early.controller.abort();
      signal?.addEventListener("abort", stop, { once: true });
      try {
        return await early.take(bytes);
      } catch (error) {
        if (signal?.aborted || early.got() > 0) throw error;
      } finally {
        signal?.removeEventListener("abort", stop);
        early.watchdog.stop();
      }
    }
    const watchdog = new Watchdog(this.download.timeoutMs);
    this.furthest = Math.max(this.furthest, position + bytes.length);
    try {
      return await this.get(position, bytes.length, bytes, watchdog, signal, () => signal).answer;
    } finally {
      watchdog.stop();
    }
  }

  /**
   * A ranged GET into `into` (a buffer, or one to come: asked early); the time to its head counts
   * toward the link's round trip, and as it nears its end it asks for the next range (for the read
   * `readSignal` gives, once there is one).
   */
  private get(
    position: number,
    length: number,
    into: Uint8Array | LaterBuffer,
    watchdog: Watchdog,
    signal: AbortSignal | undefined,
    readSignal: () => AbortSignal | undefined,
  ): { answer: Promise<RangeAnswer>; got: () => number } {
    const asked = performance.now();
    const end = new EndWatch(length);
    let got = 0;
    const answer = this.ranges.get({
      position,
      length,
      into,
      watchdog,
      signal: signal ? AbortSignal.any([signal, watchdog.signal]) : watchdog.signal,
      link: this.link(length),
      onHead: () => {
        this.roundTrip = Math.min(this.roundTrip, performance.now() - asked);
      },
      onProgress: (sofar) => {
        got = sofar;
        watchdog.touch();
        if (end.endsWithin(sofar, performance.now(), this.roundTrip)) this.askEarly(length, readSignal());
      },
    });
    return { answer, got: () => got };
  }

  /** A download link asked for ahead, if one is ready; `length`: the reads still to come are as long. */
  private link(length: number): URL | undefined {
    return this.links?.take(this.inFlight + this.early.size, Math.ceil((this.size - this.furthest) / length));
  }

  /** Ask now for the `length` bytes after the furthest asked (a read in flight is nearly done). */
  private askEarly(length: number, signal?: AbortSignal): void {
    const position = this.furthest;
    if (position >= this.size || this.inStream || this.early.size >= this.inFlight) return;
    const bytes = Math.min(length, this.size - position);
    this.furthest = position + bytes;
    const watchdog = new Watchdog(this.download.timeoutMs);
    const controller = new AbortController();
    const cancel = signal ? AbortSignal.any([signal, controller.signal]) : controller.signal;
    let give!: (buffer: Uint8Array) => void;
    const buffer = new Promise<Uint8Array>((resolve) => {
      give = resolve;
    });
    const get = this.get(position, bytes, { length: bytes, buffer }, watchdog, cancel, () => signal);
    this.log.debug(
      `drive ${this.download.drive}: bytes=${position}-${position + bytes - 1} asked a round trip before its read`,
    );
    // taken by the read of that range, or dropped: a failure before its body is the read's to meet (it asks afresh)
    get.answer.catch(() => undefined);
    this.early.add(position, {
      length: bytes,
      take: (into) => {
        give(into);
        return get.answer;
      },
      got: get.got,
      watchdog,
      controller,
    });
  }

  /**
   * The server did not answer a range as asked (it sent the whole drive, or another range) or sent
   * it in a form only fetch reads: the one GET in order from now on.
   */
  private toOneStream(
    answer: Exclude<RangeAnswer, { kind: "read" }>,
    bytes: Uint8Array,
    position: number,
    signal?: AbortSignal,
  ): Promise<void> {
    if (!this.inStream) {
      this.inStream = true;
      this.links?.stop();
      this.early.clear();
      const drive = this.download.drive;
      this.log.info(
        answer.kind === "ignored"
          ? `the server does not answer drive ${drive} in ranges (${answer.status}): reading it in one stream, starting again from 0`
          : `the server sends drive ${drive}'s ranges as ${answer.why}: reading it in one stream`,
      );
    }
    return this.stream.read(bytes, bytes.length, position, signal, false);
  }

  /** True when a GET of `Range: bytes=AT-AT` is answered with exactly that byte of this drive (a kept .part may go on). */
  async resumesAt(at: number, signal?: AbortSignal): Promise<boolean> {
    const watchdog = new Watchdog(this.download.timeoutMs);
    try {
      const response = await this.download.request(`bytes=${at}-${at}`, watchdog, signal);
      const range = response.status === 206 ? parseContentRange(response.headers.get("content-range")) : undefined;
      await response.body?.cancel().catch(() => undefined);
      return range?.start === at && range.end === at && range.total === this.size;
    } finally {
      watchdog.stop();
    }
  }

  async close(): Promise<void> {
    this.links?.stop();
    this.early.clear();
    this.stream.drop();
  }
}

export type Api2RangedDrive = Source & {
  /** Read in one stream (a near link, or one request in flight asked for), not in ranged GETs. */
  readonly oneStream: boolean;
  /** What a ranged read of `chunk` bytes in flight holds at most. */
  heldPerRead(chunk: number): number;
  resumesAt(at: number, signal?: AbortSignal): Promise<boolean>;
};

/**
 * Drive `drive` as a source read in ranged GETs, several at once; or in one stream on a near link
 * (unless `concurrency` asks for more in flight) or when `concurrency` is 1. Its size from the API.
 */
export async function openApi2RangedDrive(
  connection: Connection,
  drive: string,
  log: ConsolaInstance,
  concurrency?: number,
): Promise<Api2RangedDrive> {
  const asked = performance.now();
  const size = await driveSize(connection, drive);
  const near = performance.now() - asked < NEAR_LINK_MS;
  const client = directClient(connection);
  const download = new DriveDownload(client, drive, size, connection.timeoutMs);
  const oneStream = concurrency === undefined ? near : concurrency === 1;
  // asked for from the first ranged read on (never before the run holds its lock)
  const links = oneStream ? undefined : new DownloadLinks(client, downloadPath(drive));
  const own = { sockets: connection.sockets, timeoutMs: connection.timeoutMs };
  const ranges = new SocketRanges(client, own, downloadPath(drive), drive, size);
  return new RangedDrive(download, ranges, log, connection.retry, oneStream, links);
}
