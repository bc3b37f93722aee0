// An API 1.0 drive as a source: reads of up to 4 MiB at any offset, each checked for its exact
// length (drives.ts readInto), several in flight; the driver retries a read that may pass.
import type { Source } from "../chunks/endpoints.ts";
import type { HttpClient } from "../http.ts";
import { GC_EVERY } from "../chunks/engine.ts";
import { driveInfo, MAX_PIECE, readInto, sizeOf } from "./drives.ts";

/**
 * Reads in flight by default: a memory-for-speed choice, more were faster but held more memory than
 * a 4 GiB download may (bench/RESULTS.md, "Download concurrency 6").
 */
export const API1_READS_IN_FLIGHT = 6;

/** Drive `drive` of `size` bytes (its info's size) as a source. */
export function api1DriveSource(client: HttpClient, drive: string, size: number): Source {
  const source: Source = {
    size,
    sequential: false,
    remote: true,
    maxRead: MAX_PIECE,
    // each answer's body comes in pieces the GC has to find
    gcEvery: GC_EVERY,
    async read(buffer, length, position, signal) {
      await readInto(client, drive, position, length, buffer, signal);
    },
    reopen: async () => source,
    close: async () => undefined,
  };
  return source;
}

/** Drive `drive` as a source, its size from its info. */
export async function openApi1Drive(client: HttpClient, drive: string): Promise<Source> {
  return api1DriveSource(client, drive, sizeOf(await driveInfo(client, drive), drive));
}
