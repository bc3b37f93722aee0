// Pieces shared by the chunked engines: the image being read (file or block device), a fixed
// set of chunk buffers (memory stays at concurrency x chunk whatever the image size), zero
// detection at 4 KiB block granularity, a bounded parallel runner, and Ctrl-C handling.
import { open, stat, type FileHandle } from "node:fs/promises";
import { isAllZero, MAX_PIECE } from "./drives.ts";
import { ApiError, OperationError, UsageError } from "./errors.ts";
import type { HttpClient } from "./http.ts";
import { dataMapOf, deviceSize, type DataMap } from "./seek.ts";

/** Filesystems allocate in 4 KiB blocks: zero runs this size (and aligned) can stay holes. */
export const BLOCK = 4096;

export interface ImageSource {
  path: string;
  size: number;
  mtimeMs: number;
  isDevice: boolean;
  /** Where the data is (regular files with SEEK_DATA only): lets holes go unread. */
  dataMap?: DataMap;
  /** Fill `buffer[0, length)` with the image's bytes at `position`. */
  read(buffer: Uint8Array, length: number, position: number): Promise<void>;
  close(): Promise<void>;
}

async function fillFrom(handle: FileHandle, path: string, buffer: Uint8Array, length: number, position: number): Promise<void> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(buffer, done, length - done, position + done);
    if (bytesRead === 0) throw new OperationError(`${path}: the image ended at byte ${position + done}, before its size (it shrank while being read?)`);
    done += bytesRead;
  }
}

/** Open an image for reading: a regular file or a block device, never held in memory. */
export async function openImage(path: string, shown = path): Promise<ImageSource> {
  let info;
  try {
    info = await stat(path);
  } catch (error) {
    const code = (error as { code?: string }).code;
    throw new UsageError(code === "ENOENT" ? `${shown}: no such file` : `${shown}: ${(error as Error).message}`);
  }
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
    dataMap,
    read: (buffer, length, position) => fillFrom(handle, shown, buffer, length, position),
    close: () => handle.close(),
  };
}

/** A fixed number of equal buffers, taken and given back by the tasks in flight. */
export class BufferPool {
  private readonly free: Uint8Array[] = [];
  constructor(private readonly size: number) {}
  take(): Uint8Array {
    return this.free.pop() ?? new Uint8Array(this.size);
  }
  give(buffer: Uint8Array): void {
    this.free.push(buffer);
  }
}

/**
 * Ranges [start, end) of `bytes` (which sit at `position` in the file) that hold any non-zero byte,
 * cut on the absolute 4 KiB grid and merged, so that what is left out can stay a hole.
 */
export function dataRuns(bytes: Uint8Array, position: number, block = BLOCK): Array<[number, number]> {
  const runs: Array<[number, number]> = [];
  // one word view for the whole piece when it is aligned (pool buffers and 4-byte aligned offsets are)
  const words = bytes.byteOffset % 4 === 0 && position % 4 === 0 && block % 4 === 0 ? new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.length >>> 2) : undefined;
  let at = 0;
  while (at < bytes.length) {
    const end = Math.min(bytes.length, at + block - ((position + at) % block));
    let zero = true;
    if (words) {
      const wordEnd = end >>> 2;
      for (let i = at >>> 2; i < wordEnd; i++) {
        if (words[i] !== 0) {
          zero = false;
          break;
        }
      }
      for (let i = wordEnd * 4; zero && i < end; i++) if (bytes[i] !== 0) zero = false;
    } else {
      zero = isAllZero(bytes.subarray(at, end));
    }
    if (!zero) {
      const last = runs[runs.length - 1];
      if (last && last[1] === at) last[1] = end;
      else runs.push([at, end]);
    }
    at = end;
  }
  return runs;
}

/**
 * Run `task` for each item with at most `limit` at once. The first failure stops new starts
 * (`stopped()` turns true, `onFailure` runs, e.g. to abort requests in flight); the ones running
 * finish or fail, then the first failure is thrown.
 */
export async function runLimited<T>(
  items: Iterable<T>,
  limit: number,
  task: (item: T) => Promise<void>,
  onFailure: (error: unknown) => void,
  stopped: () => boolean,
  /** Lanes wanted now (at most `limit`); a lane past it finishes its item and retires for good. */
  lanes?: () => number,
): Promise<void> {
  const iterator = items[Symbol.iterator]();
  let failure: { error: unknown } | undefined;
  const lane = async (_: unknown, index: number) => {
    for (;;) {
      if (failure || stopped()) return;
      if (index > 0 && lanes && index >= lanes()) return;
      const next = iterator.next();
      if (next.done) return;
      try {
        await task(next.value);
      } catch (error) {
        if (!failure) {
          failure = { error };
          onFailure(error);
        }
        return;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, limit) }, lane));
  if (failure) throw failure.error;
}

/**
 * Ctrl-C and SIGTERM call `stop` (which lets the run end cleanly, the journal written, the
 * resume hint shown); a second signal exits at once. Returns the function that removes the handlers.
 */
/** The chunk grid of `size` bytes from `offset`: chunk indices and the byte range each covers. */
export function chunkGrid(size: number, chunk: number, offset: number) {
  const count = Math.ceil(size / chunk);
  const first = Math.floor(offset / chunk);
  const pieceOf = (index: number) => [Math.max(index * chunk, offset), Math.min((index + 1) * chunk, size)] as const;
  /** Bytes already done: all before the offset, and the finished chunks after it. */
  const doneBytes = (finished: Iterable<number>) => {
    let done = offset;
    for (const index of finished) {
      if (index < first) continue;
      const [start, end] = pieceOf(index);
      done += end - start;
    }
    return done;
  };
  return { count, first, pieceOf, doneBytes };
}

/** An AbortController that Ctrl-C or SIGTERM aborts; `interrupted()` names the signal that came. */
export function abortOnInterrupt(): { controller: AbortController; interrupted: () => string | undefined; remove: () => void } {
  const controller = new AbortController();
  let received: string | undefined;
  const remove = onInterrupt((signal) => {
    received = signal;
    controller.abort(new OperationError(`interrupted (${signal})`));
  });
  return { controller, interrupted: () => received, remove };
}

export function onInterrupt(stop: (signal: string) => void): () => void {
  let seen = false;
  const handler = (signal: NodeJS.Signals) => {
    if (seen) process.exit(130);
    seen = true;
    stop(signal);
  };
  process.on("SIGINT", handler);
  process.on("SIGTERM", handler);
  return () => {
    process.off("SIGINT", handler);
    process.off("SIGTERM", handler);
  };
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
  if (length > MAX_PIECE || length > buffer.length) throw new UsageError(`a read is at most 4M (${MAX_PIECE} bytes), not ${length}`);
  const path = `drives/${drive}/read/${position}/${length}`;
  const shown = `/${path}`;
  const response = await client.request("GET", path, { signal });
  let got = 0;
  const reader = response.body?.getReader();
  if (reader) {
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        if (got + value.length > length) {
          await reader.cancel().catch(() => undefined);
          throw new ApiError("protocol", `the server sent more than the ${length} bytes asked`, response.status, "GET", shown, false);
        }
        buffer.set(value, got);
        got += value.length;
      }
    } catch (error) {
      if (error instanceof ApiError || signal?.aborted) throw error;
      throw new ApiError("network", `answer cut after ${got} of ${length} bytes: ${(error as Error).message}`, response.status, "GET", shown, true);
    } finally {
      reader.releaseLock();
    }
  }
  if (got !== length) throw new ApiError("protocol", `short answer: ${got} of ${length} bytes`, response.status, "GET", shown, true);
  return buffer.subarray(0, length);
}
