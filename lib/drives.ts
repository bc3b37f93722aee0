// API 1.0 drive calls (seeds/001, API.md): one function per call, arguments already checked.
import { OperationError, UsageError } from "./errors.ts";
import type { HttpClient, RequestOptions } from "./http.ts";
import { formatRecord, type KvRecord } from "./kv.ts";
import { isUuid } from "./args.ts";

/** The API never serves more than this in one read, and the vendor tools write this much at a time. */
export const MAX_PIECE = 4 * 1024 * 1024;

export type Conversion = "gzip" | "gunzip";

const kvHeaders = { "content-type": "text/plain" };

export async function listDrives(client: HttpClient): Promise<string[]> {
  const text = await client.text("GET", "drives/list");
  const lines = text.split(/\r?\n/).map((line) => line.trim()).filter(Boolean);
  for (const line of lines) {
    if (!isUuid(line)) throw new OperationError(`GET /drives/list: the server sent a line that is not a drive UUID: '${line.slice(0, 60)}'`);
  }
  return lines;
}

export function driveInfo(client: HttpClient, drive: string, full = false, options?: RequestOptions): Promise<KvRecord> {
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
  if (!record.drive || !isUuid(record.drive)) throw new OperationError("POST /drives/create: the answer holds no drive UUID");
  return record;
}

export function setDrive(client: HttpClient, drive: string, fields: KvRecord): Promise<KvRecord> {
  return client.record("POST", `drives/${drive}/set`, { body: formatRecord(fields), headers: kvHeaders });
}

export async function destroyDrive(client: HttpClient, drive: string): Promise<void> {
  const response = await client.request("POST", `drives/${drive}/destroy`, { body: "" });
  await response.body?.cancel();
}

export async function imageDrive(client: HttpClient, drive: string, source: string, conversion?: Conversion): Promise<void> {
  const path = `drives/${drive}/image/${source}${conversion ? `/${conversion}` : ""}`;
  const response = await client.request("POST", path, { body: "" });
  await response.body?.cancel();
}

/** One read of at most 4 MiB; the answer must hold exactly the bytes asked for, or end at the drive's end. */
export async function readPiece(client: HttpClient, drive: string, offset: number, size: number, options?: RequestOptions): Promise<Uint8Array> {
  if (size > MAX_PIECE) throw new UsageError(`a read is at most 4M (${MAX_PIECE} bytes), not ${size}`);
  const response = await client.request("GET", `drives/${drive}/read/${offset}/${size}`, options);
  const bytes = new Uint8Array(await response.arrayBuffer());
  if (bytes.length > size) {
    throw new OperationError(`GET /drives/${drive}/read/${offset}/${size}: the server sent ${bytes.length} bytes, more than asked`);
  }
  return bytes;
}

export interface WriteOptions extends RequestOptions {
  /** Send the body gzipped (the caller passes the compressed bytes). */
  gzipped?: boolean;
}

/** One write at a drive offset. The body goes with a Content-Length, never chunked. */
export async function writePiece(client: HttpClient, drive: string, offset: number, body: Uint8Array, options: WriteOptions = {}): Promise<void> {
  const headers: Record<string, string> = { "content-type": "application/octet-stream", ...options.headers };
  if (options.gzipped) headers["content-encoding"] = "gzip";
  const response = await client.request("POST", `drives/${drive}/write/${offset}`, { ...options, body, headers });
  await response.body?.cancel();
}

/** True when every byte is zero; scans 32-bit words (about 3 GB/s here, BUN-FACTS.md). */
export function isAllZero(bytes: Uint8Array): boolean {
  // a view that is not 4-byte aligned cannot be read as words: scan it byte by byte
  const words = bytes.byteOffset % 4 === 0 ? Math.floor(bytes.length / 4) : 0;
  if (words > 0) {
    const view = new Uint32Array(bytes.buffer, bytes.byteOffset, words);
    for (let i = 0; i < view.length; i++) if (view[i] !== 0) return false;
  }
  for (let i = words * 4; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}
