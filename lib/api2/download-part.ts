// Where an API 2.0 download continues FILE.part: one run at a time (the pid lock the API 1.0
// download takes, beside the same journal, so a cron run and a manual one cannot both write it),
// the output format (FILE's suffix or --format), and the drive byte to ask for first: a raw .part
// resumes from its size, a compressed one from its journal's last durable point.
import { existsSync, rmSync, statSync } from "node:fs";
import { basename } from "node:path";
import type { Context } from "../context.ts";
import { messageOf, OperationError } from "../errors.ts";
import { journalPath } from "../chunks/journal.ts";
import { RunLock } from "../chunks/lock.ts";
import type { DownloadRequest, OutputFormat } from "../transfer.ts";
import { formatOfName } from "../formats/output-format.ts";
import { resumePointOf } from "../formats/compressed-journal.ts";
import { PIECE_TARGET, type ResumePoint } from "../formats/compressed-output.ts";

export interface PartPlan {
  format: OutputFormat;
  /** The drive byte to ask for first (0: from the start). */
  from: number;
  /** A compressed .part's point to go on from, with the drive size it was started for. */
  point?: ResumePoint & { size: number };
  journalFile: string;
  lock: RunLock;
}

function fileSize(path: string): number {
  try {
    const info = statSync(path);
    return info.isFile() ? info.size : 0;
  } catch {
    return 0;
  }
}

/** Lock FILE.part for this run and say where it goes on; the caller releases `lock`. */
export function planPart(ctx: Context, request: DownloadRequest, path: string): PartPlan {
  const part = `${path}.part`;
  const journalFile = journalPath(ctx.cwd, `download\0${request.drive}\0${path}`);
  const lock = RunLock.acquire(journalFile, `a download into ${basename(part)}`);
  try {
    const format = request.format ?? formatOfName(path);
    if (format !== "raw") {
      const point = resumePointOf(journalFile, part, { file: path, drive: request.drive, format, pieceSize: PIECE_TARGET });
      if (!point && fileSize(part) > 0) ctx.log.warn(`${basename(part)} exists without a record of what it holds: starting it over`);
      return { format, from: point?.driveBytes ?? 0, point, journalFile, lock };
    }
    if (existsSync(journalFile)) {
      // another kind of download's .part (API 1.0's is full-size with holes, a compressed one is
      // not the drive's bytes): resuming from its size would be wrong, so it goes first, then its journal
      if (fileSize(part) > 0) ctx.log.warn(`${basename(part)} was left by another kind of download: starting it over`);
      rmSync(part, { force: true });
      rmSync(journalFile, { force: true });
      return { format, from: 0, journalFile, lock };
    }
    return { format, from: fileSize(part), journalFile, lock };
  } catch (error) {
    lock.release();
    throw error instanceof OperationError ? error : new OperationError(`cannot prepare ${part}: ${messageOf(error)}`);
  }
}
