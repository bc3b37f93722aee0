// The image being read by a chunked upload: a regular file or a block device, never held in
// memory; for regular files, a map of where the data is so that holes go unread.
import { readFileSync, statSync, type Stats } from "node:fs";
import { open, stat, type FileHandle } from "node:fs/promises";
import { OperationError, UsageError } from "../errors.ts";
import { dataMapOf, deviceSize, type DataMap } from "./holes.ts";

/** How an image is stored: as its own bytes, or encoded (decoded on the fly as it is read). */
export type ImageFormat = "raw" | "gzip" | "zstd" | "qcow2";

export interface ImageSource {
  /** The resolved path ("-" for stdin): part of the resume journal's identity. */
  path: string;
  /** Bytes of the decoded image (a drive of this size holds it). */
  size: number;
  mtimeMs: number;
  isDevice: boolean;
  format: ImageFormat;
  /**
   * Reads must come in ascending, non-overlapping order (a decompressed stream cannot seek back;
   * bytes between two reads are decoded and dropped). Callers issue each read before their first
   * await, in chunk order, so that parallel lanes still ask in order.
   */
  sequential: boolean;
  /** The raw file's descriptor, read straight into the socket by the 2.0 POSTs; undefined for decoded images. */
  fd?: number;
  /** Opens the same image again from its start (--verify's second pass); undefined when it cannot (stdin). */
  reopen?(): Promise<ImageSource>;
  /** Where the data is (raw files with SEEK_DATA, qcow2's allocated clusters): lets holes go unread. */
  dataMap?: DataMap;
  /** Fill `buffer[0, length)` with the image's bytes at `position`. */
  read(buffer: Uint8Array, length: number, position: number): Promise<void>;
  close(): Promise<void>;
}

async function fillFrom(
  handle: FileHandle,
  path: string,
  buffer: Uint8Array,
  length: number,
  position: number,
): Promise<void> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(buffer, done, length - done, position + done);
    if (bytesRead === 0)
      throw new OperationError(
        `${path}: the image ended at byte ${position + done}, before its size (it shrank while being read?)`,
      );
    done += bytesRead;
  }
}

/** stat() of an image the user named: a UsageError (status 2) when it is missing or cannot be looked at. */
export async function statImage(path: string, shown: string): Promise<Stats> {
  try {
    return await stat(path);
  } catch (error) {
    const code = (error as { code?: string }).code;
    throw new UsageError(code === "ENOENT" ? `${shown}: no such file` : `${shown}: ${(error as Error).message}`);
  }
}

/** Open an image for reading: a regular file or a block device, never held in memory. */
export async function openImage(path: string, shown = path): Promise<ImageSource> {
  const info = await statImage(path, shown);
  if (!info.isFile() && !info.isBlockDevice()) throw new UsageError(`${shown}: not a regular file or a block device`);
  let handle: FileHandle;
  try {
    handle = await open(path, "r");
  } catch (error) {
    throw new OperationError(`cannot open ${shown}: ${(error as Error).message}`);
  }
  let size = info.size;
  if (info.isBlockDevice()) {
    const measured = await deviceSize(handle.fd);
    if (measured === undefined) {
      await handle.close();
      throw new OperationError(`${shown}: cannot tell the size of this block device`);
    }
    size = measured;
  }
  const dataMap = info.isFile() ? await dataMapOf(handle.fd, size) : undefined;
  return {
    path,
    size,
    mtimeMs: Math.floor(info.mtimeMs),
    isDevice: info.isBlockDevice(),
    format: "raw",
    sequential: false,
    fd: handle.fd,
    reopen: () => openImage(path, shown),
    dataMap,
    read: (buffer, length, position) => fillFrom(handle, shown, buffer, length, position),
    close: () => handle.close(),
  };
}

/** Bytes in a regular file or a block device (whose stat size is 0: ask sysfs). */
export function imageSize(path: string): number {
  let info: ReturnType<typeof statSync>;
  try {
    info = statSync(path);
  } catch (error) {
    const code = (error as { code?: string }).code;
    throw new UsageError(
      `cannot read ${path}: ${code === "ENOENT" ? "no such file" : ((error as Error).message ?? code)}`,
    );
  }
  if (info.isFile()) return info.size;
  if (info.isBlockDevice()) {
    const rdev = Number(info.rdev);
    // glibc's gnu_dev_major / gnu_dev_minor
    const major = ((rdev >>> 8) & 0xfff) | (Math.floor(rdev / 2 ** 32) & ~0xfff);
    const minor = (rdev & 0xff) | ((rdev >>> 12) & ~0xff);
    try {
      return Number(readFileSync(`/sys/dev/block/${major}:${minor}/size`, "utf8").trim()) * 512;
    } catch {
      throw new UsageError(`cannot tell the size of block device ${path} (no /sys/dev/block/${major}:${minor}/size)`);
    }
  }
  throw new UsageError(`${path} is not a regular file or a block device`);
}
