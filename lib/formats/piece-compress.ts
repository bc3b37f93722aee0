// One piece of a compressed download, compressed on its own into a whole gzip member or zstd frame
// (concatenated, they make one valid .gz / .zst). Both run on the runtime's thread pool, several at
// once: Bun.zstdCompress and node:zlib's callback gzip compress pieces in parallel on both cores,
// with no pause of the event loop; Bun.gzipSync is faster per piece but blocks it, and node:zlib's
// zstdCompress ran one piece at a time (bench/RESULTS-formats.md, "Figures the code relies on").
import { isAllZero } from "../bytes.ts";
import { nodeZlib } from "../builtins.ts";
import type { CompressedFormat } from "./output-format.ts";

/**
 * The levels: zstd 3 is zstd's own default, the same size as `zstd FILE`; gzip 3 is close to gzip's
 * default 6 in size and faster (bench/RESULTS-formats.md, "Figures the code relies on": the levels).
 */
export const LEVELS: Record<CompressedFormat, number> = { zstd: 3, gzip: 3 };

/**
 * The levels of a piece that would otherwise wait for a compressor (the link is faster than the
 * cores at LEVELS): much faster for a little more output, so the compressed download keeps up with
 * a fast link (bench/RESULTS-formats.md, "Figures the code relies on"); over a link slower than the
 * cores, every piece gets LEVELS.
 */
export const FAST_LEVELS: Record<CompressedFormat, number> = { zstd: 1, gzip: 1 };

/** Frame_Header_Descriptor bit 2: the frame ends with a checksum of its content. */
const CONTENT_CHECKSUM_FLAG = 0x04;
const ZSTD_MAGIC = [0x28, 0xb5, 0x2f, 0xfd];

/**
 * Bun.zstdCompress writes frames without the content checksum the zstd tool adds by default, so
 * `zstd -t` could not tell a damaged backup. The checksum is the low 32 bits of XXH64 (seed 0) of
 * the frame's content, after its last block; the descriptor's flag says it is there. Setting the
 * flag changes nothing else in the header (content size and window fields are other bits). The
 * frame is patched in place and the 4 bytes go after it: no copy of the frame.
 */
function withChecksum(frame: Uint8Array, content: Uint8Array): Uint8Array[] {
  if (frame.length < 6 || !ZSTD_MAGIC.every((byte, at) => frame[at] === byte))
    throw new Error("the zstd compressor returned no frame");
  frame[4] = (frame[4] as number) | CONTENT_CHECKSUM_FLAG;
  const checksum = new Uint8Array(4);
  new DataView(checksum.buffer).setUint32(0, Number(BigInt.asUintN(32, Bun.hash.xxHash64(content))), true);
  return [frame, checksum];
}

function compress(format: CompressedFormat, bytes: Uint8Array, level: number): Promise<Uint8Array[]> {
  if (format === "zstd") return Bun.zstdCompress(bytes, { level }).then((frame) => withChecksum(frame, bytes));
  return new Promise((resolve, reject) =>
    nodeZlib().gzip(bytes, { level }, (error, member) => (error ? reject(error) : resolve([member]))),
  );
}

/** Compressed all-zero pieces by format and length: a zero run costs a scan, not a compression. */
const zeroPieces = new Map<string, Promise<Uint8Array[]>>();

/**
 * `bytes` as one gzip member or zstd frame (with its checksum): the byte arrays to write, in order;
 * at FAST_LEVELS when `fast`. `bytes` must stay unchanged until the promise settles (the thread
 * pool reads it).
 */
export function compressPiece(format: CompressedFormat, bytes: Uint8Array, fast = false): Promise<Uint8Array[]> {
  if (!isAllZero(bytes)) return compress(format, bytes, fast ? FAST_LEVELS[format] : LEVELS[format]);
  const key = `${format}/${bytes.length}`;
  let cached = zeroPieces.get(key);
  if (!cached) {
    cached = compress(format, bytes, LEVELS[format]);
    zeroPieces.set(key, cached);
    // a failure is not kept: the next zero piece tries again
    cached.catch(() => zeroPieces.delete(key));
  }
  return cached;
}
