// Where a file holds data: lseek(SEEK_DATA/SEEK_HOLE) through bun:ffi, so holes in a sparse image
// are skipped without reading them (8 GiB of holes would otherwise be read and scanned byte by byte).
// Optional: anywhere libc or the call is missing, every byte counts as data and is read.

const SEEK_END = 2;
const SEEK_DATA = 3;
const SEEK_HOLE = 4;

type Lseek = (fd: number, offset: number, whence: number) => number;

let cached: Lseek | null | undefined;

async function loadLseek(): Promise<Lseek | null> {
  if (cached !== undefined) return cached;
  cached = null;
  if (process.platform !== "linux") return cached;
  try {
    const { dlopen, FFIType } = await import("bun:ffi");
    for (const name of ["libc.so.6", "libc.so", "libc.musl-x86_64.so.1", "libc.musl-aarch64.so.1"]) {
      try {
        const lib = dlopen(name, { lseek: { args: [FFIType.i32, FFIType.i64, FFIType.i32], returns: FFIType.i64 } });
        const lseek = lib.symbols.lseek;
        cached = (fd, offset, whence) => Number(lseek(fd, offset, whence));
        break;
      } catch {
        // try the next name
      }
    }
  } catch {
    // no FFI in this runtime: read everything
  }
  return cached;
}

/** Finds the data regions of one open regular file. */
export interface DataMap {
  /** The first offset >= `from` that may hold data, or `size` when only holes follow. */
  nextData(from: number): number;
}

/** A map for a regular file, or undefined when holes cannot be found (then read everything). */
export async function dataMapOf(fd: number, size: number): Promise<DataMap | undefined> {
  const lseek = await loadLseek();
  if (!lseek) return undefined;
  // a filesystem without SEEK_DATA fails with EINVAL: probe once
  const first = lseek(fd, 0, SEEK_DATA);
  if (first < 0 && lseek(fd, 0, SEEK_HOLE) !== 0) return undefined;
  return {
    nextData(from) {
      if (from >= size) return size;
      const data = lseek(fd, from, SEEK_DATA);
      if (data >= 0) return Math.min(data, size);
      // -1 is ENXIO ("no data after from") only when a hole is found right there; anything else: assume data
      return lseek(fd, from, SEEK_HOLE) === from ? size : from;
    },
  };
}

/** The size of an open block device (stat reports 0 for those). */
export async function deviceSize(fd: number): Promise<number | undefined> {
  const lseek = await loadLseek();
  if (!lseek) return undefined;
  const end = lseek(fd, 0, SEEK_END);
  lseek(fd, 0, 0);
  return end >= 0 ? end : undefined;
}
