// A local file as a destination, raw: chunks written at their offsets into FILE.part, zero 4 KiB
// blocks left as holes (the file stays as sparse as the disk), renamed to FILE only when complete.
// A journal of finished chunks lets a rerun resume the .part (or the vendor tool's -o does, without one).
import { open, stat, type FileHandle } from "node:fs/promises";
import { basename } from "node:path";
import type { Chunk, Destination, Opened, RunStats } from "../chunks/endpoints.ts";
import { evenGrid, type Grid } from "../chunks/grid.ts";
import { Journal } from "../chunks/journal.ts";
import { BufferPool, dataRuns } from "../bytes.ts";
import { OperationError } from "../errors.ts";
import { exists, publishPart, writeAllAt, writeSparse } from "../files.ts";
import { humanBytes } from "../size.ts";
import { FileDestination, type FileDestinationOptions } from "./file-destination.ts";

export interface SparseFileOptions extends FileDestinationOptions {
  /** Start at this byte (the vendor tool's -o): FILE.part holds the disk's bytes before it. */
  offset?: number;
}

export class SparseFileDestination extends FileDestination<SparseFileOptions> implements Destination {
  readonly grid: Grid;
  /** Chunks are written from the driver's pooled buffers: no garbage of its own (its source may leave some). */
  readonly gcEvery = Number.POSITIVE_INFINITY;
  private handle?: FileHandle;
  private resuming = false;
  /** Chunks written as holes entirely (all zero) in this run. */
  private holes = 0;
  /** For reading back what an interrupted run left in FILE.part. */
  private readonly spare: BufferPool;

  constructor(options: SparseFileOptions) {
    super(options);
    this.grid = evenGrid(options.size, options.chunk, options.offset ?? 0);
    this.spare = new BufferPool(options.chunk);
  }

  async open(journalFile: string): Promise<Opened> {
    const { ctx, path, size, chunk, from, offset } = this.options;
    const key = { kind: "download" as const, file: path, size, chunk, drive: from.id };
    let journal = Journal.load(journalFile);
    const partExists = await exists(this.part);
    if (journal && !(journal.matches(key) && partExists)) journal = undefined;
    // an existing .part is kept when the journal says what it holds, or when -o says so (the vendor way)
    this.resuming = partExists && (journal !== undefined || offset !== undefined);
    if (partExists && !this.resuming)
      ctx.log.warn(`${basename(this.part)} exists without a record of what it holds: starting it over`);
    // the .part first: a folder that does not exist must not leave a journal behind
    try {
      this.handle = await open(this.part, this.resuming ? "r+" : "w+", 0o644);
      // the full size at once: everything not written stays a hole
      await this.handle.truncate(size);
    } catch (error) {
      throw new OperationError(`cannot write ${this.part}: ${(error as Error).message}`);
    }
    if (journal)
      ctx.log.info(
        `resuming the download of ${from.shown} into ${basename(this.part)}: ${journal.done.size} chunks already done`,
      );
    try {
      journal ??= Journal.create(journalFile, { v: 1, ...key });
    } catch (error) {
      await this.close();
      throw error;
    }
    const record = journal;
    const made = !this.resuming;
    let kept = record.done.size;
    return {
      // -o (or a kept .part) at the disk's end: nothing left to move
      complete:
        offset === size && this.resuming ? `${basename(this.part)} already holds all of ${from.shown}` : undefined,
      done: record.done,
      // a new .part is all holes; a resumed one may hold stale bytes where this run writes zeros
      knownZero: !this.resuming,
      record: (index) => {
        record.markDone(index);
        kept++;
      },
      close: async () => {
        record.close();
        await this.close();
        this.discardIfEmpty(made, kept, () => record.remove());
      },
      remove: () => record.remove(),
    };
  }

  private async close(): Promise<void> {
    const handle = this.handle;
    this.handle = undefined;
    await handle?.close().catch(() => undefined);
  }

  async write(chunk: Chunk): Promise<void> {
    const fd = (this.handle as FileHandle).fd;
    const runs = chunk.bytes ? writeSparse(fd, chunk.bytes, chunk.start) : [];
    if (this.resuming) await this.zeroStale(chunk, runs);
    if (runs.length === 0) this.holes++;
  }

  /** A hole left by this chunk may hold stale bytes from a run that stopped mid-chunk: zero what is not zero. */
  private async zeroStale(chunk: Chunk, runs: Array<[number, number]>): Promise<void> {
    const handle = this.handle as FileHandle;
    const existing = this.spare.take();
    try {
      let at = 0;
      for (const [from, to] of [...runs, [chunk.length, chunk.length] as const]) {
        // bounded by the chunk: each gap is read in pieces of at most the chunk size
        for (let gap = at; gap < from; ) {
          const want = Math.min(from - gap, existing.length);
          const { bytesRead } = await handle.read(existing, 0, want, chunk.start + gap);
          for (const [a, b] of dataRuns(existing.subarray(0, bytesRead), chunk.start + gap))
            writeAllAt(handle.fd, new Uint8Array(b - a), chunk.start + gap + a);
          gap += want;
        }
        at = to;
      }
    } finally {
      this.spare.give(existing);
    }
  }

  // no fsync at the end: FILE.part and the rename guard against a stopped or crashed run, as with
  // curl or wget; waiting for the disk to write back a whole drive was much of the time on loopback
  // (bench/RESULTS.md, "Download without fsync") and is the page cache's business
  async finish(): Promise<string> {
    await this.close();
    await publishPart(this.part, this.options.path, this.options.force);
    return this.options.path;
  }

  async summary(stats: RunStats): Promise<string> {
    const { path, size, from } = this.options;
    const allocated = (await stat(path)).blocks * 512;
    const holes = this.holes + stats.skipped;
    return (
      `downloaded ${from.shown} (${humanBytes(size)}) to ${path} in ${stats.seconds.toFixed(1)} s, ${humanBytes(allocated)} allocated` +
      `${holes ? `, ${holes} zero chunks left as holes` : ""}${stats.retries ? `, ${stats.retries} retries` : ""}`
    );
  }
}
