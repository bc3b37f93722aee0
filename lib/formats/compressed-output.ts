// The compressed writer of a download: the drive's bytes, cut into pieces, each compressed on its
// own (a gzip member or zstd frame) several at once off the main thread, appended to FILE.part in
// the drive's order. A window of pieces bounds the memory: a reader asking for room beyond it
// waits until the first piece in it is written. A piece that completes while the compressors are
// all busy is compressed at the fast level, so compression keeps up with a fast link instead of
// holding the download back; over a slower link every piece gets the normal level. Once in a while (at most once a second, and when
// the run stops) an fdatasync in the background makes what was written durable, and only then is
// it reported as a resume point: the drive bytes the .part holds and the .part's length there.
import { fdatasync } from "node:fs";
import { availableParallelism } from "node:os";
import { messageOf, OperationError } from "../errors.ts";
import { writeAllAt } from "../files.ts";
import { compressPiece } from "./piece-compress.ts";
import type { CompressedFormat } from "./output-format.ts";

/** Where a compressed .part stands: drive bytes it holds (a whole number of pieces, or all) and its length. */
export interface ResumePoint {
  driveBytes: number;
  partLength: number;
}

/**
 * Drive bytes per piece, about this many: a piece costs one compression call and one write, and
 * the window of pieces (with the compressors' output buffers) is most of the memory: 4 MiB pieces
 * held less than 8 MiB ones for hardly more output (bench/RESULTS-formats.md, "Figures the code
 * relies on"; zstd's window at level 3 is 2 MiB: little is lost at the cuts).
 */
export const PIECE_TARGET = 4 * 1024 * 1024;

/** The piece size for reads of `chunk` bytes: a whole number of them (each read fills one piece), about PIECE_TARGET. */
export function pieceSizeFor(chunk: number): number {
  return chunk * Math.max(1, Math.round(PIECE_TARGET / chunk));
}

/** Pieces held at once by default: one compressing per core, and two being filled or waiting their turn. */
export function compressionWindow(): number {
  return Math.min(8, Math.max(3, availableParallelism() + 2));
}

/** Resume points are made durable at most this often: an fdatasync waits for the disk, and a second's work is cheap to redo. */
const SYNC_INTERVAL_MS = 1000;

export interface CompressedOutputOptions {
  /** FILE.part, open for writing; its bytes up to `start.partLength` are kept. */
  fd: number;
  /** FILE.part's path, for messages. */
  part: string;
  format: CompressedFormat;
  /** Bytes of the drive. */
  size: number;
  pieceSize: number;
  /** Where this run goes on from (a resume); default the start. */
  start?: ResumePoint;
  /** Pieces held at once (filling, compressing, waiting to be written); default compressionWindow(). */
  window?: number;
  /**
   * Compressions in flight from which the next piece takes the fast level; default the cores but
   * one (the download itself needs one), at least 1.
   */
  busyAt?: number;
  /** A resume point is durable: record it. */
  onDurable?(point: ResumePoint): void;
}

interface Piece {
  buffer: Uint8Array;
  /** Drive bytes in it (the last piece may be short). */
  length: number;
  filled: number;
  /** Its member / frame, as the byte arrays to write in order. */
  compressed?: Uint8Array[];
}

export class CompressedOutput {
  private readonly pieces = new Map<number, Piece>();
  private readonly free: Uint8Array[] = [];
  private readonly window: number;
  private readonly busyAt: number;
  private compressed = 0;
  private hurried = 0;
  /** The first piece not written yet. */
  private next: number;
  private driveBytes: number;
  private partLength: number;
  private durable: ResumePoint;
  private compressing = 0;
  private syncing = false;
  private lastSync = -Infinity;
  private failure: Error | undefined;
  private stopping = false;
  private wakers: Array<() => void> = [];

  constructor(private readonly options: CompressedOutputOptions) {
    const start = options.start ?? { driveBytes: 0, partLength: 0 };
    if (start.driveBytes !== options.size && start.driveBytes % options.pieceSize !== 0) {
      throw new OperationError(
        `internal: a compressed download cannot go on from byte ${start.driveBytes}, not a piece boundary`,
      );
    }
    this.window = options.window ?? compressionWindow();
    this.busyAt = options.busyAt ?? Math.max(1, availableParallelism() - 1);
    this.next = Math.ceil(start.driveBytes / options.pieceSize);
    this.driveBytes = start.driveBytes;
    this.partLength = start.partLength;
    this.durable = { ...start };
  }

  /** Drive bytes written (compressed) to the .part so far. */
  get covered(): number {
    return this.driveBytes;
  }

  /** The .part's length so far. */
  get length(): number {
    return this.partLength;
  }

  /** Pieces compressed in this run, and how many of them at the fast level. */
  get levels(): { pieces: number; fast: number } {
    return { pieces: this.compressed, fast: this.hurried };
  }

  /**
   * Room for the drive's bytes [start, start + length), inside one piece; waits while that piece
   * is beyond the window. Fill it, then call `filled`. Rejects when the output failed or stopped,
   * or when `signal` aborts the wait.
   */
  async slot(start: number, length: number, signal?: AbortSignal): Promise<Uint8Array> {
    const { pieceSize, size } = this.options;
    const index = Math.floor(start / pieceSize);
    const pieceEnd = Math.min(size, (index + 1) * pieceSize);
    if (length <= 0 || start < this.next * pieceSize || start + length > pieceEnd) {
      throw new OperationError(`internal: drive bytes ${start}+${length} are not room in one piece still to write`);
    }
    // bounded: each wake is a piece written, a failure or a stop; an abort ends the wait
    while (index >= this.next + this.window) {
      this.check();
      await this.changed(signal);
    }
    this.check();
    let piece = this.pieces.get(index);
    if (!piece) {
      piece = { buffer: this.free.pop() ?? new Uint8Array(pieceSize), length: pieceEnd - index * pieceSize, filled: 0 };
      this.pieces.set(index, piece);
    }
    const offset = start - index * pieceSize;
    return piece.buffer.subarray(offset, offset + length);
  }

  /** `length` bytes from `start` were put where `slot` said; a full piece goes to be compressed. */
  filled(start: number, length: number): void {
    this.check();
    const index = Math.floor(start / this.options.pieceSize);
    const piece = this.pieces.get(index);
    if (!piece || piece.filled + length > piece.length)
      throw new OperationError(`internal: drive bytes ${start}+${length} were not asked for`);
    piece.filled += length;
    if (piece.filled === piece.length) this.compress(piece);
  }

  /** Everything is written: waits for the last pieces, returns where the .part ends. */
  async finish(): Promise<ResumePoint> {
    // bounded: each wake is a piece written or a sync ended
    while (this.driveBytes < this.options.size || this.syncing) {
      this.check();
      if (this.compressing === 0 && !this.syncing) {
        throw new OperationError(
          `internal: ${this.options.size - this.driveBytes} bytes of the drive never reached the compressed output`,
        );
      }
      await this.changed();
    }
    this.check();
    if (this.options.size === 0 && this.partLength === 0) {
      // an empty file is not a valid .gz or .zst: an empty drive is one empty member or frame
      for (const bytes of await compressPiece(this.options.format, new Uint8Array(0))) {
        writeAllAt(this.options.fd, bytes, this.partLength);
        this.partLength += bytes.length;
      }
    }
    return { driveBytes: this.driveBytes, partLength: this.partLength };
  }

  /**
   * The run stops: pieces already whole are still compressed and written, then made durable and
   * reported, so a rerun loses only the pieces that were not complete. Resolves when nothing runs
   * on the file any more (it can be closed); waiting `slot` calls reject.
   */
  async stop(): Promise<ResumePoint> {
    this.stopping = true;
    this.wake();
    // bounded: each wake is a compression or a sync ended
    while (this.compressing > 0 || this.syncing) await this.changed();
    this.syncSoon();
    while (this.syncing) await this.changed();
    return { ...this.durable };
  }

  private check(): void {
    if (this.failure) throw this.failure;
    if (this.stopping) throw new OperationError("the compressed output was stopped");
  }

  private compress(piece: Piece): void {
    const fast = this.compressing >= this.busyAt;
    this.compressed++;
    if (fast) this.hurried++;
    this.compressing++;
    compressPiece(this.options.format, piece.buffer.subarray(0, piece.length), fast).then(
      (compressed) => {
        this.compressing--;
        piece.compressed = compressed;
        this.free.push(piece.buffer);
        this.drain();
      },
      (error) => {
        this.compressing--;
        this.fail(
          new OperationError(`cannot compress the drive's bytes (${this.options.format}): ${messageOf(error)}`),
        );
      },
    );
  }

  /** Append the compressed pieces that are next in order. */
  private drain(): void {
    // bounded: at most `window` pieces are held
    for (
      let piece = this.pieces.get(this.next);
      piece?.compressed && !this.failure;
      piece = this.pieces.get(this.next)
    ) {
      try {
        for (const bytes of piece.compressed) {
          writeAllAt(this.options.fd, bytes, this.partLength);
          this.partLength += bytes.length;
        }
      } catch (error) {
        this.fail(new OperationError(`cannot write ${this.options.part}: ${messageOf(error)}`));
        return;
      }
      this.driveBytes += piece.length;
      this.pieces.delete(this.next);
      this.next++;
    }
    this.syncSoon();
    this.wake();
  }

  /** One fdatasync at a time, at most once an interval: then the point it covers is reported. */
  private syncSoon(): void {
    if (this.syncing || this.failure || this.driveBytes === this.durable.driveBytes) return;
    if (performance.now() - this.lastSync < SYNC_INTERVAL_MS && !this.stopping) return;
    const point = { driveBytes: this.driveBytes, partLength: this.partLength };
    this.syncing = true;
    this.lastSync = performance.now();
    fdatasync(this.options.fd, (error) => {
      this.syncing = false;
      if (error) {
        this.fail(new OperationError(`cannot write ${this.options.part}: ${error.message}`));
      } else {
        this.durable = point;
        try {
          this.options.onDurable?.(point);
        } catch (failure) {
          this.fail(failure as Error);
        }
      }
      this.wake();
    });
  }

  private fail(error: Error): void {
    this.failure ??= error;
    this.wake();
  }

  private wake(): void {
    const wakers = this.wakers;
    this.wakers = [];
    for (const wake of wakers) wake();
  }

  private changed(signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const onAbort = () => reject(signal?.reason);
      signal?.addEventListener("abort", onAbort, { once: true });
      this.wakers.push(() => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      });
    });
  }
}
