// A drive to a file: API 1.0 in parallel reads into the transfer driver, API 2.0 in one GET; raw
// (sparse) or compressed (.gz / .zst). The rules that hold whichever way it goes are checked here,
// before anything is sent.
import { existsSync, rmSync } from "node:fs";
import { resolve } from "node:path";
import type { Connection } from "../connect.ts";
import type { Context } from "../context.ts";
import { OperationError, UsageError } from "../errors.ts";
import { checkOutputPath } from "../files.ts";
import type { Interrupt } from "../chunks/engine.ts";
import { journalPath } from "../chunks/journal.ts";
import { checkOffset, type DownloadRequest } from "../transfer.ts";
import { runTransfer } from "../chunks/driver.ts";
import type { Destination } from "../chunks/endpoints.ts";
import { formatOfName, withSuffix } from "../formats/output-format.ts";
import { SparseFileDestination } from "../formats/sparse-file.ts";
import { downloadRecord } from "../formats/file-destination.ts";
import { CompressedFileDestination } from "../formats/compressed-file.ts";
import { API1_READS_IN_FLIGHT, openApi1Drive } from "../api1/drive-source.ts";
import { downloadDirect } from "../api2/download.ts";
import { describeDrive } from "./access.ts";
import { fromSnapshot } from "./consistent.ts";

/** Download the drive; resolves to the file's absolute path. */
export async function downloadDrive(ctx: Context, connection: Connection, request: DownloadRequest): Promise<string> {
  const api = connection.config.api;
  checkOffset(request.offset, api, request.format ?? (request.file ? formatOfName(request.file) : undefined));
  return api === 1 ? downloadFromApi1(ctx, connection, request) : downloadDirect(ctx, connection, request);
}

async function downloadFromApi1(ctx: Context, connection: Connection, request: DownloadRequest): Promise<string> {
  const { drive, chunk, force } = request;
  const path = resolve(ctx.cwd, request.file ?? withSuffix(drive, request.format));
  const format = request.format ?? formatOfName(path);
  // before anything is sent: an existing FILE is only replaced on request
  await checkOutputPath(path, force);
  const source = await openApi1Drive(connection.client, drive);
  const size = source.size;
  if ((request.offset ?? 0) > size)
    throw new OperationError(`--offset ${request.offset} is beyond the end of drive ${drive} (${size} bytes)`);
  const concurrency = request.concurrency ?? API1_READS_IN_FLIGHT;
  const from = { shown: `drive ${drive}`, id: drive };
  const destination: Destination =
    format === "raw"
      ? new SparseFileDestination({ ctx, path, from, size, chunk, offset: request.offset, force })
      : new CompressedFileDestination({ ctx, path, from, size, chunk, format, concurrency, force });
  return runTransfer(ctx, {
    label: "download",
    source,
    destination,
    record: downloadRecord(drive, path),
    concurrency,
    retry: connection.retry,
    quiet: request.quiet,
  });
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
