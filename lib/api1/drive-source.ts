// An API 1.0 drive as a source: reads of up to 4 MiB at any offset, each checked for its exact
// length (drives.ts readFailure), several in flight; the driver retries a read that may pass. The
// reads go over the run's own sockets when given them (socket-read.ts), else through fetch.
import type { Source } from "../chunks/endpoints.ts";
import { fetchedChunk, startWithin, WINDOW_MEMORY, windowFor, type WindowPolicy } from "../chunks/window.ts";
import type { HttpClient } from "../http.ts";
import type { OwnSockets } from "../socket-pool.ts";
import { PROXIED_RECEIVE } from "../wire.ts";
import { GC_EVERY } from "../chunks/engine.ts";
import { driveInfo, MAX_PIECE, readInto, sizeOf } from "./drives.ts";
import { SocketReads } from "./socket-read.ts";

/**
 * Reads in flight by default: a memory-for-speed choice, more were faster but held more memory than
 * a 4 GiB download may (bench/RESULTS.md, "Download concurrency 6").
 */
export const API1_READS_IN_FLIGHT = 6;

/**
 * What reads through fetch (a source given no sockets: an upload's --verify read-back) may hold: 5
 * reads of 4 MiB, each holding its chunk about twice. With what the runtime holds of its own, 6 of
 * them took a 4 GiB download past 128 MiB of peak RSS where 5 stay under it, as fast: the process
 * is the bottleneck there (bench/RESULTS-speed.md, "Figures the code relies on").
 */
const FETCHED_READS_MEMORY = 5 * fetchedChunk(MAX_PIECE);

export interface Api1Drive extends Source {
  /** Its reads go over the run's own sockets: each holds its chunk once (through fetch, about twice). */
  readonly overSockets: boolean;
  /** Its reads go over the run's own sockets through a proxy. */
  readonly proxied: boolean;
  /** What a read of `chunk` bytes in flight holds: its chunk (and PROXIED_RECEIVE through a proxy), or about twice through fetch. */
  heldPerRead(chunk: number): number;
}

/** Drive `drive` of `size` bytes (its info's size) as a source; its reads over `sockets` when given. */
export function api1DriveSource(client: HttpClient, drive: string, size: number, sockets?: OwnSockets): Api1Drive {
  const reads = sockets ? new SocketReads(client, sockets) : undefined;
  const proxied =
    reads !== undefined && sockets?.sockets.proxies.for(client.url(`drives/${drive}/read/0/0`)) !== undefined;
  const source: Api1Drive = {
    size,
    sequential: false,
    remote: true,
    maxRead: MAX_PIECE,
    overSockets: reads !== undefined,
    proxied,
    heldPerRead: (chunk) => (reads ? chunk + (proxied ? PROXIED_RECEIVE : 0) : fetchedChunk(chunk)),
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

/**
 * Drive `drive` as a source, its size from its info; its reads over `sockets` when given, near
 * server or far: each body goes straight into its chunk's buffer, where fetch holds a copy of its
 * own and hands the body over in fresh pieces. On loopback, 1 GiB: as fast as through fetch with a
 * fifth less CPU and 87-96 MiB peak RSS against 110-116 (bench/RESULTS-speed.md, "Figures the code
 * relies on"). From a far server the bytes in flight are the speed, and each read holds half.
 */
export async function openApi1Drive(client: HttpClient, drive: string, sockets?: OwnSockets): Promise<Api1Drive> {
  const info = await driveInfo(client, drive);
  return api1DriveSource(client, drive, sizeOf(info, drive), sockets);
}

/**
 * The reads' window for `chunk`-byte reads (`concurrency`: fixed): from API1_READS_IN_FLIGHT, up to
 * what memory holds (through fetch, FETCHED_READS_MEMORY).
 */
export function api1ReadWindow(source: Api1Drive, chunk: number, concurrency?: number): WindowPolicy {
  const held = source.heldPerRead(chunk);
  // through a proxy, where memory allows fewer reads (8 of 4 MiB), they start at that: from 6 the
  // window went to 8 and back to 6 on the WAN model, 3.73 s against 3.59 s for 8 throughout
  // (bench/RESULTS-speed.md, "Figures the code relies on")
  const start = source.proxied ? Math.floor(WINDOW_MEMORY / held) : API1_READS_IN_FLIGHT;
  if (source.overSockets) return windowFor(startWithin(start, held), held, concurrency);
  return windowFor(
    startWithin(API1_READS_IN_FLIGHT, held, FETCHED_READS_MEMORY),
    held,
    concurrency,
    FETCHED_READS_MEMORY,
  );
}
