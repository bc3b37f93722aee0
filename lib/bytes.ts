// Byte-level helpers the engines and the emulator share: zero scans and reusable buffers.

/** Filesystems allocate in 4 KiB blocks: zero runs this size (and aligned) can stay holes. */
export const BLOCK = 4096;

/**
 * True when every byte is zero; scans 32-bit words, several times faster than a byte loop
 * (bench/RESULTS.md, "Figures the code relies on").
 */
export function isAllZero(bytes: Uint8Array): boolean {
  // a view that is not 4-byte aligned cannot be read as words: scan it byte by byte
  const words = bytes.byteOffset % 4 === 0 ? Math.floor(bytes.length / 4) : 0;
  if (words > 0) {
    const view = new Uint32Array(bytes.buffer, bytes.byteOffset, words);
    for (let i = 0; i < view.length; i++) if (view[i] !== 0) return false;
  }
  for (let i = words * 4; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}

/** A fixed number of equal buffers, taken and given back by the tasks in flight. */
export class BufferPool {
  private readonly free: Uint8Array[] = [];
  constructor(private readonly size: number) {}
  take(): Uint8Array {
    return this.free.pop() ?? new Uint8Array(this.size);
  }
  give(buffer: Uint8Array): void {
    this.free.push(buffer);
  }
}

/**
 * Ranges [start, end) of `bytes` (which sit at `position` in the file) that hold any non-zero byte,
 * cut on the absolute 4 KiB grid and merged, so that what is left out can stay a hole.
 */
export function dataRuns(bytes: Uint8Array, position: number, block = BLOCK): Array<[number, number]> {
  const runs: Array<[number, number]> = [];
  // one word view for the whole piece when it is aligned (pool buffers and 4-byte aligned offsets are)
  const words =
    bytes.byteOffset % 4 === 0 && position % 4 === 0 && block % 4 === 0
      ? new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.length >>> 2)
      : undefined;
  let at = 0;
  while (at < bytes.length) {
    const end = Math.min(bytes.length, at + block - ((position + at) % block));
    let zero = true;
    if (words) {
      const wordEnd = end >>> 2;
      for (let i = at >>> 2; i < wordEnd; i++) {
        if (words[i] !== 0) {
          zero = false;
          break;
        }
      }
      for (let i = wordEnd * 4; zero && i < end; i++) if (bytes[i] !== 0) zero = false;
    } else {
      zero = isAllZero(bytes.subarray(at, end));
    }
    if (!zero) {
      const last = runs[runs.length - 1];
      if (last && last[1] === at) last[1] = end;
      else runs.push([at, end]);
    }
    at = end;
  }
  return runs;
}
