// The raw API 2.0 download's body into FILE.part: written at its offsets, all-zero 4 KiB blocks
// left as holes (as sparse as the API 1.0 download), the file's size always the count of bytes
// received, so that a retry or a rerun asks for `Range: bytes=SIZE-`; FILE only on a full count.
import { closeSync, fstatSync, ftruncateSync, openSync, statSync } from "node:fs";
import { rm } from "node:fs/promises";
import type { Progress } from "../context.ts";
import { ApiError, OperationError } from "../errors.ts";
import { publishPart, writeSparse } from "../files.ts";
import { BLOCK } from "../bytes.ts";
import { formatRate, humanBytes } from "../size.ts";
import type { DownloadRequest } from "../transfer.ts";
import type { Watchdog } from "./watchdog.ts";
import { openPipe, pumpThroughPipe } from "./body-pipe.ts";
import type { Target } from "./download-part.ts";
import { bodyFailure } from "./download-retry.ts";

export function partSize(part: string): number {
  try {
    const info = statSync(part);
    return info.isFile() ? info.size : 0;
  } catch {
    return 0;
  }
}

/**
 * Bytes gathered before they are scanned and written: fetch hands the body over in pieces of any
 * size (53 bytes to 256 KiB seen here), zeros are found per whole 4 KiB block, and one positional
 * write per data run of a buffer costs fewer syscalls than one per piece.
 */
const GATHER = 1024 * 1024;

/**
 * Writes a body into FILE.part at its offsets, all-zero 4 KiB blocks left as holes. What a resume
 * relies on: the file's size is always the count of bytes received and written (holes included),
 * so a rerun asks for `Range: bytes=SIZE-`. A buffer's data runs are written before the file is
 * extended over its trailing zeros, so a crash in between leaves a shorter file, never a longer one.
 */
export class SparseWriter {
  private readonly buffer = new Uint8Array(GATHER);
  private fill = 0;
  /** Where the buffer's first byte goes: everything before it is in the file. */
  private start: number;
  /** The first buffer ends on the 4 KiB grid, so later ones start on it (aligned word scans). */
  private limit: number;

  constructor(
    private readonly fd: number,
    from: number,
  ) {
    this.start = from;
    this.limit = GATHER - (from % BLOCK);
  }

  /** Bytes received so far, the buffered ones included. */
  get received(): number {
    return this.start + this.fill;
  }

  /** Bytes in the file (its size). */
  get written(): number {
    return this.start;
  }

  /** Where the next bytes can be read to directly (never empty). */
  space(): Uint8Array {
    return this.buffer.subarray(this.fill, this.limit);
  }

  /** `n` bytes were put into space(). */
  commit(n: number): void {
    this.fill += n;
    if (this.fill === this.limit) this.flush();
  }

  add(chunk: Uint8Array): void {
    let at = 0;
    while (at < chunk.length) {
      const n = Math.min(chunk.length - at, this.limit - this.fill);
      this.buffer.set(n === chunk.length ? chunk : chunk.subarray(at, at + n), this.fill);
      this.fill += n;
      at += n;
      if (this.fill === this.limit) this.flush();
    }
  }

  flush(): void {
    if (this.fill === 0) return;
    const bytes = this.buffer.subarray(0, this.fill);
    const runs = writeSparse(this.fd, bytes, this.start);
    // zeros at the end are not written: extend the file over them, so its size still counts them
    if ((runs[runs.length - 1]?.[1] ?? 0) !== this.fill) ftruncateSync(this.fd, this.start + this.fill);
    this.start += this.fill;
    this.fill = 0;
    this.limit = GATHER;
  }
}

/**
 * Stream the body into FILE.part from byte `from`, zero blocks left as holes; returns the bytes
 * written. A failure leaves the .part holding what arrived (nothing: no .part) and is thrown as
 * what it means for a retry (bodyFailure); `progress` goes on over the run's attempts.
 */
export async function receive(
  response: Response,
  part: string,
  from: number,
  total: number,
  progress: Progress,
  watchdog: Watchdog,
): Promise<number> {
  const started = performance.now();
  let fd: number | undefined;
  let writer: SparseWriter | undefined;
  try {
    // a fresh start (or a restart) truncates whatever an earlier run left: old bytes never show through a hole
    fd = openSync(part, from === 0 ? "w" : "r+", 0o644);
    if (from > 0 && fstatSync(fd).size !== from) throw new OperationError(`${part} changed while resuming`);
    writer = new SparseWriter(fd, from);
    const sink = writer;
    const piece = (length: number) => {
      if (sink.received + length > total)
        throw new OperationError(`the server sent more than the ${total} bytes it announced`);
      watchdog.touch();
    };
    const pipe = await openPipe();
    if (pipe) {
      await pumpThroughPipe(
        response,
        pipe,
        () => sink.space(),
        (n) => {
          piece(n);
          sink.commit(n);
          progress.update(sink.received);
        },
      );
    } else {
      for await (const chunk of response.body ?? new ReadableStream<Uint8Array>()) {
        piece(chunk.length);
        sink.add(chunk);
        progress.update(sink.received);
      }
    }
    writer.flush();
    // a connection closed cleanly before the announced length: a cut like any other
    if (writer.written !== total)
      throw new ApiError({
        kind: "network",
        message: `the answer ended at byte ${writer.written} of ${total}`,
        method: "GET",
        path: "download",
      });
  } catch (error) {
    // what arrived before the cut is right: keep it for the resume
    try {
      writer?.flush();
    } catch {
      // the disk failed too: the file holds what was written before
    }
    const got = writer?.written ?? from;
    if (fd !== undefined) closeSync(fd);
    // a cut before the first byte leaves an empty file: nothing to resume then
    if (got === 0) await rm(part, { force: true });
    throw bodyFailure(error, watchdog);
  }
  const allocated = fstatSync(fd).blocks * 512;
  closeSync(fd);
  const written = writer.written - from;
  progress.finish(
    `downloaded ${humanBytes(writer.written)}${from > 0 ? ` (resumed at ${humanBytes(from)})` : ""} (${formatRate(written, started)}), ` +
      `${humanBytes(allocated)} allocated`,
  );
  return written;
}

/** Rename FILE.part onto FILE only when it holds exactly what the server announced. */
export async function finish(
  target: Target,
  request: DownloadRequest,
  part: string,
  have: number,
  total: number,
): Promise<string> {
  const onDisk = partSize(part);
  if (have !== total || onDisk !== total) {
    throw new OperationError(
      `download of drive ${request.drive} cut short: ${onDisk} of ${total} bytes; ${part} kept: run the same command again to resume`,
    );
  }
  await publishPart(part, target.path, request.force, target.shown);
  // the absolute path, as the API 1.0 engine prints it: usable whatever the caller's folder
  return target.path;
}
