// Output files: never overwrite without --force, never leave partial output under the final name.
import { writeSync } from "node:fs";
import { rename, rm, stat } from "node:fs/promises";
import { dataRuns } from "./bytes.ts";
import { messageOf, OperationError, UsageError } from "./errors.ts";

export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Refuse to replace an existing file unless the user asked for it. */
export async function checkOutputPath(path: string, force: boolean): Promise<void> {
  if (!force && (await exists(path))) throw new UsageError(`${path} exists: pass --force to overwrite it`);
}

/**
 * A complete PATH.part becomes PATH: the final name appears only now, and never over a file that
 * appeared meanwhile unless --force (`shown`: how messages name PATH).
 */
export async function publishPart(part: string, path: string, force: boolean, shown = path): Promise<void> {
  if (!force && (await exists(path)))
    throw new OperationError(
      `${shown} appeared during the download: the drive's data is in ${part} (pass --force to replace it)`,
    );
  try {
    await rename(part, path);
  } catch (error) {
    throw new OperationError(`cannot rename ${part} to ${path}: ${messageOf(error)}`);
  }
}

/** Write bytes to PATH.part, then rename onto PATH, so a failure never leaves a partial PATH. */
export async function writeFileAtomically(path: string, bytes: Uint8Array): Promise<void> {
  const part = `${path}.part`;
  try {
    await Bun.write(part, bytes);
    await rename(part, path);
  } catch (error) {
    await rm(part, { force: true });
    throw new OperationError(`could not write ${path}: ${(error as Error).message}`);
  }
}

/** Read at most `limit` bytes of a stream; returns undefined when it holds more. */
export async function readBounded(
  stream: ReadableStream<Uint8Array>,
  limit: number,
): Promise<Uint8Array<ArrayBuffer> | undefined> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = stream.getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      total += value.length;
      if (total > limit) return undefined;
      chunks.push(value);
    }
  } finally {
    reader.releaseLock();
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

/** A path as one shell word, for the commands our messages suggest (resume hints). */
export function shellWord(path: string): string {
  return /^[\w./-]+$/.test(path) ? path : `'${path.replace(/'/g, "'\\''")}'`;
}

/**
 * Write `bytes` at `position` of an open file, all of it. Synchronous on purpose: a fragmented
 * filesystem image gives hundreds of data runs per 4 MiB piece, and a thread-pool round trip for
 * each (async write) cost more than the copies into the page cache themselves (the 1.0 download
 * ran no faster than the one-at-a-time baseline: bench/RESULTS.md, "What the defaults were chosen from").
 */
export function writeAllAt(fd: number, bytes: Uint8Array, position: number): void {
  let done = 0;
  while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done, position + done);
}

/** Write only the parts of `bytes` (bound for `position`) that hold data: zero 4 KiB blocks stay holes. Returns the runs written. */
export function writeSparse(fd: number, bytes: Uint8Array, position: number): Array<[number, number]> {
  const runs = dataRuns(bytes, position);
  for (const [from, to] of runs) writeAllAt(fd, bytes.subarray(from, to), position + from);
  return runs;
}
