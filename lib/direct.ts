// API 2.0 direct upload and download (issue: API 2.0). Being built.
import type { RunContext } from "./cli.ts";
import type { Connection } from "./connect.ts";
import { OperationError } from "./errors.ts";
import type { DownloadRequest, UploadRequest } from "./transfer.ts";

export async function uploadDirect(_ctx: RunContext, _connection: Connection, _request: UploadRequest): Promise<string> {
  throw new OperationError("API 2.0 upload is not available yet");
}

export async function downloadDirect(_ctx: RunContext, _connection: Connection, _request: DownloadRequest): Promise<string> {
  throw new OperationError("API 2.0 download is not available yet");
}
