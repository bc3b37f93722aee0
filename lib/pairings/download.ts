// A drive to a file: API 1.0 in parallel reads, API 2.0 in one GET; raw (sparse) or compressed.
// The rules that hold whichever way it goes are checked here, before anything is sent.
import type { Connection } from "../connect.ts";
import type { Context } from "../context.ts";
import { checkOffset, type DownloadRequest } from "../transfer.ts";
import { formatOfName } from "../formats/output-format.ts";
import { downloadChunked } from "../api1/download.ts";
import { downloadDirect } from "../api2/download.ts";

/** Download the drive; resolves to the file's absolute path. */
export async function downloadDrive(ctx: Context, connection: Connection, request: DownloadRequest): Promise<string> {
  const api = connection.config.api;
  checkOffset(request.offset, api, request.format ?? (request.file ? formatOfName(request.file) : undefined));
  return api === 1 ? downloadChunked(ctx, connection, request) : downloadDirect(ctx, connection, request);
}
