// Output files: never overwrite without --force, never leave partial output under the final name.
import { rename, rm, stat } from "node:fs/promises";
import { OperationError, UsageError } from "./errors.ts";

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
export async function readBounded(stream: ReadableStream<Uint8Array>, limit: number): Promise<Uint8Array<ArrayBuffer> | undefined> {
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
