// --consistent: a transfer from an API 2.0 drive as of one instant. The drive (a running server's
// disk too) is snapshotted, the snapshot cloned to a temporary drive (a snapshot cannot be read
// itself), and the transfer reads that drive; then both are removed. A run stopped part way (a
// signal, a failure a rerun can resume, kill -9) keeps both, recorded in a small file in this
// folder (`.drivekit-snapshot-HASH`), so the rerun goes on from the same instant: the transfer's
// own resume record then holds bytes of that one instant only, never of two. A run that ends
// without anything to resume (done, refused, a source that broke, a snapshot that never became
// available) removes both, or names them with the commands that remove them.
import { existsSync, readFileSync, rmSync } from "node:fs";
import type { Connection } from "../connect.ts";
import type { Context } from "../context.ts";
import { ApiError, InterruptedError, messageOf, OperationError, UsageError } from "../errors.ts";
import { writeFileAtomically } from "../files.ts";
import { isUuid } from "../uuid.ts";
import { abortOnInterrupt, type Interrupt } from "../chunks/engine.ts";
import { journalPath } from "../chunks/journal.ts";
import { RunLock } from "../chunks/lock.ts";
import { deleteDrive2, getDrive } from "../api2/drives.ts";
import { cloneSnapshot, createSnapshot, deleteSnapshot, getSnapshot, waitForSnapshot } from "../api2/snapshots.ts";
import { waitForDrive } from "../api2/wait.ts";

/** Names of what --consistent makes start with this, so that they are recognised in any listing. */
export const TEMPORARY_PREFIX = "drivekit-tmp";
/** Between two looks at a snapshot or a clone being made: from the first, doubled up to the last. */
const POLL = { intervalMs: 50, growTo: 2000 } as const;

export interface ConsistentSource {
  /** The source drive's API 2.0 connection. */
  connection: Connection;
  drive: string;
  /** What makes this transfer this one (the source and where it goes): names the record and its lock. */
  identity: string;
  /** "the copy of drive X": names the run in a refusal of a second one. */
  what: string;
  stop?: Interrupt;
  /** After a failure: the transfer from `instant` kept what a rerun resumes (its journal, its .part). */
  resumable(instant: Instant): boolean;
  /** The instant an interrupted run read is gone (its snapshot and clone removed): drop what the transfer kept from it. */
  lost(instant: { snapshot: string; clone?: string }): void;
}

/** The instant being read: the snapshot and the temporary drive cloned from it. */
export interface Instant {
  snapshot: string;
  clone: string;
  /** The snapshot's time, as the server gives it. */
  taken?: string;
}

interface Record {
  v: 1;
  drive: string;
  snapshot: string;
  clone?: string;
}

/** How to remove what a consistent run made, as commands. */
export function removalCommands(made: { snapshot?: string; clone?: string }): string {
  return [
    made.clone ? `destroy.ts --api 2 ${made.clone} --yes` : "",
    made.snapshot ? `snapshot.ts destroy ${made.snapshot} --yes` : "",
  ]
    .filter(Boolean)
    .join("; ");
}

/** `error` with `text` appended, of the same kind (an interruption keeps its signal's exit status). */
export function extended(error: unknown, text: string): Error {
  const message = `${messageOf(error)}${text}`;
  if (error instanceof InterruptedError) return new InterruptedError(message, error.signal);
  if (error instanceof UsageError) return new UsageError(message);
  return new OperationError(message, { cause: error });
}

const gone = (error: unknown) => error instanceof ApiError && error.status === 404;

class InstantRecord {
  constructor(readonly path: string) {}

  load(drive: string): Record | undefined {
    if (!existsSync(this.path)) return undefined;
    try {
      const record = JSON.parse(readFileSync(this.path, "utf8")) as Record;
      const valid =
        record.v === 1 &&
        record.drive === drive &&
        isUuid(record.snapshot) &&
        (record.clone === undefined || isUuid(record.clone));
      return valid ? record : undefined;
    } catch {
      return undefined;
    }
  }

  save(record: Record): Promise<void> {
    return writeFileAtomically(this.path, new TextEncoder().encode(`${JSON.stringify(record)}\n`));
  }

  remove(): void {
    rmSync(this.path, { force: true });
  }
}

/**
 * Run `use` on a temporary drive holding `source.drive` as of one instant (see the top of this
 * file); resolves to what `use` resolved to.
 */
export async function fromSnapshot<T>(
  ctx: Context,
  source: ConsistentSource,
  use: (instant: Instant) => Promise<T>,
): Promise<T> {
  const path = journalPath(ctx.cwd, `consistent\0${source.identity}`, "snapshot");
  const lock = RunLock.acquire(path, `${source.what} (--consistent)`);
  const record = new InstantRecord(path);
  try {
    const instant = await prepare(ctx, source, record);
    let result: T;
    try {
      result = await use(instant);
    } catch (error) {
      if (source.resumable(instant))
        throw extended(
          error,
          `; snapshot ${instant.snapshot} and temporary drive ${instant.clone} are kept so that the rerun goes on from the same instant (to give up instead: ${removalCommands(instant)})`,
        );
      throw extended(error, await removeAll(source.connection, instant, record));
    }
    const removal = await removeAll(source.connection, instant, record);
    if (removal.startsWith("; removed")) ctx.log.info(removal.slice(2));
    else ctx.log.warn(removal.replace(/^; /, ""));
    return result;
  } finally {
    lock.release();
  }
}

/** The instant of an interrupted run (made whole again), or a new one; the setup stops on Ctrl-C, removing what it made. */
async function prepare(ctx: Context, source: ConsistentSource, record: InstantRecord): Promise<Instant> {
  const interrupt = abortOnInterrupt(source.stop);
  const made: { snapshot?: string; clone?: string } = {};
  try {
    const kept = record.load(source.drive);
    const instant = kept && (await resume(ctx, source, record, kept, interrupt.controller.signal));
    if (instant) return instant;
    return await take(ctx, source, record, made, interrupt.controller.signal);
  } catch (error) {
    const stoppedBy = interrupt.interrupted();
    const reason = stoppedBy ? new InterruptedError(`interrupted (${stoppedBy})`, stoppedBy) : error;
    // what this setup made has no use yet: nothing was read from it
    if (!made.snapshot) throw reason;
    throw extended(reason, await removeAll(source.connection, made, record, "; nothing was copied"));
  } finally {
    interrupt.remove();
  }
}

/** The instant recorded by an interrupted run, if its snapshot or clone is still there (a missing clone is made again). */
async function resume(
  ctx: Context,
  source: ConsistentSource,
  record: InstantRecord,
  kept: Record,
  signal: AbortSignal,
): Promise<Instant | undefined> {
  const { client } = source.connection;
  const found = async <T>(look: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await look();
    } catch (error) {
      if (gone(error)) return undefined;
      throw error;
    }
  };
  const snapshot = await found(() => getSnapshot(client, kept.snapshot, signal));
  const clone = kept.clone ? await found(() => getDrive(client, kept.clone as string, { signal })) : undefined;
  if (clone && snapshot) {
    ctx.log.info(
      `going on from snapshot ${kept.snapshot}${snapshot.timestamp ? ` (${snapshot.timestamp})` : ""} of drive ${source.drive}, through its temporary drive ${clone.uuid}`,
    );
    await settled(ctx, source, clone.uuid, signal);
    return { snapshot: kept.snapshot, clone: clone.uuid, taken: snapshot.timestamp as string | undefined };
  }
  if (snapshot) {
    ctx.log.info(
      `going on from snapshot ${kept.snapshot} of drive ${source.drive}: its temporary drive is gone, cloning it again`,
    );
    return cloneOf(ctx, source, record, { snapshot: kept.snapshot }, signal, snapshot.timestamp as string | undefined);
  }
  if (clone) {
    // the clone holds the instant: it is all the rerun needs
    ctx.log.info(`going on from temporary drive ${clone.uuid} (its snapshot ${kept.snapshot} is gone)`);
    await settled(ctx, source, clone.uuid, signal);
    return { snapshot: kept.snapshot, clone: clone.uuid };
  }
  ctx.log.warn(
    `snapshot ${kept.snapshot} and temporary drive ${kept.clone ?? "(none)"} of the interrupted run are gone: starting over from a new snapshot`,
  );
  source.lost(kept);
  record.remove();
  return undefined;
}

/** A new snapshot of the drive and its clone, each recorded as soon as the server names it. */
async function take(
  ctx: Context,
  source: ConsistentSource,
  record: InstantRecord,
  made: { snapshot?: string; clone?: string },
  signal: AbortSignal,
): Promise<Instant> {
  const { connection, drive } = source;
  const stamp = new Date().toISOString().replace(/\.\d+Z$/, "Z");
  const snapshot = await createSnapshot(connection.client, {
    drive,
    name: `${TEMPORARY_PREFIX} ${drive} ${stamp}`,
    meta: { drivekit: "temporary snapshot of --consistent, removed when the run ends" },
  });
  made.snapshot = snapshot.uuid;
  await record.save({ v: 1, drive, snapshot: snapshot.uuid });
  ctx.log.info(
    `snapshot ${snapshot.uuid} of drive ${drive} taken${snapshot.status === "available" ? "" : ": waiting until it is available"}`,
  );
  const ready = await waitForSnapshot(connection.client, snapshot.uuid, {
    limitMs: connection.timeoutMs,
    ...POLL,
    signal,
  });
  return cloneOf(ctx, source, record, made, signal, ready.timestamp as string | undefined);
}

/** Clone the snapshot to the temporary drive the transfer reads, recorded, and wait until it is ready. */
async function cloneOf(
  ctx: Context,
  source: ConsistentSource,
  record: InstantRecord,
  made: { snapshot?: string; clone?: string },
  signal: AbortSignal,
  taken: string | undefined,
): Promise<Instant> {
  const snapshot = made.snapshot as string;
  const clone = await cloneSnapshot(
    source.connection.client,
    snapshot,
    { name: `${TEMPORARY_PREFIX} clone of snapshot ${snapshot}`, media: "disk" },
    signal,
  );
  made.clone = clone.uuid;
  await record.save({ v: 1, drive: source.drive, snapshot, clone: clone.uuid });
  ctx.log.info(`temporary drive ${clone.uuid} cloned from snapshot ${snapshot}`);
  await settled(ctx, source, clone.uuid, signal);
  return { snapshot, clone: clone.uuid, taken };
}

/** Wait (bounded by --timeout) until the temporary drive is ready to be read. */
async function settled(ctx: Context, source: ConsistentSource, clone: string, signal: AbortSignal): Promise<void> {
  let told = false;
  await waitForDrive(source.connection.client, clone, {
    limitMs: source.connection.timeoutMs,
    ...POLL,
    signal,
    onStatus: (status) => {
      if (!told) ctx.log.info(`waiting for temporary drive ${clone} to leave status ${status}`);
      told = true;
    },
  });
}

/**
 * Remove the clone and the snapshot, then the record; resolves to what to append to a message:
 * `"; removed ..."`, or, for what could not be removed, the commands that remove it (the record
 * then stays, so a rerun reuses them).
 */
async function removeAll(
  connection: Connection,
  made: { snapshot?: string; clone?: string },
  record: InstantRecord,
  note = "",
): Promise<string> {
  const left: { snapshot?: string; clone?: string } = {};
  const failures: string[] = [];
  const attempt = async (what: "clone" | "snapshot", remove: (uuid: string) => Promise<void>) => {
    const uuid = made[what];
    if (!uuid) return;
    try {
      await remove(uuid);
    } catch (error) {
      if (gone(error)) return;
      left[what] = uuid;
      failures.push(messageOf(error));
    }
  };
  await attempt("clone", (uuid) => deleteDrive2(connection.client, uuid));
  await attempt("snapshot", (uuid) => deleteSnapshot(connection.client, uuid));
  const removed = [
    made.snapshot && !left.snapshot ? `snapshot ${made.snapshot}` : "",
    made.clone && !left.clone ? `temporary drive ${made.clone}` : "",
  ]
    .filter(Boolean)
    .join(" and ");
  if (failures.length === 0) {
    record.remove();
    return removed ? `; removed ${removed}${note}` : note;
  }
  return `${note}; could not remove ${[left.snapshot && `snapshot ${left.snapshot}`, left.clone && `temporary drive ${left.clone}`].filter(Boolean).join(" and ")} (${failures.join("; ")}): ${removalCommands(left)}`;
}
