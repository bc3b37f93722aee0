// API 1.0 chunked download: parallel reads of up to 4 MiB, each checked for its exact length
// (Bun's fetch does not notice a body shorter than its Content-Length), written at their offsets
// into FILE.part with zero 4 KiB blocks left as holes (the file stays as sparse as the drive),
// renamed to FILE only when complete. A journal of finished chunks lets a rerun resume the .part.
// A FILE.gz / FILE.zst (or --format) goes through the compressed writer instead (download-compressed.ts).
import { open, rename, stat, type FileHandle } from "node:fs/promises";
import { basename, resolve } from "node:path";
import type { Context } from "../context.ts";
import type { Connection } from "../connect.ts";
import { driveInfo, sizeOf, readInto } from "./drives.ts";
import { OperationError } from "../errors.ts";
import { chunkGrid, runChunks } from "../chunks/engine.ts";
import { checkOutputPath, exists, writeAllAt, writeSparse } from "../files.ts";
import { Journal, journalPath } from "../chunks/journal.ts";
import { RunLock } from "../chunks/lock.ts";
import type { HttpClient } from "../http.ts";
import { logRetry, withRetry, type RetryPolicy } from "../retry.ts";
import { humanBytes } from "../size.ts";
import type { DownloadRequest } from "../transfer.ts";
import { BufferPool, dataRuns } from "../bytes.ts";
import { formatOfName, withSuffix } from "../formats/output-format.ts";
import { downloadCompressed } from "./download-compressed.ts";

/** Reads in flight by default: picked from bench/RESULTS.md (8 was no faster on loopback and cost ~20 MiB more RSS). */
export const DEFAULT_DOWNLOAD_CONCURRENCY = 6;

export async function downloadChunked(ctx: Context, connection: Connection, request: DownloadRequest): Promise<string> {
  const client = connection.client;
  const drive = request.drive;
  const path = resolve(ctx.cwd, request.file ?? withSuffix(drive, request.format));
  const format = request.format ?? formatOfName(path);
  // before anything is sent: an existing FILE is only replaced on request
  await checkOutputPath(path, request.force);
  const part = `${path}.part`;

  const size = sizeOf(await driveInfo(client, drive), drive);
  const offset = request.offset ?? 0;
  if (offset > size) throw new OperationError(`--offset ${offset} is beyond the end of drive ${drive} (${size} bytes)`);
  const journalFile = journalPath(ctx.cwd, `download\0${drive}\0${path}`);
  const lock = RunLock.acquire(journalFile, `a download into ${basename(part)}`);
  try {
    if (format !== "raw") {
      const concurrency = request.concurrency ?? DEFAULT_DOWNLOAD_CONCURRENCY;
      return await downloadCompressed(ctx, client, request, {
        path,
        part,
        size,
        journalFile,
        format,
        concurrency,
        policy: connection.retry,
      });
    }
    return await downloadInto(ctx, client, request, { path, part, size, journalFile, policy: connection.retry });
  } finally {
    lock.release();
  }
}

async function downloadInto(
  ctx: Context,
  client: HttpClient,
  request: DownloadRequest,
  {
    path,
    part,
    size,
    journalFile,
    policy,
  }: { path: string; part: string; size: number; journalFile: string; policy: Readonly<RetryPolicy> },
): Promise<string> {
  const drive = request.drive;
  const offset = request.offset ?? 0;
  const chunk = request.chunk;
  const concurrency = request.concurrency ?? DEFAULT_DOWNLOAD_CONCURRENCY;
  const key = { kind: "download" as const, file: path, size, chunk, drive };
  let journal = Journal.load(journalFile);
  const partExists = await exists(part);
  if (journal && !(journal.matches(key) && partExists)) journal = undefined;
  // resuming: an existing .part is kept when the journal says what it holds, or when -o says so (the vendor way)
  const resuming = partExists && (journal !== undefined || request.offset !== undefined);
  if (partExists && !resuming)
    ctx.log.warn(`${basename(part)} exists without a record of what it holds: starting it over`);

  // the .part first: a folder that does not exist must not leave a journal behind
  let handle: FileHandle;
  try {
    handle = await open(part, resuming ? "r+" : "w+", 0o644);
    // the full size at once: everything not written stays a hole
    await handle.truncate(size);
  } catch (error) {
    throw new OperationError(`cannot write ${part}: ${(error as Error).message}`);
  }
  if (journal)
    ctx.log.info(
      `resuming the download of drive ${drive} into ${basename(part)}: ${journal.done.size} chunks already done`,
    );
  try {
    journal ??= Journal.create(journalFile, { v: 1, ...key });
  } catch (error) {
    await handle.close();
    throw error;
  }
  const theJournal = journal;

  const { count, first, pieceOf, doneBytes } = chunkGrid(size, chunk, offset);
  let retries = 0;
  let holes = 0;
  const pool = new BufferPool(chunk);
  /** For reading back what an interrupted run left in FILE.part. */
  const spare = new BufferPool(chunk);

  const fetchPiece = async (index: number, signal: AbortSignal): Promise<number> => {
    const buffer = pool.take();
    try {
      return await fetchInto(index, buffer, signal);
    } finally {
      pool.give(buffer);
    }
  };

  const fetchInto = async (index: number, buffer: Uint8Array, signal: AbortSignal): Promise<number> => {
    const [start, end] = pieceOf(index);
    const length = end - start;
    const bytes = await withRetry(() => readInto(client, drive, start, length, buffer, signal), {
      policy,
      signal,
      onRetry: logRetry(ctx.log, `read at ${start}`, () => retries++),
    });
    const runs = writeSparse(handle.fd, bytes, start);
    if (resuming) {
      // a hole here may hold stale bytes from a run that stopped mid-chunk: zero what is not zero
      const existing = spare.take();
      try {
        let at = 0;
        for (const [from, to] of [...runs, [length, length] as const]) {
          if (from > at) {
            const { bytesRead } = await handle.read(existing, 0, from - at, start + at);
            const stale = dataRuns(existing.subarray(0, bytesRead), start + at);
            for (const [a, b] of stale) writeAllAt(handle.fd, new Uint8Array(b - a), start + at + a);
          }
          at = to;
        }
      } finally {
        spare.give(existing);
      }
    }
    if (runs.length === 0) holes++;
    theJournal.markDone(index);
    return length;
  };

  const pending = (function* () {
    for (let index = first; index < count; index++) if (!theJournal.done.has(index)) yield index;
  })();
  // no fsync at the end: FILE.part and the rename guard against a stopped or crashed run, as with
  // curl or wget; waiting for the disk to write back a whole drive doubled the time on loopback
  // (bench/RESULTS.md) and is the page cache's business
  const { seconds, progress } = await runChunks(ctx, {
    label: "download",
    what: `download of drive ${drive}`,
    total: size,
    done: doneBytes(theJournal.done),
    pending,
    concurrency,
    quiet: request.quiet,
    work: fetchPiece,
    note: () => (retries ? `${retries} retries` : undefined),
    async onStop() {
      theJournal.close();
      await handle.close().catch(() => undefined);
    },
    resumeHint: () => `${basename(part)} is kept: rerun the same command in ${ctx.cwd} to resume`,
  });
  await handle.close();
  // the final name appears only now, complete; a FILE that showed up meanwhile is still protected
  if (!request.force && (await exists(path))) {
    throw new OperationError(
      `${path} appeared during the download: the drive's data is in ${part} (pass --force to replace ${basename(path)})`,
    );
  }
  try {
    await rename(part, path);
  } catch (error) {
    throw new OperationError(`cannot rename ${part} to ${path}: ${(error as Error).message}`);
  }
  theJournal.remove();
  const allocated = (await stat(path)).blocks * 512;
  progress.finish(
    `downloaded drive ${drive} (${humanBytes(size)}) to ${path} in ${seconds.toFixed(1)} s, ${humanBytes(allocated)} allocated` +
      `${holes ? `, ${holes} zero chunks left as holes` : ""}${retries ? `, ${retries} retries` : ""}`,
  );
  return path;
}
