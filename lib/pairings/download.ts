// A drive to a file, either API, through the transfer driver: API 1.0 in parallel reads of up to
// 4 MiB, API 2.0 in parallel ranged GETs (as many as the window finds the link carries); raw
// (sparse) or compressed (.gz / .zst). The rules that hold whichever way it goes are checked here,
// before anything is sent.
import { existsSync, rmSync, statSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { directClient, type Connection } from "../connect.ts";
import type { Context } from "../context.ts";
import { OperationError, UsageError } from "../errors.ts";
import { checkOutputPath, exists } from "../files.ts";
import { checkOffset, type DownloadRequest } from "../transfer.ts";
import { runTransfer } from "../chunks/driver.ts";
import type { Interrupt } from "../chunks/engine.ts";
import type { Destination } from "../chunks/endpoints.ts";
import { Journal, journalPath } from "../chunks/journal.ts";
import { fixedWindow, startWithin, windowFor, type WindowPolicy } from "../chunks/window.ts";
import { preconnect } from "../wire.ts";
import { formatOfName, withSuffix } from "../formats/output-format.ts";
import { SparseFileDestination } from "../formats/sparse-file.ts";
import { downloadRecord } from "../formats/file-destination.ts";
import { CompressedFileDestination } from "../formats/compressed-file.ts";
import { MAX_PIECE } from "../api1/drives.ts";
import { API1_READS_IN_FLIGHT, api1ReadWindow, openApi1Drive, type Api1Drive } from "../api1/drive-source.ts";
import { openApi2RangedDrive, type Api2RangedDrive } from "../api2/drive-source.ts";
import { serverFileName } from "../api2/file-name.ts";
import { describeDrive } from "./access.ts";
import { fromSnapshot } from "./consistent.ts";

/**
 * API 2.0 ranged GETs in flight at the start (a far link; a near one reads in one stream). Fewer
 * fill a shaped link too, but in more waves, each starting with a round trip in which nothing moves
 * (bench/RESULTS-speed.md, "Figures the code relies on").
 */
export const API2_READS_IN_FLIGHT = 8;

/** The ranged GETs' window: from API2_READS_IN_FLIGHT (fewer where each holds more), up to what memory holds. */
function api2ReadWindow(source: Api2RangedDrive, chunk: number, concurrency?: number): WindowPolicy {
  const held = source.heldPerRead(chunk);
  return windowFor(startWithin(API2_READS_IN_FLIGHT, held), held, concurrency);
}

/**
 * Bytes per chunk (without -c) of a raw API 2.0 download read in one stream: each piece read from the
 * answer is written while it is still in the CPU's cache, where 4 MiB ones are not (1 GiB on
 * loopback: bench/RESULTS-speed.md, "One stream: the chunk size"). A rerun keeps the chunk its
 * journal was made with.
 */
export const ONE_STREAM_CHUNK = 512 * 1024;

/** Download the drive; resolves to the file's absolute path. */
export async function downloadDrive(ctx: Context, connection: Connection, request: DownloadRequest): Promise<string> {
  const api = connection.config.api;
  const { drive, force } = request;
  checkOffset(request.offset, api, request.format ?? (request.file ? formatOfName(request.file) : undefined));
  // API 2.0 without FILE: the server names it, once asked
  const named = request.file ?? (api === 1 ? withSuffix(drive, request.format) : undefined);
  // before anything is sent: an existing FILE is only replaced on request
  if (named !== undefined) await checkOutputPath(resolve(ctx.cwd, named), force);
  // the reads in flight get their connections while the API gives the drive's size (as many: the
  // size's own may not be free again when they go); API 1.0 reads go over the run's own sockets
  if (api === 1)
    preconnect(connection.client.url("drives/"), connection.sockets, request.concurrency ?? API1_READS_IN_FLIGHT);
  else directClient(connection).preconnect(request.concurrency ?? API2_READS_IN_FLIGHT);
  const source =
    api === 1
      ? await openApi1Drive(connection.client, drive, connection)
      : await openApi2RangedDrive(connection, drive, ctx.log, request.concurrency);
  try {
    const path = named !== undefined ? resolve(ctx.cwd, named) : await namedByServer(ctx, connection, request);
    const format = request.format ?? formatOfName(path);
    const size = source.size;
    if ((request.offset ?? 0) > size)
      throw new OperationError(`--offset ${request.offset} is beyond the end of drive ${drive} (${size} bytes)`);
    const record = downloadRecord(drive, path);
    const journalFile = journalPath(ctx.cwd, record.identity);
    const offset =
      api === 2 && format === "raw"
        ? await keptPrefix(ctx, source as Api2RangedDrive, path, journalFile)
        : request.offset;
    const oneStream = api === 2 && (source as Api2RangedDrive).oneStream;
    const chunk =
      request.chunk ??
      (oneStream && format === "raw" ? (Journal.load(journalFile)?.header.chunk ?? ONE_STREAM_CHUNK) : MAX_PIECE);
    // each read in flight holds its chunk until it is written, and some more (heldPerRead); API 2.0
    // in one stream: one at a time
    const window = oneStream
      ? fixedWindow(1)
      : api === 1
        ? api1ReadWindow(source as Api1Drive, chunk, request.concurrency)
        : api2ReadWindow(source as Api2RangedDrive, chunk, request.concurrency);
    const from = { shown: `drive ${drive}`, id: drive };
    const destination: Destination =
      format === "raw"
        ? new SparseFileDestination({ ctx, path, from, size, chunk, offset, force })
        : new CompressedFileDestination({ ctx, path, from, size, chunk, format, window: window.max, force });
    return await runTransfer(ctx, {
      label: "download",
      source,
      destination,
      record,
      window,
      retry: connection.retry,
      quiet: request.quiet,
    });
  } finally {
    await source.close();
  }
}

/** Without FILE (API 2.0): the server's name for the drive, refused when a file has it and --force is not given. */
async function namedByServer(ctx: Context, connection: Connection, request: DownloadRequest): Promise<string> {
  const name = withSuffix(await serverFileName(connection, request.drive), request.format);
  const path = join(ctx.cwd, name);
  if (!request.force && (await exists(path)))
    // the name was only known from the answer, so this is not a status-2 call: something was sent
    throw new OperationError(
      `${name} exists (the server's name for drive ${request.drive}): pass --force to overwrite it, or give FILE`,
    );
  return path;
}

/**
 * A raw FILE.part left with no journal (an earlier drivekit's API 2.0 download, `curl -C -`) holds the
 * drive's first bytes: they are kept when the server resumes the drive at the .part's length, else
 * it starts over from 0. Undefined: nothing of the kind (a journal says what the .part holds, or
 * there is none).
 */
async function keptPrefix(
  ctx: Context,
  source: Api2RangedDrive,
  path: string,
  journalFile: string,
): Promise<number | undefined> {
  const part = `${path}.part`;
  if (existsSync(journalFile) || !existsSync(part)) return undefined;
  const length = statSync(part).size;
  if (length === 0 || length > source.size) return undefined;
  if (length === source.size || (await source.resumesAt(length))) {
    ctx.log.info(`resuming ${basename(part)} from byte ${length}`);
    return length;
  }
  ctx.log.info(`the server does not resume ${basename(part)} from byte ${length}: starting again from 0`);
  rmSync(part, { force: true });
  return undefined;
}

/**
 * --consistent: download an API 2.0 drive as of one instant, through a snapshot and a temporary
 * clone of it (consistent.ts); FILE defaults to the drive's UUID (the clone's name means nothing).
 */
export async function downloadConsistent(
  ctx: Context,
  connection: Connection,
  request: DownloadRequest,
  stop?: Interrupt,
): Promise<string> {
  if (connection.config.api !== 2)
    throw new UsageError(
      "--consistent needs API 2.0 (it snapshots the drive): API 1.0 has no snapshots; stop what writes to the drive instead",
    );
  const { drive } = request;
  checkOffset(request.offset, 2);
  const path = resolve(ctx.cwd, request.file ?? withSuffix(drive, request.format));
  // before anything is sent: an existing FILE is only replaced on request
  await checkOutputPath(path, request.force);
  await describeDrive({ connection, drive });
  const part = `${path}.part`;
  return fromSnapshot(
    ctx,
    {
      connection,
      drive,
      identity: `download\0api2 ${connection.config.base.href} ${drive}\0${path}`,
      what: `the download of drive ${drive} into ${path}`,
      stop,
      resumable: () => existsSync(part),
      lost: ({ clone }) => {
        // FILE.part holds bytes of an instant that cannot be read again: it starts over
        ctx.log.warn(`${part} holds part of that instant: starting it over`);
        rmSync(part, { force: true });
        if (clone) rmSync(journalPath(ctx.cwd, downloadRecord(clone, path).identity), { force: true });
      },
    },
    (instant) => downloadDrive(ctx, connection, { ...request, drive: instant.clone, file: path }),
  );
}
