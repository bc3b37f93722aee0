// An image to a drive: API 1.0 in chunks, API 2.0 in chunks through one-time links or in one POST
// (--direct). The rules that hold whichever way it goes are checked here, before anything is sent.
import type { Connection } from "../connect.ts";
import type { Context } from "../context.ts";
import { UsageError } from "../errors.ts";
import { checkOffset, type UploadRequest } from "../transfer.ts";
import { uploadChunked } from "../api1/upload.ts";
import { uploadDirect } from "../api2/upload-direct.ts";
import { uploadChunked2 } from "../api2/upload.ts";

export interface ImageUpload extends UploadRequest {
  /** API 2.0: one streamed POST instead of chunks. */
  direct: boolean;
  /** API 2.0: wait until the drive leaves `uploading`. */
  wait: boolean;
}

/** Upload the image; resolves to the drive's UUID. */
export async function uploadImage(ctx: Context, connection: Connection, request: ImageUpload): Promise<string> {
  const api = connection.config.api;
  if (api === 2 && request.tier !== undefined)
    throw new UsageError(
      "-t/--tier is API 1.0 only: API 2.0 storage types (storage_type, e.g. dssd) are not the 1.0 tiers",
    );
  if (api === 1 && request.direct) throw new UsageError("--direct is API 2.0 only");
  checkOffset(request.offset, api);
  if (api === 1) return uploadChunked(ctx, connection, request);
  if (request.direct) return uploadDirect(ctx, connection, request);
  return uploadChunked2(ctx, connection, request);
}
