// What the compressed download tests share: an image with data, written zeros and holes, and the
// checks of a .gz / .zst output (decoded here and by the gzip / zstd tools, compared by sha256).
import { expect } from "bun:test";
import { closeSync, ftruncateSync, openSync, readFileSync, writeSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import type { CompressedFormat } from "../../lib/formats/output-format.ts";
import { imageBytes } from "../images.ts";

const MiB = 1024 * 1024;

/**
 * 29 MiB + 12345 bytes: data, a MiB of written zeros, an 8 MiB hole (whole zero pieces: the cached
 * zero piece), data with short zero runs, a hole, and data in the last bytes (off the 4 KiB grid).
 */
export const IMAGE_SIZE = 29 * MiB + 12345;

export function writeHoleyImage(path: string): Uint8Array {
  const bytes = new Uint8Array(IMAGE_SIZE);
  const data: Array<[number, number]> = [
    [0, 3 * MiB],
    [4 * MiB, 8 * MiB],
    [16 * MiB, 22 * MiB],
    [IMAGE_SIZE - 5000, IMAGE_SIZE],
  ];
  for (const [i, [start, end]] of data.entries())
    bytes.set(imageBytes(end - start, i + 11, [[100_000, 140_000]]), start);
  const fd = openSync(path, "w");
  try {
    ftruncateSync(fd, IMAGE_SIZE);
    for (const [start, end] of data) writeSync(fd, bytes, start, end - start, start);
    // written zeros, not a hole
    writeSync(fd, new Uint8Array(MiB), 0, MiB, 3 * MiB);
  } finally {
    closeSync(fd);
  }
  return bytes;
}

export function sha256(bytes: Uint8Array): string {
  return new Bun.CryptoHasher("sha256").update(bytes).digest("hex");
}

/**
 * A .gz / .zst decoded in this process (every member / frame, checksums checked), whether or not
 * the tools are installed. node:zlib's gunzipSync, not Bun.gunzipSync: Bun's stops after the
 * first member (two members of 10 and 5 bytes: 10 bytes back), and a download writes one a piece.
 */
export function decodeFile(format: CompressedFormat, path: string): Uint8Array {
  const bytes = readFileSync(path);
  return new Uint8Array(format === "gzip" ? gunzipSync(bytes) : Bun.zstdDecompressSync(bytes));
}

const TOOLS: Record<CompressedFormat, string> = { gzip: "gzip", zstd: "zstd" };

/**
 * The gzip / zstd tool's own test (-t) and its decoding (-dc) of the file, hashed; undefined when
 * the tool is not installed (the reason printed).
 */
async function toolCheck(
  format: CompressedFormat,
  path: string,
): Promise<{ tested: number; sha256: string } | undefined> {
  const tool = Bun.which(TOOLS[format]);
  if (!tool) {
    console.log(`skipped the ${TOOLS[format]} tool's check of ${path}: ${TOOLS[format]} is not installed`);
    return undefined;
  }
  const tested = Bun.spawnSync([tool, "-t", path], { stdout: "ignore", stderr: "pipe" }).exitCode;
  const decoded = Bun.spawn([tool, "-dc", path], { stdout: "pipe", stderr: "ignore" });
  const hasher = new Bun.CryptoHasher("sha256");
  for await (const piece of decoded.stdout) hasher.update(piece);
  await decoded.exited;
  return { tested, sha256: hasher.digest("hex") };
}

/** A downloaded backup of the holey image: decoded here and by the format's tool, it is the image's exact bytes. */
export async function expectBackupOfImage(format: CompressedFormat, path: string, imageHash: string): Promise<void> {
  const decoded = decodeFile(format, path);
  expect(decoded.length).toBe(IMAGE_SIZE);
  expect(sha256(decoded)).toBe(imageHash);
  const tool = await toolCheck(format, path);
  if (tool) expect(tool).toEqual({ tested: 0, sha256: imageHash });
}
