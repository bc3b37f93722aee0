// API 1.0 chunked download engine (issue: chunked transfer engine). Being built.
import type { RunContext } from "./cli.ts";
import type { Connection } from "./connect.ts";
import { OperationError } from "./errors.ts";
import type { DownloadRequest } from "./transfer.ts";

export async function downloadChunked(_ctx: RunContext, _connection: Connection, _request: DownloadRequest): Promise<string> {
  throw new OperationError("API 1.0 download is not available yet");
}
