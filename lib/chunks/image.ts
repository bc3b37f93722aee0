// The image being read by a chunked upload: a regular file or a block device, never held in
// memory; for regular files, a map of where the data is so that holes go unread.
import type { Stats } from "node:fs";
import { open, stat, type FileHandle } from "node:fs/promises";
import { OperationError, UsageError } from "../errors.ts";
import type { Source } from "./endpoints.ts";
import { dataMapOf, deviceSize } from "./holes.ts";

/** How an image is stored: as its own bytes, or encoded (decoded on the fly as it is read). */
export type ImageFormat = "raw" | "gzip" | "zstd" | "qcow2";

/** An image file (or stdin) as a transfer's source: what the source interface says, and where it comes from. */
export interface ImageSource extends Source {
  /** The resolved path ("-" for stdin): part of the resume journal's identity. */
  path: string;
  mtimeMs: number;
  isDevice: boolean;
  format: ImageFormat;
  /** Opens the same image again from its start (--verify's second pass); undefined when it cannot (stdin). */
  reopen?(): Promise<ImageSource>;
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
