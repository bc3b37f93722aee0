// Test images: deterministic bytes that look like data, with zero runs where asked.
import { createZstdCompress } from "node:zlib";

/** A xorshift stream, every other 256-byte stretch text-like so gzip has something to do. */
export function imageBytes(size: number, seed = 1, zeroRuns: Array<[number, number]> = []): Uint8Array {
  const bytes = new Uint8Array(size);
  let x = seed * 2654435761 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    bytes[i] = (i >> 8) & 1 ? 97 + ((x >>> 0) % 26) : x & 255;
  }
  for (const [start, end] of zeroRuns) bytes.fill(0, start, Math.min(end, size));
  return bytes;
}

export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length));
}

/** zstd as a stream compressor writes it (the `zstd` CLI reading a pipe too): frames without a content size. */
export async function zstdWithoutSize(content: Uint8Array): Promise<Uint8Array> {
  const compressor = createZstdCompress();
  const parts: Buffer[] = [];
  compressor.on("data", (part: Buffer) => parts.push(part));
  const ended = new Promise((resolve) => compressor.on("end", resolve));
  compressor.end(content);
  await ended;
  return Buffer.concat(parts);
}
