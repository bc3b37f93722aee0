// An API 1.0 drive as a source: reads of up to 4 MiB at any offset, each checked for its exact
// length (drives.ts readFailure), several in flight; the driver retries a read that may pass. The
// reads go over the run's own sockets when given them (socket-read.ts), else through fetch.
import type { Source } from "../chunks/endpoints.ts";
import type { HttpClient } from "../http.ts";
import type { OwnSockets } from "../socket-pool.ts";
import { GC_EVERY } from "../chunks/engine.ts";
import { driveInfo, MAX_PIECE, readInto, sizeOf } from "./drives.ts";
import { SocketReads } from "./socket-read.ts";

/**
 * Reads in flight by default: a memory-for-speed choice, more were faster but held more memory than
 * a 4 GiB download may (bench/RESULTS.md, "Download concurrency 6").
 */
export const API1_READS_IN_FLIGHT = 6;

/** Drive `drive` of `size` bytes (its info's size) as a source; its reads over `sockets` when given. */
export function api1DriveSource(client: HttpClient, drive: string, size: number, sockets?: OwnSockets): Source {
  const reads = sockets ? new SocketReads(client, sockets) : undefined;
  const source: Source = {
    size,
    sequential: false,
    remote: true,
    maxRead: MAX_PIECE,
    // each answer's body comes in pieces the GC has to find (over the run's sockets as through
    // fetch: the runtime hands each piece it receives over in a buffer of its own)
    gcEvery: GC_EVERY,
    async read(buffer, length, position, signal) {
      if (reads && (await reads.readInto(drive, position, length, buffer, signal))) return;
      await readInto(client, drive, position, length, buffer, signal);
    },
    reopen: async () => source,
    close: async () => undefined,
  };
  return source;
}

/** Drive `drive` as a source, its size from its info; its reads over `sockets` when given. */
export async function openApi1Drive(client: HttpClient, drive: string, sockets?: OwnSockets): Promise<Source> {
  return api1DriveSource(client, drive, sizeOf(await driveInfo(client, drive), drive), sockets);
}
