// API 1.0 chunked upload: the image goes out in parallel writes of one chunk each, read from disk
// as they are sent (memory: concurrency x chunk), gzipped when that pays, all-zero chunks left out
// on a drive this run created, each write retried on passing errors, every finished chunk
// recorded in a journal so that rerunning the same command resumes.
import { basename } from "node:path";
import type { Context } from "../context.ts";
import type { Connection } from "../connect.ts";
import { createDrive, destroyDrive, driveInfo, MAX_PIECE, sizeOf, writePiece, readInto } from "./drives.ts";
import { ApiError, InputError, messageOf, OperationError, UsageError } from "../errors.ts";
import type { HttpClient } from "../http.ts";
import { chunkGrid, runChunks, runLimited } from "../chunks/engine.ts";
import { CompressionPlan } from "./compression.ts";
import { Journal, journalPath } from "../chunks/journal.ts";
import { RunLock } from "../chunks/lock.ts";
import { shellWord } from "../files.ts";
import { isRetryable, logRetry, withRetry, type RetryPolicy } from "../retry.ts";
import { humanBytes } from "../size.ts";
import type { UploadRequest } from "../transfer.ts";
import { isAllZero, BufferPool } from "../bytes.ts";
import type { ImageSource } from "../chunks/image.ts";
import { journalIdentity, openUploadInput, STDIN_RESUME_WARNING } from "../formats/open.ts";

/** Writes in flight by default: picked from bench/RESULTS.md (enough to hide 100 ms per request, memory 8 x 4 MiB). */
export const DEFAULT_UPLOAD_CONCURRENCY = 8;

/** Writes in flight once `--compress auto` has chosen gzip (a slow link). */
const GZIP_LANES = 4;

/**
 * Writes in flight for a decoded image (qcow2, gzip, zstd) over a near link: reading the image is
 * the work there, and 8 writes in flight only hold more chunks. 1 GiB compressed qcow2 on loopback
 * (bench/RESULTS-formats.md): 4 lanes 2.82-2.97 s and 124-131 MiB peak, 8 lanes 2.84-3.05 s and
 * 161-166 MiB; plain qcow2 0.90 s and 90 MiB against 0.92-1.29 s and 122 MiB.
 */
const DECODED_LANES = 4;
/** Below this many ms per request, 4 writes of 4 MiB outrun any decoder (840 MB/s at 10 ms). */
const NEAR_LINK_MS = 20;

/** Chunks of the image, as indices on the chunk grid, and the byte range each covers. */
function* chunkIndices(first: number, count: number): Generator<number> {
  for (let index = first; index < count; index++) yield index;
}

/** The gzip of `length` zero bytes, made once: zero chunks written to an existing drive cost a few bytes each. */
function zeroBodies(): (length: number) => Uint8Array {
  const cache = new Map<number, Uint8Array>();
  return (length) => {
    let body = cache.get(length);
    if (!body) {
      body = Bun.gzipSync(new Uint8Array(length), { level: 1 });
      cache.set(length, body);
    }
    return body;
  };
}

function resumeCommand(request: UploadRequest, drive: string, offset: number): string {
  const format = request.format ? ` --format ${request.format}` : "";
  const size = request.size !== undefined ? ` --size ${request.size}` : "";
  return `upload.ts -d ${drive} -o ${offset}${format}${size} ${shellWord(request.file)}`;
}

/** The journal of an upload: one per image and target, in the folder the command runs in. */
function uploadJournal(ctx: Context, image: ImageSource, request: UploadRequest): string {
  return journalPath(ctx.cwd, `upload\0${journalIdentity(image)}\0${request.drive ?? "new"}`);
}

export async function uploadChunked(ctx: Context, connection: Connection, request: UploadRequest): Promise<string> {
  const client = connection.client;
  const image = await openUploadInput(ctx, request);
  try {
    const lock = RunLock.acquire(uploadJournal(ctx, image, request), `the upload of ${request.file}`);
    try {
      return await upload(ctx, client, request, image, connection.retry);
    } finally {
      lock.release();
    }
  } finally {
    await image.close();
  }
}

interface Target {
  drive: string;
  /** This run (or the one it resumes) created the drive: it held zeros to start with. */
  created: boolean;
  journal: Journal;
}

/**
 * Where the chunks go: the drive of an interrupted run (its journal in this folder), the drive
 * given with -d, or a new drive of the image's size; every case checked against the image.
 */
async function resolveTarget(
  ctx: Context,
  client: HttpClient,
  request: UploadRequest,
  image: ImageSource,
  timed: <T>(call: () => Promise<T>) => Promise<T>,
): Promise<Target> {
  const path = uploadJournal(ctx, image, request);
  const key = {
    kind: "upload" as const,
    file: image.path,
    size: image.size,
    mtimeMs: image.mtimeMs,
    chunk: request.chunk,
    drive: request.drive,
  };
  const tooSmall = (drive: string, size: number) =>
    new OperationError(`drive ${drive} is ${size} bytes, smaller than ${request.file} (${image.size} bytes)`);
  const journal = Journal.load(path);
  if (journal && !journal.matches(key)) {
    ctx.log.warn(
      `${request.file} or --chunk changed since the interrupted upload to drive ${journal.header.drive}: starting over`,
    );
  } else if (journal) {
    const { drive } = journal.header;
    const created = Boolean(journal.header.created);
    try {
      const size = sizeOf(await timed(() => driveInfo(client, drive)), drive);
      if (size < image.size) throw tooSmall(drive, size);
      ctx.log.info(`resuming the upload into drive ${drive}: ${journal.done.size} chunks already done`);
      if (image.path === "-") ctx.log.warn(STDIN_RESUME_WARNING);
      return { drive, created, journal };
    } catch (error) {
      if (!(error instanceof ApiError && error.kind === "missing") || !created) throw error;
      ctx.log.warn(`drive ${drive} of the interrupted upload is gone: starting over on a new drive`);
    }
  }
  if (request.drive) {
    const drive = request.drive;
    const size = sizeOf(await timed(() => driveInfo(client, drive)), drive);
    if (size < image.size) throw tooSmall(drive, size);
    return { drive, created: false, journal: Journal.create(path, { v: 1, ...key, drive, created: false }) };
  }
  const fields: Record<string, string> = { name: request.name, size: String(image.size) };
  if (request.tier) fields.tier = request.tier;
  const record = await timed(() => createDrive(client, fields));
  const drive = record.drive as string;
  ctx.log.info(`created drive ${drive} (${humanBytes(image.size)})`);
  return { drive, created: true, journal: Journal.create(path, { v: 1, ...key, drive, created: true }) };
}

async function upload(
  ctx: Context,
  client: HttpClient,
  request: UploadRequest,
  image: ImageSource,
  policy: Readonly<RetryPolicy>,
): Promise<string> {
  if (image.size === 0) throw new UsageError(`${request.file} is empty (0 bytes): there is nothing to upload`);
  const offset = request.offset ?? 0;
  if (offset > image.size)
    throw new UsageError(`invalid --offset ${offset}: beyond the end of ${request.file} (${image.size} bytes)`);
  const chunk = request.chunk;
  const concurrency = request.concurrency ?? DEFAULT_UPLOAD_CONCURRENCY;
  const plan = new CompressionPlan(request.compress, concurrency, (text) => ctx.log.debug(text));
  const timed = async <T>(call: () => Promise<T>): Promise<T> => {
    const started = performance.now();
    const result = await call();
    plan.noteLatency(performance.now() - started);
    return result;
  };
  const { drive: target, created: fresh, journal } = await resolveTarget(ctx, client, request, image, timed);

  const { count, first, pieceOf, doneBytes } = chunkGrid(image.size, chunk, offset);
  let skipped = 0;
  let retries = 0;
  let wireBytes = 0;
  const pool = new BufferPool(chunk);
  /** Zero chunks left out in this run (not journaled). */
  const settled = new Set<number>();
  const zeroBody = zeroBodies();
  /** The image itself failed to read (damaged, truncated, longer than its size): no resume can help. */
  let inputFailure: InputError | undefined;

  const send = async (index: number, signal: AbortSignal): Promise<number> => {
    const [start, end] = pieceOf(index);
    const length = end - start;
    const hole = image.dataMap !== undefined && image.dataMap.nextData(start) >= end;
    if (hole && fresh) {
      skipped++;
      settled.add(index);
      return length;
    }
    const buffer = pool.take();
    try {
      const bytes = buffer.subarray(0, length);
      let zero = hole;
      if (!hole) {
        try {
          await image.read(buffer, length, start);
        } catch (error) {
          if (error instanceof InputError) inputFailure ??= error;
          throw error;
        }
        zero = isAllZero(bytes);
      }
      if (zero && fresh) {
        skipped++;
        settled.add(index);
        return length;
      }
      const { body, gzipped } = zero
        ? request.compress === "never"
          ? { body: bytes.fill(0), gzipped: false }
          : { body: zeroBody(length), gzipped: true }
        : await plan.encode(bytes);
      await withRetry(
        async () => {
          const begun = performance.now();
          plan.requestStarted();
          let ok = false;
          try {
            await writePiece(client, target, start, body, { gzipped, signal });
            ok = true;
          } finally {
            plan.requestFinished(body.length, performance.now() - begun, ok);
          }
        },
        { policy, signal, onRetry: logRetry(ctx.log, `write at ${start}`, () => retries++) },
      );
      wireBytes += body.length;
      // only what was sent is journaled: a zero chunk left out costs nothing to check again
      journal.markDone(index);
      return length;
    } finally {
      pool.give(buffer);
    }
  };

  const pending = (function* () {
    for (const index of chunkIndices(first, count)) if (!journal.done.has(index)) yield index;
  })();
  const run = runChunks(ctx, {
    label: "upload",
    what: `upload to drive ${target}`,
    total: image.size,
    done: doneBytes(journal.done),
    pending,
    concurrency,
    // Once auto settles on gzip the link is the bottleneck: fewer writes in flight move as much and
    // hold fewer raw and compressed chunks (bench/RESULTS.md: 4 lanes, same speed, ~100 MiB on 10 MB/s).
    // A decoded image on a near link: the decoder is the bottleneck, the same holds.
    lanes:
      request.concurrency === undefined
        ? () => {
            let wanted = concurrency;
            if (request.compress === "auto" && plan.level !== 0) wanted = Math.min(wanted, GZIP_LANES);
            if (image.format !== "raw" && plan.latency < NEAR_LINK_MS) wanted = Math.min(wanted, DECODED_LANES);
            return wanted;
          }
        : undefined,
    quiet: request.quiet,
    async prepare(signal) {
      // the probe reads ahead of the chunks, which a decoded image cannot go back for: it sends
      // zeros instead, harmless only on a drive that holds zeros (one this run created)
      if (request.compress !== "auto" || (image.sequential && !fresh)) return;
      wireBytes += await probeLink(
        image,
        chunk,
        offset,
        first,
        count,
        journal,
        (start, body) => writePiece(client, target, start, body, { signal }),
        plan,
      );
    },
    work: send,
    note: () =>
      [skipped ? `${skipped} zero chunks skipped` : "", retries ? `${retries} retries` : ""]
        .filter(Boolean)
        .join(", ") || undefined,
    onStop: () => journal.close(),
    resumeHint() {
      let resumeAt = image.size;
      for (let index = first; index < count; index++) {
        if (!journal.done.has(index) && !settled.has(index)) {
          resumeAt = pieceOf(index)[0];
          break;
        }
      }
      return `to resume, rerun the same command in ${ctx.cwd} (journal ${basename(journal.path)}), or run: ${resumeCommand(request, target, resumeAt)}`;
    },
  });
  const { seconds, progress } = await run.catch(async (error: unknown) => {
    if (!inputFailure) throw error;
    throw await abandon(client, inputFailure, target, fresh, journal);
  });
  progress.finish(
    `uploaded ${humanBytes(image.size - offset)} to drive ${target} in ${seconds.toFixed(1)} s, ${humanBytes(wireBytes)} sent` +
      `${skipped ? `, ${skipped} zero chunks skipped` : ""}${retries ? `, ${retries} retries` : ""}` +
      `${plan.switches.length ? ` (${plan.switches.join(", ")})` : request.compress === "auto" ? ` (${plan.describe()})` : ""}`,
  );
  // the upload is complete: a failed verify must not turn a rerun into a no-op resume
  journal.remove();
  if (request.verify) {
    // a decoded image is read again from its start
    const again = image.sequential && image.reopen ? await image.reopen() : image;
    try {
      await verifyUpload(ctx, client, target, again, request.file, concurrency, request.quiet, policy);
    } finally {
      if (again !== image) await again.close();
    }
  }
  return target;
}

/**
 * The image broke off mid-upload (damaged, truncated, longer than its size): a rerun would fail
 * the same way, so the journal goes, and a drive this upload created is destroyed rather than
 * left holding part of an image; the message says which happened.
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
      `${failure.message}; drive ${drive} (given with -d) now holds part of the image: upload a whole image into it`,
    );
  try {
    await destroyDrive(client, drive);
    return new OperationError(`${failure.message}; drive ${drive}, which this upload created, is destroyed`);
  } catch (error) {
    return new OperationError(
      `${failure.message}; drive ${drive}, which this upload created, holds part of the image and could not be destroyed (${messageOf(error)}): destroy.ts ${drive}`,
    );
  }
}

/** Bytes of the probe write: big enough to time on a slow link, small enough to cost little there. */
const PROBE_BYTES = 512 * 1024;

/**
 * Measure the link before choosing a gzip level: send the start of the first chunk that holds data,
 * raw and alone (its chunk is sent whole later: ~0.5 MiB twice); for a decoded image, which is read
 * once in order, zeros where the first pending chunk goes (the caller allows that only on a new drive). On a 10 MB/s link this takes
 * ~50 ms and says "gzip -6"; on a fast one a few ms and says "raw", so neither case pays for a
 * wrong first guess over many chunks. Returns the bytes sent (0 when there was nothing to probe).
 */
async function probeLink(
  image: ImageSource,
  chunk: number,
  offset: number,
  first: number,
  count: number,
  journal: Journal,
  write: (start: number, body: Uint8Array) => Promise<void>,
  plan: CompressionPlan,
): Promise<number> {
  // small chunks are their own quick probe: the first decision comes after a few of them
  if (chunk < 2 * PROBE_BYTES) return 0;
  for (let index = first, looked = 0; index < count && looked < 64; index++, looked++) {
    if (journal.done.has(index)) continue;
    const start = Math.max(index * chunk, offset);
    const length = Math.min(PROBE_BYTES, image.size - start);
    if (length < PROBE_BYTES) return 0;
    if (image.dataMap && image.dataMap.nextData(start) >= start + length) continue;
    const bytes = new Uint8Array(length);
    if (!image.sequential) {
      await image.read(bytes, length, start);
      if (isAllZero(bytes)) continue;
    }
    const began = performance.now();
    try {
      await write(start, bytes);
    } catch (error) {
      // a failing probe says nothing about the link: the chunks themselves retry or stop
      if (isRetryable(error)) return 0;
      throw error;
    }
    plan.seed(length, performance.now() - began);
    return length;
  }
  return 0;
}

/** Read the whole drive range of the image back in parallel 4 MiB reads; name the first byte that differs. */
async function verifyUpload(
  ctx: Context,
  client: HttpClient,
  drive: string,
  image: ImageSource,
  shown: string,
  concurrency: number,
  quiet: boolean,
  policy: Readonly<RetryPolicy>,
): Promise<void> {
  const count = Math.ceil(image.size / MAX_PIECE);
  const pool = new BufferPool(MAX_PIECE);
  const remotePool = new BufferPool(MAX_PIECE);
  const progress = ctx.progress({ label: "verify", total: image.size, quiet });
  let checked = 0;
  let firstDifference = Infinity;
  const controller = new AbortController();
  const compare = async (index: number) => {
    const start = index * MAX_PIECE;
    if (start >= firstDifference) return;
    const length = Math.min(MAX_PIECE, image.size - start);
    const local = pool.take();
    const buffer = remotePool.take();
    // asked before the first await: a decoded image serves its reads in the order they come
    const localRead = image.read(local, length, start);
    try {
      const remote = await withRetry(() => readInto(client, drive, start, length, buffer, controller.signal), {
        policy,
        signal: controller.signal,
      });
      await localRead;
      if (!Buffer.from(remote.buffer, remote.byteOffset, length).equals(Buffer.from(local.buffer, 0, length))) {
        let at = 0;
        while (at < length && remote[at] === local[at]) at++;
        firstDifference = Math.min(firstDifference, start + at);
      }
    } finally {
      await localRead.catch(() => undefined);
      pool.give(local);
      remotePool.give(buffer);
    }
    checked += length;
    progress.update(checked);
  };
  await runLimited(
    chunkIndices(0, count),
    concurrency,
    compare,
    () => controller.abort(),
    () => controller.signal.aborted,
  );
  progress.finish();
  if (firstDifference !== Infinity) {
    throw new OperationError(`verify failed: drive ${drive} differs from ${shown} first at byte ${firstDifference}`);
  }
  if (!quiet) ctx.log.success(`verified: drive ${drive} matches ${shown} (${humanBytes(image.size)})`);
}
