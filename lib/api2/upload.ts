// API 2.0 chunked upload, the protocol of CloudSigma's own client: `initupload/` makes a drive in
// status `uploading`; each chunk gets a one-time link (`drives/UUID/action/?do=upload_chunk`, 416
// when the server already holds it) and its raw bytes go to that link without credentials. Links
// are asked for ahead of the chunk POSTs, so their round trip hides behind the bytes in flight;
// each chunk retries on passing errors; a journal records the finished chunks so that rerunning
// the same command resumes into the same drive; all-zero chunks are sent too (the drive leaves
// `uploading` only once every chunk is in).
import { basename } from "node:path";
import type { Context } from "../context.ts";
import type { Connection } from "../connect.ts";
import { BufferPool } from "../bytes.ts";
import { ApiError, InputError, messageOf, OperationError, UsageError } from "../errors.ts";
import { answerError, networkError, type HttpClient } from "../http.ts";
import { shellWord } from "../files.ts";
import { deleteDrive2, getDrive, initUpload } from "./drives.ts";
import { waitForDrive } from "./wait.ts";
import { isLoopbackHost } from "../config.ts";
import { runChunks } from "../chunks/engine.ts";
import { Journal, journalPath } from "../chunks/journal.ts";
import { RunLock } from "../chunks/lock.ts";
import type { ImageSource } from "../chunks/image.ts";
import { journalIdentity, openUploadInput, STDIN_RESUME_WARNING } from "../formats/open.ts";
import { logRetry, withRetry } from "../retry.ts";
import { formatRate, humanBytes, parseSize } from "../size.ts";
import type { UploadRequest } from "../transfer.ts";
import { verifyDirect } from "./upload-direct.ts";
import { fileBody, imageBody, memoryBody, streamPost, type StreamPostAnswer } from "./socket-post.ts";
import { Watchdog } from "./watchdog.ts";

/**
 * Bytes per chunk by default: each chunk costs a link request and a connection (about 1 ms of client
 * CPU on loopback), so 16M keeps the chunked upload at the single POST's speed there where 8M lost
 * 15-20% (bench/RESULTS-api2-upload.md).
 */
export const DEFAULT_API2_CHUNK = 16 * 1024 * 1024;
/**
 * Chunk POSTs in flight by default: enough to hide 100 ms per request, and what a stopped run sends
 * again stays at 4 x 16 MiB (1.05-1.06x a 1 GiB image interrupted half way).
 */
export const DEFAULT_API2_CONCURRENCY = 4;
/** Bytes between full GCs: the chunk POSTs reuse pooled buffers, so they leave little garbage (57 MiB peak on 4 GiB). */
const GC_EVERY_API2 = 256 * 1024 * 1024;
/** Largest chunk accepted: memory does not grow with it (chunks are read PIECE at a time), but what a stopped run sends again does. */
const MAX_API2_CHUNK = 256 * 1024 * 1024;
/** Bytes read from the image and handed to the socket at a time, per chunk in flight. */
const PIECE = 1024 * 1024;
/** A link is valid about 5 minutes: one asked for longer ago than this is asked for again. */
const LINK_REUSE_MS = 4 * 60_000;
/** New links asked for one chunk whose link the server called expired, before giving up. */
const LINK_RENEWALS = 3;

export interface Api2UploadRequest extends UploadRequest {
  /** Wait until the drive leaves `uploading` (bounded by --timeout). */
  wait: boolean;
}

/** -c/--chunk for API 2.0: a multiple of 1 KiB from 64k to 256M (the 1.0 limit of 4M does not apply). */
export function parseApi2Chunk(text: string): number {
  const chunk = parseSize(text, "--chunk");
  if (chunk < 64 * 1024 || chunk > MAX_API2_CHUNK || chunk % 1024 !== 0) {
    throw new UsageError(`invalid --chunk ${text}: expected a multiple of 1k from 64k to 256M for API 2.0`);
  }
  return chunk;
}

/**
 * The 2.0 chunk grid: `max(1, size // chunk)` chunks from 0, each `chunk` bytes except the last,
 * which runs to the end of the image (up to one chunk larger, never smaller, than the others).
 */
export function api2Grid(size: number, chunk: number) {
  const count = Math.max(1, Math.floor(size / chunk));
  const rangeOf = (index: number): [number, number] => [
    index * chunk,
    index === count - 1 ? size : (index + 1) * chunk,
  ];
  return { count, rangeOf };
}

/** The drive's size and status, which an upload into it needs (getDrive checks the answer's shape). */
async function sizeAndStatus(client: HttpClient, uuid: string): Promise<{ size: number; status: string }> {
  const { size, status } = await getDrive(client, uuid);
  if (size === undefined || status === undefined) {
    throw new ApiError({
      kind: "protocol",
      message: "the drive's answer holds no size or status",
      method: "GET",
      path: client.url(`drives/${uuid}/`).pathname,
    });
  }
  return { size, status };
}

/** An image's size as a server may keep it: exact, or rounded up to a KiB. */
function sizeMatches(driveSize: number, imageSize: number): boolean {
  return driveSize === imageSize || driveSize === Math.ceil(imageSize / 1024) * 1024;
}

/** 409 on a 2.0 call means the drive is in the wrong state: sending again will not change that. */
function finalConflict(error: unknown): unknown {
  if (error instanceof ApiError && error.status === 409 && error.retryable) {
    return error.with({ retryable: false });
  }
  return error;
}

/** Between two looks at the drive while the server assembles it. */
const WAIT_INTERVAL_MS = 250;

const HELD = Symbol("held");
type LinkAnswer = URL | typeof HELD;

/** The journal of an upload: one per image and target, in the folder the command runs in (apart from 1.0's). */
function uploadJournal(ctx: Context, image: ImageSource, request: Api2UploadRequest): string {
  return journalPath(ctx.cwd, `upload-api2\0${journalIdentity(image)}\0${request.drive ?? "new"}`);
}

export async function uploadChunked2(
  ctx: Context,
  connection: Connection,
  request: Api2UploadRequest,
): Promise<string> {
  if (request.offset)
    throw new UsageError(
      "-o/--offset is API 1.0 only: an API 2.0 upload resumes by chunks (rerun the command, or -d DRIVE)",
    );
  const image = await openUploadInput(ctx, request);
  try {
    if (image.size === 0) throw new UsageError(`${request.file} is empty (0 bytes): there is nothing to upload`);
    // two runs of one upload must not share its journal
    const lock = RunLock.acquire(uploadJournal(ctx, image, request), `the upload of ${request.file}`);
    try {
      return await upload(ctx, connection, request, image);
    } finally {
      lock.release();
    }
  } finally {
    await image.close();
  }
}

async function upload(
  ctx: Context,
  connection: Connection,
  request: Api2UploadRequest,
  image: ImageSource,
): Promise<string> {
  const { journal, drive, complete } = await target(ctx, connection.client, request, image);
  return await send(ctx, connection, request, image, journal, drive, complete);
}

async function send(
  ctx: Context,
  connection: Connection,
  request: Api2UploadRequest,
  image: ImageSource,
  journal: Journal,
  drive: string,
  complete: boolean,
): Promise<string> {
  /**
   * A raw file goes from its descriptor into the socket, a qcow2 image through read() as the socket
   * takes it (both a piece at a time); a sequential one (gzip, zstd, stdin) is read whole into
   * memory a chunk at a time, in chunk order, and a retry sends it again from there.
   */
  const fd = image.fd;
  const client = connection.client;
  const chunk = request.chunk;
  const concurrency = request.concurrency ?? DEFAULT_API2_CONCURRENCY;
  const { count, rangeOf } = api2Grid(image.size, chunk);

  let sent = 0;
  let held = 0;
  let retries = 0;
  let renewed = 0;
  let sentBytes = 0;
  const apiOrigin = client.base.origin;
  /** The piece buffers the chunk POSTs fill, reused: a chunk leaves no buffer behind for the GC. */
  const pieces = new BufferPool(PIECE);
  /** A sequential image's chunks, read whole (the POST and its retries send them from memory). */
  const chunkBuffers = new BufferPool(chunk);
  /** The image itself failed to read (damaged, truncated, longer than its size): no resume can help. */
  let inputFailure: InputError | undefined;
  const noteInput = (error: unknown) => {
    if (error instanceof InputError) inputFailure ??= error;
    return error;
  };

  /** Ask for chunk `index`'s one-time link; HELD when the server has the chunk already (416). */
  const requestLink = async (index: number, signal: AbortSignal): Promise<LinkAnswer> => {
    let response: Response;
    try {
      response = await client.request("POST", `drives/${drive}/action/?do=upload_chunk`, {
        body: JSON.stringify({ chunk_number: index, chunk_size: chunk }),
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
    if (typeof answer?.link !== "string" || answer.link === "")
      throw new ApiError({
        kind: "protocol",
        message: `no link in the answer for chunk ${index}`,
        status: response.status,
        method: "POST",
        path: where,
      });
    const url = new URL(answer.link, apiOrigin);
    if (url.protocol !== "https:" && !(url.protocol === "http:" && isLoopbackHost(url.hostname))) {
      throw new ApiError({
        kind: "protocol",
        message: `refusing the upload link to ${url.origin} (not https)`,
        status: response.status,
        method: "POST",
        path: where,
      });
    }
    return url;
  };

  /**
   * POST one chunk's bytes to its link, with no credentials, read from the image as the socket
   * takes them (one small buffer per POST: memory does not grow with the chunk size); "expired"
   * when the link is no good any more. --timeout bounds the time without progress.
   */
  const postChunk = async (
    url: URL,
    start: number,
    length: number,
    signal: AbortSignal,
    data?: Uint8Array,
  ): Promise<"ok" | "expired"> => {
    const headers = { "content-type": "application/octet-stream", "user-agent": "drivekit" };
    client.trace(`> POST ${url.origin}${url.pathname.replace(/[^/]{16,}/g, "…")}`, {
      ...headers,
      "content-length": String(length),
    });
    const hole = image.dataMap !== undefined && image.dataMap.nextData(start) >= start + length;
    const watchdog = new Watchdog(connection.timeoutMs);
    const body = data
      ? memoryBody(data)
      : fd !== undefined
        ? fileBody(fd, request.file, start)
        : imageBody(image, start);
    const buffer = pieces.take();
    let answer: StreamPostAnswer;
    try {
      answer = await streamPost({
        url,
        headers,
        size: length,
        signal: AbortSignal.any([signal, watchdog.signal]),
        buffer,
        // a hole in the image is zeros without reading the disk; the zeros still go out
        fill: hole
          ? (buffer, _offset, want) => {
              buffer.fill(0, 0, want);
              return want;
            }
          : body.fill,
        onProgress: () => watchdog.touch(),
      });
    } catch (error) {
      const readFailure = body.failure();
      if (readFailure) throw noteInput(readFailure);
      if (signal.aborted) throw error;
      const translated = watchdog.translate(error, "POST", "(upload link)");
      if (translated instanceof ApiError) throw translated;
      throw networkError(error, url, "POST", "(upload link)");
    } finally {
      watchdog.stop();
      pieces.give(buffer);
    }
    const readFailure = body.failure();
    if (readFailure) throw noteInput(readFailure);
    client.trace(`< ${answer.status} ${answer.statusText}`, Object.fromEntries(answer.headers));
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
  };

  const pending = Array.from({ length: count }, (_, index) => index).filter((index) => !journal.done.has(index));
  const position = new Map(pending.map((index, at) => [index, at]));
  // links asked for ahead of their chunk: one window's worth beyond the chunks in flight
  const prefetched = new Map<number, { answer: Promise<LinkAnswer>; at: number }>();
  const prefetch = (index: number, signal: AbortSignal) => {
    if (prefetched.has(index) || signal.aborted) return;
    const answer = requestLink(index, signal);
    answer.catch(() => undefined); // awaited later, or replaced: never an unhandled rejection
    prefetched.set(index, { answer, at: performance.now() });
  };
  const takeLink = (index: number, signal: AbortSignal): Promise<LinkAnswer> => {
    const early = prefetched.get(index);
    prefetched.delete(index);
    if (early && performance.now() - early.at < LINK_REUSE_MS) return early.answer;
    return requestLink(index, signal);
  };

  const work = async (index: number, signal: AbortSignal): Promise<number> => {
    const [start, end] = rangeOf(index);
    const length = end - start;
    // a sequential image's chunk is asked for before any await: its reads must come in chunk order
    const data = image.sequential ? (length <= chunk ? chunkBuffers.take() : new Uint8Array(length)) : undefined;
    const reading = data ? readChunk(data, length, start) : undefined;
    try {
      return await sendChunk(index, start, length, signal, data, reading);
    } finally {
      if (data) {
        await reading?.catch(() => undefined);
        if (data.length === chunk) chunkBuffers.give(data);
      }
    }
  };

  const readChunk = async (data: Uint8Array, length: number, start: number): Promise<void> => {
    try {
      await image.read(data, length, start);
    } catch (error) {
      throw noteInput(error);
    }
  };

  const sendChunk = async (
    index: number,
    start: number,
    length: number,
    signal: AbortSignal,
    data?: Uint8Array,
    reading?: Promise<void>,
  ): Promise<number> => {
    const at = position.get(index) ?? 0;
    for (let ahead = at + 1; ahead <= at + concurrency && ahead < pending.length; ahead++)
      prefetch(pending[ahead] as number, signal);
    let link: Promise<LinkAnswer> | undefined = takeLink(index, signal);
    link.catch(() => undefined);
    await reading;
    const outcome = await withRetry(
      async () => {
        // the link asked for ahead is used once: a retry after it failed asks for a new one
        const early = link;
        link = undefined;
        let answer = await (early ?? requestLink(index, signal));
        for (let renewals = 0; ; renewals++) {
          if (answer === HELD) return "held";
          if ((await postChunk(answer, start, length, signal, data)) === "ok") return "sent";
          if (renewals >= LINK_RENEWALS) {
            throw new ApiError({
              kind: "protocol",
              message: `the server refused ${renewals + 1} links for chunk ${index} as expired or unknown`,
              method: "POST",
              path: "(upload link)",
              retryable: false,
            });
          }
          renewed++;
          ctx.log.debug(`chunk ${index}: the link expired; asking for a new one`);
          answer = await requestLink(index, signal);
        }
      },
      { signal, onRetry: logRetry(ctx.log, `chunk ${index}`, () => retries++) },
    );
    if (outcome === "held") held++;
    else {
      sent++;
      sentBytes += length;
    }
    journal.markDone(index);
    return length;
  };

  const doneBefore = [...journal.done].reduce(
    (sum, index) => (index < count ? sum + rangeOf(index)[1] - rangeOf(index)[0] : sum),
    0,
  );
  const note = () =>
    [
      held ? `${held} chunks already on the server` : "",
      retries ? `${retries} retries` : "",
      renewed ? `${renewed} links renewed` : "",
    ]
      .filter(Boolean)
      .join(", ") || undefined;
  const started = performance.now();
  if (complete) {
    ctx.log.info(`drive ${drive} already holds every chunk of ${request.file}`);
  } else {
    const run = runChunks(ctx, {
      label: "upload",
      what: `upload to drive ${drive}`,
      total: image.size,
      done: doneBefore,
      pending,
      concurrency,
      quiet: request.quiet,
      // a decoded image leaves its decoder's pieces behind, which the GC does not count as pressure
      gcEvery: image.sequential ? undefined : GC_EVERY_API2,
      work,
      note,
      onStop: () => journal.close(),
      resumeHint: () =>
        `to resume, rerun the same command in ${ctx.cwd} (journal ${basename(journal.path)}), or run: upload.ts --api 2 -d ${drive}` +
        `${chunk === DEFAULT_API2_CHUNK ? "" : ` -c ${chunk}`}${request.format ? ` --format ${request.format}` : ""}` +
        `${request.size !== undefined ? ` --size ${request.size}` : ""} ${shellWord(request.file)}`,
    });
    const { progress } = await run.catch(async (error: unknown) => {
      if (!inputFailure) throw error;
      throw await abandon(client, inputFailure, drive, Boolean(journal.header.created), journal);
    });
    progress.finish(
      `uploaded ${humanBytes(image.size - doneBefore)} to drive ${drive} (${formatRate(sentBytes, started)}), ${sent} chunks sent` +
        `${held ? `, ${held} already on the server` : ""}${retries ? `, ${retries} retries` : ""}${renewed ? `, ${renewed} links renewed` : ""}`,
    );
  }
  // every chunk is in: a failed wait or verify must not turn a rerun into a fresh upload
  journal.remove();
  if (request.wait) {
    let told = false;
    await waitForDrive(client, drive, {
      limitMs: connection.timeoutMs,
      intervalMs: WAIT_INTERVAL_MS,
      // the server assembles the drive after the last chunk: any status past that is the drive's own
      settled: (status) => status !== "uploading" && status !== "creating",
      onStatus: (status) => {
        if (!told) ctx.log.info(`waiting for drive ${drive} to leave status ${status}`);
        told = true;
      },
    });
  }
  if (request.verify) {
    // a decoded image is read again from its start
    const again = image.sequential && image.reopen ? await image.reopen() : image;
    try {
      await verifyDirect(ctx, connection, drive, again, request.file, request.quiet);
    } finally {
      if (again !== image) await again.close();
    }
  }
  return drive;
}

/**
 * The image broke off mid-upload (damaged, truncated, longer than its size): a rerun would fail
 * the same way, so the journal goes, and a drive this upload started is destroyed rather than
 * left uploading forever with part of an image; the message says which happened.
 */
async function abandon(
  client: HttpClient,
  failure: InputError,
  drive: string,
  created: boolean,
  journal: Journal,
): Promise<OperationError> {
  journal.remove();
  if (!created)
    return new OperationError(
      `${failure.message}; drive ${drive} (given with -d) holds part of the image and is still uploading`,
    );
  try {
    await deleteDrive2(client, drive);
    return new OperationError(`${failure.message}; drive ${drive}, which this upload started, is destroyed`);
  } catch (error) {
    // a server may refuse while the drive is uploading: the chunks it holds are right, so -d can finish it
    return new OperationError(
      `${failure.message}; drive ${drive}, which this upload started, holds part of the image and could not be destroyed (${messageOf(error)}): ` +
        `finish it from an intact image (upload.ts --api 2 -d ${drive} IMAGE) or destroy it when the server allows (destroy.ts --api 2 ${drive})`,
    );
  }
}

/** The drive to upload into (new, resumed from the journal, or -d) and its journal. */
async function target(
  ctx: Context,
  client: HttpClient,
  request: Api2UploadRequest,
  image: ImageSource,
): Promise<{ journal: Journal; drive: string; complete: boolean }> {
  const path = uploadJournal(ctx, image, request);
  const key = {
    kind: "upload" as const,
    file: image.path,
    size: image.size,
    mtimeMs: image.mtimeMs,
    chunk: request.chunk,
    drive: request.drive,
  };
  const wrongSize = (drive: string, size: number) =>
    new OperationError(
      `drive ${drive} is ${size} bytes, but ${request.file} is ${image.size} bytes: an API 2.0 chunked upload needs a drive started (initupload) for exactly this image's size`,
    );
  let journal = Journal.load(path);
  if (journal && !journal.matches(key)) {
    ctx.log.warn(
      `${request.file} or --chunk changed since the interrupted upload to drive ${journal.header.drive}: starting over`,
    );
    journal = undefined;
  }
  if (journal) {
    const drive = journal.header.drive;
    try {
      const info = await sizeAndStatus(client, drive);
      if (!sizeMatches(info.size, image.size)) throw wrongSize(drive, info.size);
      ctx.log.info(`resuming the upload into drive ${drive}: ${journal.done.size} chunks already done`);
      if (image.path === "-") ctx.log.warn(STDIN_RESUME_WARNING);
      return { journal, drive, complete: info.status !== "uploading" };
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 404) || !journal.header.created) throw error;
      ctx.log.warn(`drive ${drive} of the interrupted upload is gone: starting over on a new drive`);
    }
  }
  if (request.drive) {
    const info = await sizeAndStatus(client, request.drive);
    if (!sizeMatches(info.size, image.size)) throw wrongSize(request.drive, info.size);
    if (info.status !== "uploading") {
      throw new OperationError(
        `drive ${request.drive} is ${info.status}, not uploading: chunks can only go into a drive whose upload (initupload) has not finished`,
      );
    }
    return {
      journal: Journal.create(path, { v: 1, ...key, drive: request.drive, created: false }),
      drive: request.drive,
      complete: false,
    };
  }
  const drive = (await initUpload(client, { name: request.name, size: image.size, media: "disk" })).uuid.toLowerCase();
  const chunks = api2Grid(image.size, request.chunk).count;
  ctx.log.info(`started drive ${drive} (${humanBytes(image.size)}, ${chunks} chunk${chunks === 1 ? "" : "s"})`);
  return { journal: Journal.create(path, { v: 1, ...key, drive, created: true }), drive, complete: false };
}
