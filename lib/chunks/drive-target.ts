// Where a drive destination's chunks go, the same way on both APIs: the drive of an interrupted run
// (its journal in this folder, matching this source and chunk size), the drive the user gave, or a
// new one; every case checked by the API's own rules. The journal then records the chunks done.
import type { Context } from "../context.ts";
import type { Opened, Source } from "./endpoints.ts";
import { Journal, type JournalHeader } from "./journal.ts";

/** What a journal must match to be resumed: the source, its size, the chunk size, the drive given (if any). */
export type JournalKey = Omit<JournalHeader, "v" | "drive" | "created"> & { drive?: string };

/** What a drive destination knows of its transfer, the same on both APIs. */
export interface DriveTransfer {
  ctx: Context;
  source: Source;
  /** How messages name the source ("disk.img", "drive X"). */
  shown: string;
  /** The new drive's name; or the existing drive to write into (-d). */
  name: string;
  drive?: string;
  key: JournalKey;
  /** "upload", "copy"; and what the summary says it did ("uploaded", "copied"). */
  label: string;
  done: string;
  /** Said when a run resumes (stdin: it must be the same stream). */
  resumeWarning?: string;
}

/** The API's own rules for a drive to write into. */
export interface DriveRules {
  /** The drive an interrupted run wrote, checked: resolves to a note when it holds every chunk already; throws when it cannot be continued. */
  resume(drive: string): Promise<string | undefined>;
  /** The error says the drive is gone (a drive this run created is then made again). */
  gone(error: unknown): boolean;
  /** The drive the user gave, checked. */
  checkGiven(drive: string): Promise<void>;
  /** Make a new drive for the source; resolves to its UUID. */
  create(): Promise<string>;
}

export interface DriveTarget {
  drive: string;
  /** This run (or the one it resumes) created the drive: it held zeros to start with. */
  created: boolean;
  journal: Journal;
  /** Set when the drive holds every chunk already: what to say instead of sending them. */
  complete?: string;
}

export async function resolveDriveTarget(
  transfer: DriveTransfer,
  journalFile: string,
  rules: DriveRules,
): Promise<DriveTarget> {
  const { ctx, key, label } = transfer;
  const journal = Journal.load(journalFile);
  if (journal && !journal.matches(key)) {
    ctx.log.warn(
      `${transfer.shown} or --chunk changed since the interrupted ${label} to drive ${journal.header.drive}: starting over`,
    );
  } else if (journal) {
    const { drive } = journal.header;
    const created = Boolean(journal.header.created);
    try {
      const complete = await rules.resume(drive);
      ctx.log.info(`resuming the ${label} into drive ${drive}: ${journal.done.size} chunks already done`);
      if (transfer.resumeWarning) ctx.log.warn(transfer.resumeWarning);
      return { drive, created, journal, complete };
    } catch (error) {
      if (!rules.gone(error) || !created) throw error;
      ctx.log.warn(`drive ${drive} of the interrupted ${label} is gone: starting over on a new drive`);
    }
  }
  const header = { v: 1 as const, ...key };
  if (transfer.drive !== undefined) {
    const drive = transfer.drive;
    await rules.checkGiven(drive);
    return { drive, created: false, journal: Journal.create(journalFile, { ...header, drive, created: false }) };
  }
  const drive = await rules.create();
  return { drive, created: true, journal: Journal.create(journalFile, { ...header, drive, created: true }) };
}

/** A journal as the driver sees it; `knownZero` where zero chunks may be left out (API 1.0: a drive this run created). */
export function journalOpened(journal: Journal, knownZero: boolean, complete?: string): Opened {
  return {
    done: journal.done,
    knownZero,
    complete,
    record: (index) => journal.markDone(index),
    close: () => journal.close(),
    remove: () => journal.remove(),
  };
}
