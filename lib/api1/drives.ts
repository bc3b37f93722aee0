// API 1.0 drive calls: one function per call, arguments already checked.
import { readBody } from "../body.ts";
import { ApiError, OperationError, UsageError } from "../errors.ts";
import type { HttpClient, RequestOptions } from "../http.ts";
import { formatRecord, type KvRecord } from "../kv.ts";
import { isUuid } from "../uuid.ts";

/** The API never serves more than this in one read, and the vendor tools write this much at a time. */
export const MAX_PIECE = 4 * 1024 * 1024;

export type Conversion = "gzip" | "gunzip";

const kvHeaders = { "content-type": "text/plain" };

export async function listDrives(client: HttpClient): Promise<string[]> {
  const text = await client.text("GET", "drives/list");
  const lines = text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter(Boolean);
  for (const line of lines) {
    if (!isUuid(line))
      throw new OperationError(
        `GET /drives/list: the server sent a line that is not a drive UUID: '${line.slice(0, 60)}'`,
      );
  }
  return lines;
}

export function driveInfo(
  client: HttpClient,
  drive: string,
  full = false,
  options?: RequestOptions,
): Promise<KvRecord> {
  return client.record("GET", `drives/${drive}/info${full ? "/full" : ""}`, options);
}

export function allDrivesInfo(client: HttpClient): Promise<KvRecord[]> {
  return client.records("GET", "drives/info");
}

/** The drive's size in bytes from its info, checked. */
export function sizeOf(record: KvRecord, drive: string): number {
  const text = record.size ?? "";
  const size = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(size)) {
    throw new OperationError(`drive ${drive}: the server gave no usable size ('${text.slice(0, 40)}')`);
  }
  return size;
}

export async function createDrive(client: HttpClient, fields: KvRecord): Promise<KvRecord> {
  if (!fields.name || !fields.size) throw new UsageError("a new drive needs a name and a size");
  const record = await client.record("POST", "drives/create", { body: formatRecord(fields), headers: kvHeaders });
  if (!record.drive || !isUuid(record.drive))
    throw new OperationError("POST /drives/create: the answer holds no drive UUID");
  return record;
}

export function setDrive(client: HttpClient, drive: string, fields: KvRecord): Promise<KvRecord> {
  return client.record("POST", `drives/${drive}/set`, { body: formatRecord(fields), headers: kvHeaders });
}

export async function destroyDrive(client: HttpClient, drive: string): Promise<void> {
  const response = await client.request("POST", `drives/${drive}/destroy`, { body: "" });
  await response.body?.cancel();
}

export async function imageDrive(
  client: HttpClient,
  drive: string,
  source: string,
  conversion?: Conversion,
): Promise<void> {
  const path = `drives/${drive}/image/${source}${conversion ? `/${conversion}` : ""}`;
  const response = await client.request("POST", path, { body: "" });
  await response.body?.cancel();
}

/** One read of at most 4 MiB; the answer must hold exactly the bytes asked for, or end at the drive's end. */
export async function readPiece(
  client: HttpClient,
  drive: string,
  offset: number,
  size: number,
  options?: RequestOptions,
): Promise<Uint8Array> {
  if (size > MAX_PIECE) throw new UsageError(`a read is at most 4M (${MAX_PIECE} bytes), not ${size}`);
  const response = await client.request("GET", `drives/${drive}/read/${offset}/${size}`, options);
  const bytes = new Uint8Array(await response.arrayBuffer());
  if (bytes.length > size) {
    throw new OperationError(
      `GET /drives/${drive}/read/${offset}/${size}: the server sent ${bytes.length} bytes, more than asked`,
    );
  }
  return bytes;
}

export interface WriteOptions extends RequestOptions {
  /** Send the body gzipped (the caller passes the compressed bytes). */
  gzipped?: boolean;
}

/** One write at a drive offset. The body goes with a Content-Length, never chunked. */
export async function writePiece(
  client: HttpClient,
  drive: string,
  offset: number,
  body: Uint8Array,
  options: WriteOptions = {},
): Promise<void> {
  const headers: Record<string, string> = { "content-type": "application/octet-stream", ...options.headers };
  if (options.gzipped) headers["content-encoding"] = "gzip";
  const response = await client.request("POST", `drives/${drive}/write/${offset}`, { ...options, body, headers });
  await response.body?.cancel();
}

/** How a read of `length` bytes at `path` went wrong, in the same words whichever way it was sent. */
export const readFailure = {
  /** More bytes than asked: the server is not answering this read; never tried again. */
  tooLong: (length: number, status: number, path: string) =>
    new ApiError({
      kind: "protocol",
      message: `the server sent more than the ${length} bytes asked`,
      status,
      method: "GET",
      path,
      retryable: false,
    }),
  /** The connection failed mid-body: worth another try. */
  cut: (got: number, length: number, status: number, path: string, cause: unknown) =>
    new ApiError({
      kind: "network",
      message: `answer cut after ${got} of ${length} bytes: ${(cause as Error).message}`,
      status,
      method: "GET",
      path,
      retryable: true,
      cause,
    }),
  /** A whole answer, shorter than asked (its Content-Length agreeing): worth another try. */
  short: (got: number, length: number, status: number, path: string) =>
    new ApiError({
      kind: "protocol",
      message: `short answer: ${got} of ${length} bytes`,
      status,
      method: "GET",
      path,
      retryable: true,
    }),
};

/** A read of `length` bytes at `position`: at most 4 MiB, into a buffer that holds it (a UsageError otherwise). */
export function checkRead(length: number, buffer: Uint8Array): void {
  if (length > MAX_PIECE || length > buffer.length)
    throw new UsageError(`a read is at most 4M (${MAX_PIECE} bytes), not ${length}`);
}

/**
 * One API 1.0 read of `length` bytes into `buffer` (no new 4 MiB buffer per read: memory stays
 * flat). The answer must hold exactly `length` bytes: Bun's fetch does not notice a body cut
 * short of its Content-Length, so the bytes are counted here, and a short answer or a connection
 * lost mid-body is an error worth another try.
 */
export async function readInto(
  client: HttpClient,
  drive: string,
  position: number,
  length: number,
  buffer: Uint8Array,
  signal?: AbortSignal,
): Promise<Uint8Array> {
  checkRead(length, buffer);
  const path = `drives/${drive}/read/${position}/${length}`;
  const shown = `/${path}`;
  const response = await client.request("GET", path, { signal });
  let got = 0;
  try {
    const body = await readBody(response, buffer.subarray(0, length), (sofar) => {
      got = sofar;
    });
    got = body.got;
    if (body.more) throw readFailure.tooLong(length, response.status, shown);
  } catch (error) {
    if (error instanceof ApiError || signal?.aborted) throw error;
    throw readFailure.cut(got, length, response.status, shown, error);
  }
  if (got !== length) throw readFailure.short(got, length, response.status, shown);
  return buffer.subarray(0, length);
}
