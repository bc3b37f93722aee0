// A drive to a drive, streamed with no local copy: read over either API (API 1.0: 4 MiB reads in
// parallel; API 2.0: one GET read in order), written over either API (API 1.0: parallel writes at
// any offset; API 2.0: the chunked upload), across locations or accounts (one connection each).
// The driver gives it what every transfer has: one destination drive however often the same copy
// is run (its journal in this folder), finished chunks never sent again, bounded memory (chunks in
// flight x chunk size), zero chunks left out only on a drive this copy created, --verify (here
// with the sha256 of both sides). Checked before anything is made: the source and the destination
// are not the same drive, each side's credentials (one call each), a destination drive given (-d)
// large enough. A source that changes size while it is read ends the copy (the drive it made is
// destroyed); --consistent reads a snapshot of one instant instead (consistent.ts).
import { existsSync, readFileSync, rmSync } from "node:fs";
import type { Connection } from "../connect.ts";
import type { Context } from "../context.ts";
import { InputError, UsageError } from "../errors.ts";
import type { CompressMode } from "../transfer.ts";
import { runTransfer } from "../chunks/driver.ts";
import type { Interrupt } from "../chunks/engine.ts";
import type { Destination, Source } from "../chunks/endpoints.ts";
import { journalPath } from "../chunks/journal.ts";
import { fetchedChunk, windowFor, WINDOW_MEMORY, type WindowPolicy } from "../chunks/window.ts";
import { MAX_PIECE } from "../api1/drives.ts";
import { API1_READS_IN_FLIGHT, openApi1Drive } from "../api1/drive-source.ts";
import { api1WriteWindow, Api1DriveDestination, checkRoom } from "../api1/drive-destination.ts";
import { openApi2Drive } from "../api2/drive-source.ts";
import { Api2ChunkedDestination, checkUploading } from "../api2/chunked-destination.ts";
import { checkAccess, describeDrive, onSide } from "./access.ts";
import { fromSnapshot, type Instant } from "./consistent.ts";

/** Bytes per chunk of an API 2.0 destination read from a drive (bench/RESULTS-copy.md, the sweep). */
export const DRIVE_TO_API2_CHUNK = 8 * 1024 * 1024;

export interface DriveCopy {
  /** The drive to read, over its connection. */
  from: { connection: Connection; drive: string };
  /**
   * Where it goes: a new drive named `name` (default: the source's name) of the source's size, or
   * the existing drive `drive` (API 1.0: at least the source's size; API 2.0: one whose chunked
   * upload is open for exactly it).
   */
  to: { connection: Connection; name?: string; drive?: string };
  /** Bytes per chunk of the destination (default: API 1.0 4M; API 2.0 16M, 8M from an API 1.0 drive). */
  chunk?: number;
  /** Chunks in flight (default: the destination's). */
  concurrency?: number;
  /** API 1.0 destination: gzip each write (auto: when the link makes it pay). */
  compress?: CompressMode;
  /** API 2.0 destination: wait until the drive leaves `uploading`. */
  wait?: boolean;
  quiet: boolean;
  verify: boolean;
  /** API 2.0 source: copy a snapshot of one instant (consistent.ts). */
  consistent?: boolean;
  /** A stop that comes from outside (a run of many copies); default: this run's own Ctrl-C. */
  stop?: Interrupt;
  /** The destination's credentials were checked already (a run of many copies checks them once). */
  destinationChecked?: boolean;
  /** The command that goes on into a drive (from a byte, on API 1.0), for the stop line. */
  resumeCommand(drive: string, offset?: number): string;
}

/** What a copy made: the destination drive, the bytes copied, and with --verify the sha256 both sides share. */
export interface CopyResult {
  drive: string;
  bytes: number;
  sha256?: string;
}

/** A drive as the journal knows it: its API, its endpoint and its UUID (two accounts' drives never mix). */
function driveIdentity(connection: Connection, drive: string | undefined): string {
  return `api${connection.config.api} ${connection.config.base.href} ${drive ?? "new"}`;
}

/** What names the journal and lock of copying `source` (the drive read) to `to`. */
function copyIdentity(from: Connection, source: string, to: DriveCopy["to"]): string {
  return `copy\0${driveIdentity(from, source)}\0${driveIdentity(to.connection, to.drive)}`;
}

/** The destination's credentials (one call, unless `checked`), and a drive given with -d able to take `size` bytes of `shown`. */
async function checkDestination(to: DriveCopy["to"], size: number, shown: string, checked: boolean): Promise<void> {
  const { connection, drive } = to;
  const { client } = connection;
  if (!drive) return checked ? undefined : checkAccess(connection, "destination");
  await onSide("destination", connection, async () => {
    if (connection.config.api === 1) await checkRoom(client, drive, size, shown);
    else await checkUploading(client, drive, size, shown);
  });
}

async function openSource(
  ctx: Context,
  connection: Connection,
  drive: string,
): Promise<Source & { heldPerRead?(chunk: number): number }> {
  return connection.config.api === 1
    ? openApi1Drive(connection.client, drive, connection)
    : openApi2Drive(connection, drive, ctx.log);
}

/**
 * `source` whose size is looked at again (`current`) when a read fails and once every chunk is in: a drive resized while it is copied is an InputError, so the copy is abandoned
 * (the drive it made destroyed) rather than left holding bytes of two sizes.
 */
function sizeWatched(source: Source, shown: string, current: () => Promise<number>): Source {
  const changed = async (): Promise<InputError | undefined> => {
    const now = await current();
    if (now === source.size) return undefined;
    return new InputError(
      `${shown} changed size while it was copied (${source.size} bytes when the copy began, ${now} now): copy it again once it stays still (API 2.0: --consistent copies a snapshot of one instant)`,
    );
  };
  return {
    ...source,
    async read(buffer, length, position, signal) {
      try {
        await source.read(buffer, length, position, signal);
      } catch (error) {
        // a read past a drive that shrank fails like a cut answer would: its size tells them apart
        if (!signal?.aborted) throw (await changed().catch(() => undefined)) ?? error;
        throw error;
      }
    },
    async confirm() {
      const wrong = await changed();
      if (wrong) throw wrong;
    },
  };
}

/** Copy the drive; resolves to the destination drive, the bytes copied and (--verify) their sha256. */
export async function copyDrive(ctx: Context, request: DriveCopy): Promise<CopyResult> {
  const { from, to } = request;
  if (to.drive !== undefined && from.drive.toLowerCase() === to.drive.toLowerCase())
    throw new UsageError(`drive ${from.drive} cannot be copied onto itself: give another -d, or none for a new drive`);
  if (request.consistent && from.connection.config.api !== 2)
    throw new UsageError(
      "--consistent needs an API 2.0 source (it snapshots the drive): API 1.0 has no snapshots; stop what writes to the drive instead",
    );
  const described = await describeDrive(from);
  if (described.size === 0) throw new UsageError(`drive ${from.drive} is empty (0 bytes): there is nothing to copy`);
  const shown = `drive ${from.drive}`;
  await checkDestination(to, described.size, shown, Boolean(request.destinationChecked));
  const name = to.name ?? described.name ?? from.drive;
  if (!request.consistent) return copyFrom(ctx, request, { read: from.drive, known: from.drive, shown }, name);
  return fromSnapshot(
    ctx,
    {
      connection: from.connection,
      drive: from.drive,
      identity: `copy\0${driveIdentity(from.connection, from.drive)}\0${driveIdentity(to.connection, undefined)}`,
      what: `the copy of ${shown}`,
      stop: request.stop,
      resumable: (instant) => existsSync(journalPath(ctx.cwd, copyIdentity(from.connection, instant.snapshot, to))),
      lost: (instant) => forgetCopy(ctx, from.connection, instant.snapshot, to),
    },
    // the journal knows the copy by its snapshot: a clone made again from it holds the same bytes
    (instant: Instant) =>
      copyFrom(
        ctx,
        request,
        { read: instant.clone, known: instant.snapshot, shown: `${shown} (snapshot ${instant.snapshot})` },
        name,
      ),
  );
}

/** The copy from a lost instant cannot go on: its journal goes, and the partial drive it made is named. */
function forgetCopy(ctx: Context, connection: Connection, snapshot: string, to: DriveCopy["to"]): void {
  const journal = journalPath(ctx.cwd, copyIdentity(connection, snapshot, to));
  if (!existsSync(journal)) return;
  let partial: string | undefined;
  try {
    partial = (JSON.parse(readFileSync(journal, "utf8").split("\n")[0] ?? "") as { drive?: string }).drive;
  } catch {
    partial = undefined;
  }
  rmSync(journal, { force: true });
  if (partial && partial !== to.drive)
    ctx.log.warn(
      `drive ${partial} holds part of the copy from that instant: it is not used again (destroy.ts ${partial} removes it)`,
    );
}

/**
 * Copy drive `source.read` (the source, or the temporary clone of its snapshot) to `request.to`;
 * its journal knows it as `source.known` (the drive, or the snapshot), messages as `source.shown`.
 */
async function copyFrom(
  ctx: Context,
  request: DriveCopy,
  source: { read: string; known: string; shown: string },
  name: string,
): Promise<CopyResult> {
  const { from, to } = request;
  const { read: drive, known, shown } = source;
  const opened = await openSource(ctx, from.connection, drive);
  // a drive's chunks are read whole before they are sent, from the chunk itself: a read over the
  // run's sockets (an API 1.0 drive's) holds it once (and more through a proxy's tunnel), one
  // through fetch about twice
  const heldPerChunk = (chunk: number) => opened.heldPerRead?.(chunk) ?? fetchedChunk(chunk);
  const current = async () => (await describeDrive({ connection: from.connection, drive })).size;
  const watched = sizeWatched(opened, shown, current);
  try {
    const key = {
      kind: "copy" as const,
      file: driveIdentity(from.connection, known),
      size: watched.size,
      chunk: 0,
      drive: to.drive,
    };
    const common = { ctx, source: watched, shown, name, drive: to.drive, label: "copy", done: "copied" };
    let destination: Destination;
    let window: WindowPolicy;
    if (to.connection.config.api === 1) {
      const chunk = request.chunk ?? MAX_PIECE;
      // within WINDOW_MEMORY, where a copy's peak RSS was measured (bench/RESULTS-copy.md), not an upload's budget
      window = api1WriteWindow(heldPerChunk(chunk), request.concurrency, WINDOW_MEMORY);
      destination = new Api1DriveDestination({
        ...common,
        client: to.connection.client,
        socketWrites: to.connection,
        decoded: false,
        chunk,
        offset: 0,
        compress: request.compress ?? "auto",
        window,
        key: { ...key, chunk },
        resumeCommand: request.resumeCommand,
      });
    } else {
      // a drive's chunks are read whole before they are sent, so chunks in flight x chunk size is the
      // copy's memory: as many in flight as hold the bytes the API 1.0 download's reads do (an API 1.0
      // source reads each chunk in 4 MiB pieces at once; bench/RESULTS-copy.md, the sweep; 16 MiB
      // chunks six at a time from an API 2.0 drive took 212 MiB: bench/RESULTS-speed.md)
      const chunk = request.chunk ?? DRIVE_TO_API2_CHUNK;
      const initial = Math.max(1, Math.round((API1_READS_IN_FLIGHT * MAX_PIECE) / chunk));
      window = windowFor(initial, heldPerChunk(chunk), request.concurrency);
      destination = new Api2ChunkedDestination({
        ...common,
        connection: to.connection,
        chunk,
        wait: request.wait ?? true,
        key: { ...key, chunk },
        resumeCommand: (drive) => request.resumeCommand(drive),
      });
    }
    let sha256: string | undefined;
    const result = await runTransfer(ctx, {
      label: "copy",
      source: watched,
      destination,
      record: { identity: copyIdentity(from.connection, known, to), name: `the copy of ${shown}` },
      window,
      retry: to.connection.retry,
      quiet: request.quiet,
      verify: request.verify,
      sha256: (digest) => {
        sha256 = digest;
      },
      stop: request.stop,
    });
    return { drive: result, bytes: watched.size, sha256 };
  } finally {
    await watched.close();
  }
}
