// What the local file destinations (sparse-file.ts, compressed-file.ts) share: FILE.part beside the
// final FILE, the disk they receive, and the words their stop lines and progress use.
import { existsSync, rmSync } from "node:fs";
import { basename } from "node:path";
import type { Context } from "../context.ts";
import type { Chunk, RunStats } from "../chunks/endpoints.ts";

/** A download's resume record and run lock: one per disk and output file, whichever API reads it. */
export function downloadRecord(id: string, path: string): { identity: string; name: string } {
  return { identity: `download\0${id}\0${path}`, name: `a download into ${basename(path)}.part` };
}

export interface FileDestinationOptions {
  ctx: Context;
  /** The final file (absolute) and the disk it receives: "drive X" in messages, its id in the journal. */
  path: string;
  from: { shown: string; id: string };
  size: number;
  /** Bytes per chunk read. */
  chunk: number;
  /** Replace an existing FILE. */
  force: boolean;
}

export abstract class FileDestination<Options extends FileDestinationOptions = FileDestinationOptions> {
  /** Where the bytes go until the file is whole. */
  protected readonly part: string;

  constructor(protected readonly options: Options) {
    this.part = `${options.path}.part`;
  }

  retryName(chunk: Chunk): string {
    return `write at ${chunk.start}`;
  }

  what(): string {
    return `download of ${this.options.from.shown}`;
  }

  resumeHint(): string {
    // a run that stopped before it kept anything removed what it made (see discardIfEmpty)
    if (!existsSync(this.part)) return "nothing was kept: run the same command again";
    return `${basename(this.part)} is kept: rerun the same command in ${this.options.ctx.cwd} to resume`;
  }

  /** A stopped run that made FILE.part and kept nothing in it leaves nothing behind: no .part, no journal. */
  protected discardIfEmpty(made: boolean, kept: number, removeRecord: () => void): void {
    if (!made || kept > 0) return;
    removeRecord();
    rmSync(this.part, { force: true });
  }

  note(stats: RunStats): string | undefined {
    return stats.retries ? `${stats.retries} retries` : undefined;
  }
}
