// A drive to a drive, streamed with no local copy: read over either API (API 1.0: 4 MiB reads in
// parallel; API 2.0: one GET read in order), written over either API (API 1.0: parallel writes at
// any offset; API 2.0: the chunked upload), across locations or accounts (one connection each).
// The driver gives it what every transfer has: one destination drive however often the same copy
// is run (its journal in this folder), finished chunks never sent again, bounded memory (chunks in
// flight x chunk size), zero chunks left out only on a drive this copy created, --verify.
import type { Connection } from "../connect.ts";
import type { Context } from "../context.ts";
import { runTransfer } from "../chunks/driver.ts";
import type { Destination, Source } from "../chunks/endpoints.ts";
import { fetchedChunk, windowFor, type WindowPolicy } from "../chunks/window.ts";
import { UsageError } from "../errors.ts";
import type { CompressMode } from "../transfer.ts";
import { MAX_PIECE } from "../api1/drives.ts";
import { openApi1Drive } from "../api1/drive-source.ts";
import { API1_WRITES_IN_FLIGHT, Api1DriveDestination } from "../api1/drive-destination.ts";
import { openApi2Drive } from "../api2/drive-source.ts";
import { API2_POSTS_IN_FLIGHT, Api2ChunkedDestination, DEFAULT_API2_CHUNK } from "../api2/chunked-destination.ts";

export interface DriveCopy {
  /** The drive to read, over its connection. */
  from: { connection: Connection; drive: string };
  /**
   * Where it goes: a new drive named `name` (of the source's size), or the existing drive `drive`
   * (API 1.0: at least the source's size; API 2.0: one whose chunked upload is open for exactly it).
   */
  to: { connection: Connection; name: string; drive?: string };
  /** Bytes per chunk of the destination (default: API 1.0 4M, API 2.0 16M). */
  chunk?: number;
  /** Chunks in flight (default: the destination's). */
  concurrency?: number;
  /** API 1.0 destination: gzip each write (auto: when the link makes it pay). */
  compress?: CompressMode;
  /** API 2.0 destination: wait until the drive leaves `uploading`. */
  wait?: boolean;
  quiet: boolean;
  verify: boolean;
  /** The command that goes on into a drive (from a byte, on API 1.0), for the stop line. */
  resumeCommand(drive: string, offset?: number): string;
}

/** A drive as the journal knows it: its API, its endpoint and its UUID (two accounts' drives never mix). */
function driveIdentity(connection: Connection, drive: string | undefined): string {
  return `api${connection.config.api} ${connection.config.base.href} ${drive ?? "new"}`;
}

async function openSource(ctx: Context, from: DriveCopy["from"]): Promise<Source> {
  const { connection, drive } = from;
  return connection.config.api === 1
    ? openApi1Drive(connection.client, drive)
    : openApi2Drive(connection, drive, ctx.log);
}

/** Copy the drive; resolves to the destination drive's UUID. */
export async function copyDrive(ctx: Context, request: DriveCopy): Promise<string> {
  const { from, to } = request;
  if (
    from.connection.config.api === to.connection.config.api &&
    from.drive === to.drive &&
    from.connection.config.base.href === to.connection.config.base.href
  )
    throw new UsageError(`drive ${from.drive} cannot be copied onto itself`);
  const source = await openSource(ctx, from);
  try {
    if (source.size === 0) throw new UsageError(`drive ${from.drive} is empty (0 bytes): there is nothing to copy`);
    const shown = `drive ${from.drive}`;
    const key = {
      kind: "copy" as const,
      file: driveIdentity(from.connection, from.drive),
      size: source.size,
      chunk: 0,
      drive: to.drive,
    };
    const common = { ctx, source, shown, name: to.name, drive: to.drive, label: "copy", done: "copied" };
    let destination: Destination;
    let window: WindowPolicy;
    if (to.connection.config.api === 1) {
      const chunk = request.chunk ?? MAX_PIECE;
      // a drive's chunks are read whole before they are written
      window = windowFor(API1_WRITES_IN_FLIGHT, fetchedChunk(chunk), request.concurrency);
      destination = new Api1DriveDestination({
        ...common,
        client: to.connection.client,
        decoded: false,
        chunk,
        offset: 0,
        compress: request.compress ?? "auto",
        window,
        key: { ...key, chunk },
        resumeCommand: request.resumeCommand,
      });
    } else {
      const chunk = request.chunk ?? DEFAULT_API2_CHUNK;
      window = windowFor(API2_POSTS_IN_FLIGHT, chunk, request.concurrency);
      destination = new Api2ChunkedDestination({
        ...common,
        connection: to.connection,
        chunk,
        wait: request.wait ?? true,
        key: { ...key, chunk },
        resumeCommand: (drive) => request.resumeCommand(drive),
      });
    }
    return await runTransfer(ctx, {
      label: "copy",
      source,
      destination,
      record: {
        identity: `copy\0${driveIdentity(from.connection, from.drive)}\0${driveIdentity(to.connection, to.drive)}`,
        name: `the copy of ${shown}`,
      },
      window,
      retry: to.connection.retry,
      quiet: request.quiet,
      verify: request.verify,
    });
  } finally {
    await source.close();
  }
}
