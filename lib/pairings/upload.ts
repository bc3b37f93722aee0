// An image to a drive: API 1.0 in chunks, API 2.0 in chunks through one-time links or in one POST
// (--direct). The image is opened here (any format, stdin), the rules that hold whichever way it
// goes are checked before anything is sent, and the transfer driver runs it into the destination.
import type { Connection } from "../connect.ts";
import type { Context } from "../context.ts";
import { UsageError } from "../errors.ts";
import { shellWord } from "../files.ts";
import { checkOffset, type UploadRequest } from "../transfer.ts";
import type { ImageSource } from "../chunks/image.ts";
import { runTransfer } from "../chunks/driver.ts";
import type { Destination } from "../chunks/endpoints.ts";
import { fixedWindow, windowFor, type WindowPolicy } from "../chunks/window.ts";
import { journalIdentity, openUploadInput, STDIN_RESUME_WARNING } from "../formats/open.ts";
import { preconnect } from "../wire.ts";
import { api1WriteWindow, Api1DriveDestination } from "../api1/drive-destination.ts";
import { Api2DirectDestination } from "../api2/direct-destination.ts";
import { directClient } from "../connect.ts";
import {
  API2_POSTS_IN_FLIGHT,
  Api2ChunkedDestination,
  api2BytesPerPost,
  DEFAULT_API2_CHUNK,
} from "../api2/chunked-destination.ts";

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
  if (api === 2 && request.direct) {
    directClient(connection);
    if (request.drive) throw new UsageError("-d/--drive is API 1.0 only: an API 2.0 upload always creates a new drive");
  }
  const image = await openUploadInput(ctx, request);
  try {
    if (image.size === 0) throw new UsageError(`${request.file} is empty (0 bytes): there is nothing to upload`);
    const upload = api === 1 ? uploadToApi1 : request.direct ? uploadInOnePost : uploadToApi2;
    return await upload(ctx, connection, request, image);
  } finally {
    await image.close();
  }
}

/** Where an upload's journal lives: one per image (its format, stdin's size) and target, apart for each API. */
function uploadIdentity(kind: "upload" | "upload-api2", image: ImageSource, drive: string | undefined): string {
  return `${kind}\0${journalIdentity(image)}\0${drive ?? "new"}`;
}

/** What an interrupted upload's journal must match: the same image (path, size, mtime), chunk size and -d. */
function uploadKey(image: ImageSource, request: UploadRequest) {
  return {
    kind: "upload" as const,
    file: image.path,
    size: image.size,
    mtimeMs: image.mtimeMs,
    chunk: request.chunk,
    drive: request.drive,
  };
}

/** The flags that read the image the same way again, for a resume command. */
function imageFlags(request: UploadRequest): string {
  const format = request.format ? ` --format ${request.format}` : "";
  const size = request.size !== undefined ? ` --size ${request.size}` : "";
  return `${format}${size} ${shellWord(request.file)}`;
}

/** What every upload tells its drive destination. */
function driveTransfer(ctx: Context, request: ImageUpload, image: ImageSource) {
  return {
    ctx,
    source: image,
    shown: request.file,
    name: request.name,
    drive: request.drive,
    key: uploadKey(image, request),
    label: "upload",
    done: "uploaded",
    resumeWarning: image.path === "-" ? STDIN_RESUME_WARNING : undefined,
  };
}

/** The image into `destination`; `identity` names its journal and lock (none: a run that keeps nothing). */
function upload(
  ctx: Context,
  connection: Connection,
  request: ImageUpload,
  image: ImageSource,
  destination: Destination,
  { identity, window }: { identity?: string; window: WindowPolicy },
): Promise<string> {
  return runTransfer(ctx, {
    label: "upload",
    source: image,
    destination,
    record: identity === undefined ? undefined : { identity, name: `the upload of ${request.file}` },
    window,
    retry: connection.retry,
    quiet: request.quiet,
    verify: request.verify,
  });
}

async function uploadToApi1(
  ctx: Context,
  connection: Connection,
  request: ImageUpload,
  image: ImageSource,
): Promise<string> {
  const offset = request.offset ?? 0;
  if (offset > image.size)
    throw new UsageError(`invalid --offset ${offset}: beyond the end of ${request.file} (${image.size} bytes)`);
  // each write in flight holds its chunk, which its socket sends from (socket-write.ts); gzipped,
  // its gzip too (--compress auto keeps 4 writes in flight then: Api1DriveDestination.lanes)
  const perWrite = request.compress === "always" ? 2 * request.chunk : request.chunk;
  const window = api1WriteWindow(perWrite, request.concurrency);
  const destination = new Api1DriveDestination({
    ...driveTransfer(ctx, request, image),
    client: connection.client,
    socketWrites: connection,
    decoded: image.format !== "raw",
    chunk: request.chunk,
    offset,
    compress: request.compress,
    window,
    tier: request.tier,
    resumeCommand: (drive, at) => `upload.ts -d ${drive} -o ${at}${imageFlags(request)}`,
  });
  const identity = uploadIdentity("upload", image, request.drive);
  // the writes in flight get their sockets while the drive is made
  preconnect(connection.client.url("drives/"), connection.sockets, window.initial);
  return upload(ctx, connection, request, image, destination, { identity, window });
}

async function uploadToApi2(
  ctx: Context,
  connection: Connection,
  request: ImageUpload,
  image: ImageSource,
): Promise<string> {
  const { chunk } = request;
  const window = windowFor(API2_POSTS_IN_FLIGHT, api2BytesPerPost(chunk, image), request.concurrency);
  const destination = new Api2ChunkedDestination({
    ...driveTransfer(ctx, request, image),
    connection,
    chunk,
    wait: request.wait,
    resumeCommand: (drive) =>
      `upload.ts --api 2 -d ${drive}${chunk === DEFAULT_API2_CHUNK ? "" : ` -c ${chunk}`}${imageFlags(request)}`,
    inFlight: window.initial,
  });
  const identity = uploadIdentity("upload-api2", image, request.drive);
  // the one-time links in flight are asked for over connections opened while the drive is made
  // (as many: the drive's own may not be free again when they go)
  connection.client.preconnect(window.initial);
  return upload(ctx, connection, request, image, destination, { identity, window });
}

/** --direct: one POST, which makes the drive; nothing to lock or resume (two such uploads share nothing). */
async function uploadInOnePost(
  ctx: Context,
  connection: Connection,
  request: ImageUpload,
  image: ImageSource,
): Promise<string> {
  const destination = new Api2DirectDestination({
    ctx,
    connection,
    source: image,
    shown: request.file,
    name: request.name,
  });
  return upload(ctx, connection, request, image, destination, { window: fixedWindow(1) });
}
