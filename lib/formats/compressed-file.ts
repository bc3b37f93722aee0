// A local file as a destination, compressed (.gz / .zst): each chunk is read straight into its place
// in a piece of the ordered compressed writer (compressed-output.ts), pieces compressed several at
// once and appended in order; FILE.part is renamed to FILE only when every byte of the disk went
// in. Its own journal of durable points (compressed-journal.ts) lets a rerun cut the .part back to
// the last one and go on from there.
import { closeSync, fstatSync } from "node:fs";
import { basename } from "node:path";
import type { Chunk, Destination, Opened, RunStats } from "../chunks/endpoints.ts";
import { evenGrid, type Grid } from "../chunks/grid.ts";
import { messageOf, OperationError } from "../errors.ts";
import { exists, publishPart } from "../files.ts";
import { humanBytes } from "../size.ts";
import { CompressedJournal, resumePointOf } from "./compressed-journal.ts";
import { CompressedOutput, compressionWindow, pieceSizeFor, type ResumePoint } from "./compressed-output.ts";
import { compressedSummary, type CompressedFormat } from "./output-format.ts";
import { FileDestination, type FileDestinationOptions } from "./file-destination.ts";

export interface CompressedFileOptions extends FileDestinationOptions {
  format: CompressedFormat;
  /** The most chunks read at once: the output's room holds them on top of the pieces being compressed (a piece holds a whole number of chunks). */
  window: number;
}

export class CompressedFileDestination extends FileDestination<CompressedFileOptions> implements Destination {
  readonly grid: Grid;
  private output?: CompressedOutput;
  private fd?: number;
  private journal?: CompressedJournal;
  private end?: ResumePoint;
  /** Durable points recorded in this run. */
  private durable = 0;

  constructor(options: CompressedFileOptions) {
    super(options);
    this.grid = evenGrid(options.size, options.chunk);
  }

  async open(journalFile: string): Promise<Opened> {
    const { ctx, path, size, chunk, format, from, window } = this.options;
    const download = { file: path, drive: from.id, size, format, pieceSize: pieceSizeFor(chunk) };
    const point = resumePointOf(journalFile, this.part, download);
    if (point)
      ctx.log.info(
        `resuming the download of ${from.shown} into ${basename(this.part)} at ${humanBytes(point.driveBytes)} of ${humanBytes(size)}`,
      );
    else if (await exists(this.part))
      ctx.log.warn(`${basename(this.part)} exists without a record of what it holds: starting it over`);
    const { fd, journal } = CompressedJournal.start(journalFile, this.part, download, point);
    this.fd = fd;
    this.journal = journal;
    this.output = new CompressedOutput({
      fd,
      part: this.part,
      format,
      size,
      pieceSize: download.pieceSize,
      // room for the reads in flight on top of the pieces being compressed, so compression never lowers --concurrency
      window: Math.ceil((window * chunk) / download.pieceSize) + compressionWindow(),
      start: point,
      onDurable: (at) => {
        journal.record(at);
        this.durable++;
      },
    });
    const made = point === undefined;
    return {
      done: new Set(),
      // a point is a piece boundary (a whole number of chunks) or the disk's end
      from: Math.ceil((point?.driveBytes ?? 0) / chunk),
      knownZero: false,
      record: () => undefined,
      close: async () => {
        await this.close();
        this.discardIfEmpty(made, this.durable, () => journal.remove());
      },
      remove: () => journal.remove(),
    };
  }

  /** Whole pieces still go in and are recorded (the rerun starts after them); then the file is closed. */
  private async close(): Promise<void> {
    const fd = this.fd;
    this.fd = undefined;
    if (fd === undefined) return;
    await this.output?.stop().catch(() => undefined);
    this.journal?.close();
    closeSync(fd);
  }

  room(chunk: Pick<Chunk, "start" | "length">, signal: AbortSignal): Promise<Uint8Array> {
    return (this.output as CompressedOutput).slot(chunk.start, chunk.length, signal);
  }

  async write(chunk: Chunk): Promise<void> {
    (this.output as CompressedOutput).filled(chunk.start, chunk.length);
  }

  async finish(): Promise<string> {
    const { size, path, force } = this.options;
    const output = this.output as CompressedOutput;
    try {
      this.end = await output.finish();
      if (this.end.driveBytes !== size || fstatSync(this.fd as number).size !== this.end.partLength)
        throw new OperationError(`${this.part} holds ${this.end.driveBytes} of the disk's ${size} bytes`);
    } catch (error) {
      await this.close();
      throw new OperationError(`${this.what()} stopped: ${messageOf(error)}; ${this.resumeHint()}`);
    }
    closeSync(this.fd as number);
    this.fd = undefined;
    this.journal?.close();
    await publishPart(this.part, path, force);
    return path;
  }

  summary(stats: RunStats): string {
    const { size, path, format, from } = this.options;
    const length = this.end?.partLength ?? 0;
    return (
      `downloaded ${from.shown} (${humanBytes(size)}) to ${path} in ${stats.seconds.toFixed(1)} s, ${compressedSummary(format, length, size, this.output?.levels)}` +
      `${stats.retries ? `, ${stats.retries} retries` : ""}`
    );
  }
}
