// API 1.0 chunked upload engine (issue: chunked transfer engine). Being built.
import type { RunContext } from "./cli.ts";
import type { Connection } from "./connect.ts";
import { OperationError } from "./errors.ts";
import type { UploadRequest } from "./transfer.ts";

export async function uploadChunked(_ctx: RunContext, _connection: Connection, _request: UploadRequest): Promise<string> {
  throw new OperationError("API 1.0 upload is not available yet");
}
