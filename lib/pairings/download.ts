// A drive to a file: API 1.0 in parallel reads into the transfer driver, API 2.0 in one GET; raw
// (sparse) or compressed (.gz / .zst). The rules that hold whichever way it goes are checked here,
// before anything is sent.
import { resolve } from "node:path";
import type { Connection } from "../connect.ts";
import type { Context } from "../context.ts";
import { OperationError } from "../errors.ts";
import { checkOutputPath } from "../files.ts";
import { checkOffset, type DownloadRequest } from "../transfer.ts";
import { runTransfer } from "../chunks/driver.ts";
import type { Destination } from "../chunks/endpoints.ts";
import { formatOfName, withSuffix } from "../formats/output-format.ts";
import { SparseFileDestination } from "../formats/sparse-file.ts";
import { downloadRecord } from "../formats/file-destination.ts";
import { CompressedFileDestination } from "../formats/compressed-file.ts";
import { API1_READS_IN_FLIGHT, openApi1Drive } from "../api1/drive-source.ts";
import { downloadDirect } from "../api2/download.ts";

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
