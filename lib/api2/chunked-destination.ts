// An API 2.0 chunked upload as a destination, the protocol of CloudSigma's own client: `initupload/`
// makes a drive in status `uploading`; each chunk of the `max(1, size // chunk)` grid gets a one-time
// link (`drives/UUID/action/?do=upload_chunk`, 416 when the server already holds it) and its raw
// bytes go there without credentials, read from a local source as the socket takes them. Links are
// asked for ahead of the chunk POSTs, so their round trip hides behind the bytes in flight. Every
// chunk is sent, zeros too: the drive leaves `uploading` only once every chunk is in.
import { basename } from "node:path";
import type { Connection } from "../connect.ts";
import { BufferPool } from "../bytes.ts";
import { isLoopbackHost } from "../config.ts";
import { ApiError, messageOf, OperationError, UsageError } from "../errors.ts";
import { answerError, type HttpClient } from "../http.ts";
import { formatRate, humanBytes, parseSize } from "../size.ts";
import type { Chunk, Destination, Opened, RunStats } from "../chunks/endpoints.ts";
import { lastRunsToEndGrid, type Grid } from "../chunks/grid.ts";
import { journalOpened, resolveDriveTarget, type DriveTransfer } from "../chunks/drive-target.ts";
import type { Journal } from "../chunks/journal.ts";
import type { ReadBack } from "../chunks/verify.ts";
import { deleteDrive2, getDrive, initUpload } from "./drives.ts";
import { openApi2Drive } from "./drive-source.ts";
import { fileBody, imageBody, streamPost, type StreamPostAnswer } from "../socket-post.ts";
import { preconnect } from "../wire.ts";
import { waitForDrive } from "./wait.ts";
import { Watchdog } from "../watchdog.ts";

/**
 * Bytes per chunk by default: each chunk costs a link request and a connection in client CPU, so
 * 16M keeps the chunked upload at the single POST's speed on loopback where 8M fell short of it
 * (bench/RESULTS-api2-upload.md, "New defaults").
 */
export const DEFAULT_API2_CHUNK = 16 * 1024 * 1024;
/** Largest chunk accepted: memory does not grow with it (chunks are read PIECE at a time), but what a stopped run sends again does. */
const MAX_API2_CHUNK = 256 * 1024 * 1024;
/**
 * Chunk POSTs in flight at the start (the window grows from there on a far link): enough to hide
 * 100 ms per request, and to fill a link that holds each connection to a quarter of it (the 6 chunks
 * of a 96 MiB image go at once: bench/RESULTS-speed.md); what a stopped run sends again stays at
 * 6 x 16 MiB.
 */
export const API2_POSTS_IN_FLIGHT = 6;
/** Bytes each chunk POST in flight holds: the piece it refills from a local file (a streamed source: the whole chunk). */
export function api2BytesPerPost(chunk: number, source: { sequential: boolean }): number {
  return source.sequential ? chunk : PIECE;
}
/**
 * Bytes between full GCs: the chunk POSTs reuse pooled buffers, so they leave little garbage
 * (bench/RESULTS-api2-upload.md, "New defaults").
 */
const GC_EVERY_API2 = 256 * 1024 * 1024;
/** Bytes read from the source and handed to the socket at a time, per chunk in flight. */
const PIECE = 1024 * 1024;
/** A link is valid about 5 minutes: one asked for longer ago than this is asked for again. */
const LINK_REUSE_MS = 4 * 60_000;
/** New links asked for one chunk whose link the server called expired, before giving up. */
const LINK_RENEWALS = 3;
/** Between two looks at the drive while the server assembles it. */
const WAIT_INTERVAL_MS = 250;

const HELD = Symbol("held");
type LinkAnswer = URL | typeof HELD;

export interface Api2ChunkedOptions extends DriveTransfer {
  connection: Connection;
  chunk: number;
  /** Wait until the drive leaves `uploading` once every chunk is in. */
  wait: boolean;
  /** The command that continues the upload of a drive, for the stop line. */
  resumeCommand(drive: string): string;
  /** Chunk POSTs in flight at the start: as many connections are opened while the drive is made. */
  inFlight?: number;
}

/** -c/--chunk for API 2.0: a multiple of 1 KiB from 64k to 256M (the 1.0 limit of 4M does not apply). */
export function parseApi2Chunk(text: string): number {
  const chunk = parseSize(text, "--chunk");
  if (chunk < 64 * 1024 || chunk > MAX_API2_CHUNK || chunk % 1024 !== 0) {
    throw new UsageError(`invalid --chunk ${text}: expected a multiple of 1k from 64k to 256M for API 2.0`);
  }
  return chunk;
}

/** An image's size as a server may keep it: exact, or rounded up to a KiB. */
function sizeMatches(driveSize: number, imageSize: number): boolean {
  return driveSize === imageSize || driveSize === Math.ceil(imageSize / 1024) * 1024;
}

/** 409 on a 2.0 call means the drive is in the wrong state: sending again will not change that. */
function finalConflict(error: unknown): unknown {
  if (error instanceof ApiError && error.status === 409 && error.retryable) return error.with({ retryable: false });
  return error;
}

/** The size and status of a drive an upload of `size` bytes (those of `shown`) goes into; refused when its size is another. */
async function uploadTarget(
  client: HttpClient,
  uuid: string,
  size: number,
  shown: string,
): Promise<{ size: number; status: string }> {
  const drive = await getDrive(client, uuid);
  if (drive.size === undefined || drive.status === undefined) {
    throw new ApiError({
      kind: "protocol",
      message: "the drive's answer holds no size or status",
      method: "GET",
      path: client.url(`drives/${uuid}/`).pathname,
    });
  }
  if (!sizeMatches(drive.size, size))
    throw new OperationError(
      `drive ${uuid} is ${drive.size} bytes, but ${shown} is ${size} bytes: an API 2.0 chunked upload needs a drive started (initupload) for exactly this image's size`,
    );
  return { size: drive.size, status: drive.status };
}

/** Drive `uuid`, given with -d, can take the chunks of `size` bytes: its upload is open, for that size. */
export async function checkUploading(client: HttpClient, uuid: string, size: number, shown: string): Promise<void> {
  const { status } = await uploadTarget(client, uuid, size, shown);
  if (status !== "uploading")
    throw new OperationError(
      `drive ${uuid} is ${status}, not uploading: chunks can only go into a drive whose upload (initupload) has not finished`,
    );
}

export class Api2ChunkedDestination implements Destination {
  readonly grid: Grid;
  readonly streams = true;
  readonly gcEvery: number | undefined;
  private drive = "";
  private created = false;
  private journal?: Journal;
  private sent = 0;
  private held = 0;
  private renewed = 0;
  private sentBytes = 0;
  /** The piece buffers the chunk POSTs fill, reused: a chunk leaves no buffer behind for the GC. */
  private readonly pieces = new BufferPool(PIECE);
  /** Chunks still to send, in order, and where each stands among them (to ask for links ahead). */
  private pending: number[] = [];
  private position = new Map<number, number>();
  /** Links asked for ahead of their chunk: one window's worth beyond the chunks in flight. */
  private readonly prefetched = new Map<number, { answer: Promise<LinkAnswer>; at: number }>();
  /** Chunks in flight wanted when the last one started; whether connections for them were opened ahead. */
  private window = 1;
  private preconnected = false;
  private readonly client: HttpClient;

  constructor(private readonly options: Api2ChunkedOptions) {
    this.grid = lastRunsToEndGrid(options.source.size, options.chunk);
    this.client = options.connection.client;
    // a decoded image leaves its decoder's pieces behind, a drive its read answers, which the GC
    // does not count as pressure
    this.gcEvery = options.source.sequential || options.source.remote ? undefined : GC_EVERY_API2;
  }

  private sizeAndStatus(uuid: string): Promise<{ size: number; status: string }> {
    return uploadTarget(this.client, uuid, this.options.source.size, this.options.shown);
  }

  async open(journalFile: string): Promise<Opened> {
    const { ctx, source, shown, inFlight, connection } = this.options;
    // the one-time links are paths on the API's host: the chunk POSTs' connections to it open
    // while the drive is made and the first links are asked for
    if (inFlight) preconnect(new URL(this.client.base.origin), connection.sockets, inFlight);
    const target = await resolveDriveTarget(this.options, journalFile, {
      resume: async (drive) => {
        const { status } = await this.sizeAndStatus(drive);
        return status === "uploading" ? undefined : `drive ${drive} already holds every chunk of ${shown}`;
      },
      gone: (error) => error instanceof ApiError && error.status === 404,
      checkGiven: (drive) => checkUploading(this.client, drive, source.size, shown),
      create: async () => {
        const drive = (
          await initUpload(this.client, { name: this.options.name, size: source.size, media: "disk" })
        ).uuid.toLowerCase();
        const chunks = this.grid.count;
        ctx.log.info(`started drive ${drive} (${humanBytes(source.size)}, ${chunks} chunk${chunks === 1 ? "" : "s"})`);
        return drive;
      },
    });
    this.drive = target.drive;
    this.created = target.created;
    this.journal = target.journal;
    this.pending = Array.from({ length: this.grid.count }, (_, index) => index).filter(
      (index) => !target.journal.done.has(index),
    );
    this.position = new Map(this.pending.map((index, at) => [index, at]));
    // a drive that is uploading holds nothing certain: every chunk is sent, zeros too
    return journalOpened(target.journal, false, target.complete);
  }

  /** Ask for chunk `index`'s one-time link; HELD when the server has the chunk already (416). */
  private async requestLink(index: number, signal: AbortSignal): Promise<LinkAnswer> {
    const { client, drive } = this;
    let response: Response;
    try {
      response = await client.request("POST", `drives/${drive}/action/?do=upload_chunk`, {
        body: JSON.stringify({ chunk_number: index, chunk_size: this.options.chunk }),
        headers: { "content-type": "application/json", accept: "application/json" },
        ok: (status) => (status >= 200 && status < 300) || status === 416,
        signal,
      });
    } catch (error) {
      throw finalConflict(error);
    }
    if (response.status === 416) {
      await response.body?.cancel().catch(() => undefined);
      return HELD;
    }
    const answer = (await response.json().catch(() => undefined)) as { link?: unknown } | undefined;
    const where = client.url(`drives/${drive}/action/`).pathname;
    const refuse = (message: string) =>
      new ApiError({ kind: "protocol", message, status: response.status, method: "POST", path: where });
    if (typeof answer?.link !== "string" || answer.link === "")
      throw refuse(`no link in the answer for chunk ${index}`);
    const url = new URL(answer.link, client.base.origin);
    if (url.protocol !== "https:" && !(url.protocol === "http:" && isLoopbackHost(url.hostname)))
      throw refuse(`refusing the upload link to ${url.origin} (not https)`);
    if (!this.preconnected) {
      // the links all lead to one server: where it is not the API's host (opened at open()), the
      // other chunks' connections open while their links come
      this.preconnected = true;
      if (!this.options.inFlight || url.origin !== this.client.base.origin)
        preconnect(url, this.options.connection.sockets, this.window - 1);
    }
    return url;
  }

  /** A chunk is starting: its link, and those of the window's chunks after it, are asked for now. */
  starting(index: number, signal: AbortSignal, window: number): void {
    this.window = window;
    const at = this.position.get(index) ?? 0;
    for (let ahead = at; ahead <= at + window && ahead < this.pending.length; ahead++)
      this.prefetch(this.pending[ahead] as number, signal);
  }

  private prefetch(index: number, signal: AbortSignal): void {
    if (this.prefetched.has(index) || signal.aborted) return;
    const answer = this.requestLink(index, signal);
    answer.catch(() => undefined); // awaited later, or replaced: never an unhandled rejection
    this.prefetched.set(index, { answer, at: performance.now() });
  }

  /** The link asked for ahead (used once: a retry after it failed asks for a new one). */
  private takeLink(index: number, signal: AbortSignal): Promise<LinkAnswer> {
    const early = this.prefetched.get(index);
    this.prefetched.delete(index);
    if (early && performance.now() - early.at < LINK_REUSE_MS) return early.answer;
    return this.requestLink(index, signal);
  }

  async write(chunk: Chunk, signal: AbortSignal): Promise<void> {
    let answer = await this.takeLink(chunk.index, signal);
    // bounded: LINK_RENEWALS new links at most
    for (let renewals = 0; ; renewals++) {
      if (answer === HELD) {
        this.held++;
        return;
      }
      if ((await this.post(answer, chunk, signal)) === "ok") {
        this.sent++;
        this.sentBytes += chunk.length;
        return;
      }
      if (renewals >= LINK_RENEWALS)
        throw new ApiError({
          kind: "protocol",
          message: `the server refused ${renewals + 1} links for chunk ${chunk.index} as expired or unknown`,
          method: "POST",
          path: "(upload link)",
          retryable: false,
        });
      this.renewed++;
      this.options.ctx.log.debug(`chunk ${chunk.index}: the link expired; asking for a new one`);
      answer = await this.requestLink(chunk.index, signal);
    }
  }

  /**
   * POST one chunk's bytes to its link, with no credentials: from memory (a chunk the driver read),
   * zeros (a hole), or read from the source as the socket takes them (one small buffer per POST:
   * memory does not grow with the chunk size); "expired" when the link is no good any more.
   * --timeout bounds the time without progress.
   */
  private async post(url: URL, chunk: Chunk, signal: AbortSignal): Promise<"ok" | "expired"> {
    const { start, length } = chunk;
    const { source, connection } = this.options;
    const headers = { "content-type": "application/octet-stream", "user-agent": "drivekit" };
    this.client.trace(`> POST ${url.origin}${url.pathname.replace(/[^/]{16,}/g, "…")}`, {
      ...headers,
      "content-length": String(length),
    });
    const watchdog = new Watchdog(connection.timeoutMs);
    // a chunk the driver read is sent from its own bytes; else read as the socket takes it
    const body = chunk.bytes
      ? undefined
      : source.fd !== undefined
        ? fileBody(source.fd, this.options.shown, start)
        : imageBody(source, start);
    // a piece buffer only where the body is read into one
    const buffer = chunk.bytes ? undefined : this.pieces.take();
    let answer: StreamPostAnswer;
    try {
      answer = await streamPost({
        url,
        headers,
        size: length,
        signal: AbortSignal.any([signal, watchdog.signal]),
        buffer,
        bytes: chunk.bytes,
        // the run's connections (kept open between chunks) and proxy; a chunk may go to its link twice
        pool: connection.sockets,
        replayable: true,
        // a hole in the source is zeros without reading the disk; the zeros still go out
        fill:
          chunk.zero && !chunk.bytes
            ? (buffer, _offset, want) => {
                buffer.fill(0, 0, want);
                return want;
              }
            : body?.fill,
        onProgress: () => watchdog.touch(),
      });
    } catch (error) {
      const readFailure = body?.failure();
      if (readFailure) throw readFailure;
      if (signal.aborted) throw error;
      throw watchdog.unanswered(error, "POST", url, "(upload link)");
    } finally {
      watchdog.stop();
      if (buffer) this.pieces.give(buffer);
    }
    const readFailure = body?.failure();
    if (readFailure) throw readFailure;
    this.client.trace(`< ${answer.status} ${answer.statusText}`, Object.fromEntries(answer.headers));
    if (answer.status >= 200 && answer.status < 300) {
      if (answer.sent !== length)
        throw new ApiError({
          kind: "protocol",
          message: `the link answered ${answer.status} after ${answer.sent} of ${length} bytes`,
          status: answer.status,
          method: "POST",
          path: "(upload link)",
        });
      return "ok";
    }
    if (answer.status === 404 || answer.status === 410) return "expired";
    const retryable = answer.status >= 500 || answer.status === 408 || answer.status === 429;
    throw answerError(answer.status, answer.headers, answer.body, "POST", "(upload link)", retryable);
  }

  retryName(chunk: Chunk): string {
    return `chunk ${chunk.index}`;
  }

  what(): string {
    return `${this.options.label} to drive ${this.drive}`;
  }

  resumeHint(): string {
    const journal = basename(this.journal?.path ?? "");
    return `to resume, rerun the same command in ${this.options.ctx.cwd} (journal ${journal}), or run: ${this.options.resumeCommand(this.drive)}`;
  }

  /**
   * The source broke mid-way (damaged, truncated, longer than its size): a rerun would fail the
   * same way, so a drive this run started is destroyed rather than left uploading forever with part
   * of an image; the message says which happened.
   */
  async abandon(failure: Error): Promise<Error> {
    const { drive } = this;
    const { label } = this.options;
    if (!this.created)
      return new OperationError(
        `${failure.message}; drive ${drive} (given with -d) holds part of the image and is still uploading`,
      );
    try {
      await deleteDrive2(this.client, drive);
      return new OperationError(`${failure.message}; drive ${drive}, which this ${label} started, is destroyed`);
    } catch (error) {
      // a server may refuse while the drive is uploading: the chunks it holds are right, so -d can finish it
      return new OperationError(
        `${failure.message}; drive ${drive}, which this ${label} started, holds part of the image and could not be destroyed (${messageOf(error)}): ` +
          `finish it from an intact image (upload.ts --api 2 -d ${drive} IMAGE) or destroy it when the server allows (destroy.ts --api 2 ${drive})`,
      );
    }
  }

  note(stats: RunStats): string | undefined {
    return (
      [
        this.held ? `${this.held} chunks already on the server` : "",
        stats.retries ? `${stats.retries} retries` : "",
        this.renewed ? `${this.renewed} links renewed` : "",
      ]
        .filter(Boolean)
        .join(", ") || undefined
    );
  }

  async finish(): Promise<string> {
    return this.drive;
  }

  summary(stats: RunStats): string {
    const { held, renewed } = this;
    return (
      `${this.options.done} ${humanBytes(this.options.source.size - stats.before)} to drive ${this.drive} (${formatRate(this.sentBytes, stats.started)}), ${this.sent} chunks sent` +
      `${held ? `, ${held} already on the server` : ""}${stats.retries ? `, ${stats.retries} retries` : ""}${renewed ? `, ${renewed} links renewed` : ""}`
    );
  }

  /** The server assembles the drive after the last chunk: wait (bounded by --timeout) until its status is its own. */
  async settle(): Promise<void> {
    if (!this.options.wait) return;
    const { ctx, connection } = this.options;
    let told = false;
    await waitForDrive(this.client, this.drive, {
      limitMs: connection.timeoutMs,
      intervalMs: WAIT_INTERVAL_MS,
      settled: (status) => status !== "uploading" && status !== "creating",
      onStatus: (status) => {
        if (!told) ctx.log.info(`waiting for drive ${this.drive} to leave status ${status}`);
        told = true;
      },
    });
  }

  /** The drive, to be read back by --verify (a server may pad it past the image: zeros). */
  async readBack(): Promise<ReadBack> {
    return {
      source: await openApi2Drive(this.options.connection, this.drive, this.options.ctx.log),
      shown: `drive ${this.drive}`,
      against: this.options.shown,
      zerosPast: true,
      kept: `the ${this.options.label} itself finished; the drive is kept`,
    };
  }
}
