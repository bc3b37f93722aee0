// The two ends of a transfer. A source yields the bytes of a disk (a local image in any format, a
// drive over either API); a destination takes them chunk by chunk on its own grid (a drive over
// either API, a local file, sparse or compressed). The driver (driver.ts) runs one into the other
// and owns what every transfer shares; the ends say only what they are and how to move bytes.
import type { DataMap } from "./holes.ts";
import type { Grid } from "./grid.ts";
import type { ReadBack } from "./verify.ts";

/** A disk to read. */
export interface Source {
  /** Bytes of the disk. */
  size: number;
  /**
   * Reads must come in ascending, non-overlapping order (a decompressed stream, one GET): the
   * driver issues each read in chunk order. Such a source retries its own reads (only it knows
   * where its stream stands).
   */
  sequential: boolean;
  /**
   * Reads cross a network (a drive): a chunk is read whole (in parallel reads of maxRead) before it
   * is written, and the driver retries a read that failed in a way that may pass.
   */
  remote?: boolean;
  /** The most bytes one read may ask for (API 1.0: 4 MiB); undefined: any. */
  maxRead?: number;
  /** Where the data may be: a hole is zeros without reading it. */
  dataMap?: DataMap;
  /** A raw file's descriptor, which a socket POST reads from directly. */
  fd?: number;
  /**
   * Garbage its reads leave (the pieces of an answer's body): bytes between full collections;
   * undefined: none to speak of. The driver collects at the smaller of this and the destination's.
   */
  readonly gcEvery?: number;
  /** Fill `buffer[0, length)` with the disk's bytes at `position`: one try, the driver retries what may pass. */
  read(buffer: Uint8Array, length: number, position: number, signal?: AbortSignal): Promise<void>;
  /** The same disk again from its start (a verify after a sequential read); undefined: it cannot be read again. */
  reopen?(): Promise<Source>;
  /**
   * Every chunk is in: the disk is still the one opened (a drive's size unchanged), else an
   * InputError (the run then abandons what it made, as for a broken image).
   */
  confirm?(signal: AbortSignal): Promise<void>;
  close(): Promise<void>;
}

/** One chunk of the destination's grid, as the driver hands it over. */
export interface Chunk {
  index: number;
  start: number;
  length: number;
  /** Every byte is zero: a hole of the source, or read and scanned so. */
  zero: boolean;
  /**
   * The chunk's bytes when the driver read them. A streaming destination with a local source that
   * can be read anywhere gets none: it reads the source itself as its socket takes the bytes.
   */
  bytes?: Uint8Array;
  /** This attempt has moved `sent` of the chunk's bytes so far (live progress for a long request). */
  moved(sent: number): void;
}

/** What a run of the driver counted, for the destination's progress note and summary. */
export interface RunStats {
  /** Bytes of the disk done before this run (a resume, -o). */
  before: number;
  /** All-zero chunks left out (the destination held zeros there already). */
  skipped: number;
  retries: number;
  seconds: number;
  /** When the chunks began (performance.now()), for rates. */
  started: number;
}

/** Where a destination stands once open: the chunks done before this run, and how each new one is recorded. */
export interface Opened {
  /** The chunks done before this run (a resume). */
  done: ReadonlySet<number>;
  /** Chunks before this one count as done too (a prefix the destination holds: -o, a compressed file's last point). */
  from?: number;
  /**
   * The destination holds zeros wherever nothing was written (a drive this run created, a new
   * sparse file): an all-zero chunk may be left out. Anywhere else zeros are written.
   */
  knownZero: boolean;
  /** Every chunk is there already (a drive whose upload another run finished): what to say instead of sending them. */
  complete?: string;
  /** A chunk went in: record it (synchronously, so that a crash right after cannot lose it). */
  record(index: number): void;
  /** The run stops: release what is held (journal, file); what is recorded stays for a rerun. */
  close(): Promise<void> | void;
  /** The transfer is whole: what it recorded has no more use. */
  remove(): void;
}

/**
 * A disk to write: a drive (API 1.0, API 2.0 chunked or one POST) or a local file. One that takes
 * a single stream in order is a grid of one chunk it streams itself (the one POST: `once`,
 * `streams`), or one that owns the room the chunks are read into and writes them in order from
 * there (a compressed file: `room`, its window bounding how far ahead the chunks may run).
 */
export interface Destination {
  /** The chunk grid it takes (see grid.ts); read once `open` resolved (a prefix found there may move its start). */
  grid: Grid;
  /** Reads a chunk from a local source itself as its socket takes it (API 2.0 POSTs): memory stays a piece per chunk. */
  streams?: boolean;
  /** Wants to know whether a chunk it is given is all zero (API 1.0 sends a cached gzip of zeros). */
  scansZeros?: boolean;
  /** A failed write is never sent again (one POST that creates a drive: a second would make another). */
  once?: boolean;
  /** Garbage a chunk leaves behind for the GC: bytes between full collections (default engine.ts GC_EVERY). */
  gcEvery?: number;
  /**
   * Resolve where the chunks go (the target an interrupted run recorded in `journalFile`, the one
   * given, or a new one) and what is done; called once the run holds its lock.
   */
  open(journalFile: string): Promise<Opened>;
  /**
   * A chunk is starting (called in chunk order, before its bytes are read), with `window` chunks in
   * flight wanted now: e.g. ask for links that far ahead.
   */
  starting?(index: number, signal: AbortSignal, window: number): void;
  /** Room for a chunk's bytes that the destination owns (a piece of a compressed output); else the driver's buffer. */
  room?(chunk: Omit<Chunk, "bytes" | "zero" | "moved">, signal: AbortSignal): Promise<Uint8Array>;
  /** Before the chunks, with the run's abort signal (e.g. a probe of the link). */
  prepare?(signal: AbortSignal): Promise<void>;
  /** Take one chunk: one try, the driver retries what may pass. */
  write(chunk: Chunk, signal: AbortSignal): Promise<void>;
  /** Names a chunk in retry lines: "write at 65536", "chunk 3". */
  retryName(chunk: Chunk): string;
  /** Chunks in flight wanted now, at most (below the run's window); undefined: the window decides. */
  lanes?(): number;
  /** "upload to drive X": the stop line starts with it. */
  what(): string;
  /** How to resume, appended to the stop line. */
  resumeHint(): string;
  /** The whole stop line instead of "WHAT stopped at X of Y: REASON; HINT" (a transfer that cannot be resumed words it its own way). */
  stopLine?(error: unknown, reason: string, done: number, interrupted: string | undefined): string;
  /** The source broke mid-way (damaged, truncated, longer than its size): undo what this run made; the message says what happened. */
  abandon?(failure: Error): Promise<Error>;
  /** A note for the live progress line. */
  note?(stats: RunStats): string | undefined;
  /** Every chunk is in: complete the target (rename the file, wait for the drive); resolves to what the transfer made (the drive, the path). */
  finish(stats: RunStats): Promise<string>;
  /** The summary line, once finished. */
  summary(stats: RunStats): string | Promise<string>;
  /** After the summary, the record gone: wait for the target to settle (a drive the server assembles). */
  settle?(): Promise<void>;
  /** What the transfer made (finish's result), to be read back by --verify; undefined: it cannot be. */
  readBack?(result: string): Promise<ReadBack>;
}
