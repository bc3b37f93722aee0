// Chunk grids: how a destination cuts a disk into the chunks it takes.

export interface Grid {
  /** Bytes per chunk (the last one may differ). */
  chunk: number;
  /** Chunks in the grid, from index 0. */
  count: number;
  /** The first chunk with bytes still to move (the one that holds `from`, the -o offset). */
  first: number;
  /** The bytes [start, end) chunk `index` covers (the first one starts at `from`). */
  rangeOf(index: number): readonly [number, number];
}

/**
 * `size` bytes in chunks of `chunk` from byte 0, the last one short (API 1.0 writes and reads at
 * any offset, a local file). From `from` on (the vendor tool's -o): the chunk holding it starts there.
 */
export function evenGrid(size: number, chunk: number, from = 0): Grid {
  return {
    chunk,
    count: Math.ceil(size / chunk),
    first: Math.floor(from / chunk),
    rangeOf: (index) => [Math.max(index * chunk, from), Math.min((index + 1) * chunk, size)] as const,
  };
}

/**
 * The API 2.0 chunked upload's grid: `max(1, size // chunk)` chunks from 0, each `chunk` bytes
 * except the last, which runs to the end (up to one chunk larger, never smaller, than the others).
 */
export function lastRunsToEndGrid(size: number, chunk: number): Grid {
  const count = Math.max(1, Math.floor(size / chunk));
  return {
    chunk,
    count,
    first: 0,
    rangeOf: (index) => [index * chunk, index === count - 1 ? size : (index + 1) * chunk] as const,
  };
}

/** One chunk: the whole disk (a destination that takes it in one stream). */
export function wholeGrid(size: number): Grid {
  return { chunk: size, count: 1, first: 0, rangeOf: () => [0, size] as const };
}
