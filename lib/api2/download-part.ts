// Where an API 2.0 download continues FILE.part: one run at a time (the pid lock the API 1.0
// download takes, beside the same journal, so a cron run and a manual one cannot both write it),
// the output format (FILE's suffix or --format), and the drive byte to ask for first: a raw .part
// resumes from its size, a compressed one from its journal's last durable point. Planned once per
// run (the lock), and again before each retry within the run, as a rerun would see the .part.
import { existsSync, rmSync, statSync } from "node:fs";
import { basename } from "node:path";
import type { Context } from "../context.ts";
import { messageOf, OperationError } from "../errors.ts";
import { journalPath } from "../chunks/journal.ts";
import { RunLock } from "../chunks/lock.ts";
import type { DownloadRequest, OutputFormat } from "../transfer.ts";
import { formatOfName } from "../formats/output-format.ts";
import { resumePointOf } from "../formats/compressed-journal.ts";
import { downloadRecord } from "../formats/file-destination.ts";
import { PIECE_TARGET, type ResumePoint } from "../formats/compressed-output.ts";

/** Where a download goes: the final file, and how messages name it (the argument as given, or the server's sanitised name). */
export interface Target {
  path: string;
  shown: string;
}

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
  const record = downloadRecord(request.drive, path);
  const journalFile = journalPath(ctx.cwd, record.identity);
  const lock = RunLock.acquire(journalFile, record.name);
  try {
    return { ...resumeFrom(ctx, request, path, journalFile), journalFile, lock };
  } catch (error) {
    lock.release();
    throw error;
  }
}

/** Where the .part goes on now, for a retry within the run: its lock is already held. */
export function replanPart(ctx: Context, request: DownloadRequest, path: string, plan: PartPlan): PartPlan {
  return { ...plan, ...resumeFrom(ctx, request, path, plan.journalFile) };
}

/** The drive bytes the .part holds that a rerun would keep: a raw one's size, a compressed one's last durable point. */
export function keptBytes(request: DownloadRequest, path: string, plan: PartPlan): number {
  const part = `${path}.part`;
  if (plan.format === "raw") return fileSize(part);
  return (
    resumePointOf(plan.journalFile, part, {
      file: path,
      drive: request.drive,
      format: plan.format,
      pieceSize: PIECE_TARGET,
    })?.driveBytes ?? 0
  );
}

function resumeFrom(
  ctx: Context,
  request: DownloadRequest,
  path: string,
  journalFile: string,
): Pick<PartPlan, "format" | "from" | "point"> {
  const part = `${path}.part`;
  try {
    const format = request.format ?? formatOfName(path);
    if (format !== "raw") {
      const point = resumePointOf(journalFile, part, {
        file: path,
        drive: request.drive,
        format,
        pieceSize: PIECE_TARGET,
      });
      if (!point && fileSize(part) > 0)
        ctx.log.warn(`${basename(part)} exists without a record of what it holds: starting it over`);
      return { format, from: point?.driveBytes ?? 0, point };
    }
    if (existsSync(journalFile)) {
      // another kind of download's .part (API 1.0's is full-size with holes, a compressed one is
      // not the drive's bytes): resuming from its size would be wrong, so it goes first, then its journal
      if (fileSize(part) > 0) ctx.log.warn(`${basename(part)} was left by another kind of download: starting it over`);
      rmSync(part, { force: true });
      rmSync(journalFile, { force: true });
      return { format, from: 0, point: undefined };
    }
    return { format, from: fileSize(part), point: undefined };
  } catch (error) {
    throw error instanceof OperationError ? error : new OperationError(`cannot prepare ${part}: ${messageOf(error)}`);
  }
}
