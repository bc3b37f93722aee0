// qcow2's two-level cluster map (the active L1 table and its L2 tables), read whole at open and
// checked entry by entry, so that a table or cluster outside the file is refused before any drive
// exists. Kept as the file's own bytes: 8 bytes per cluster of the allocated tables only.
import type { DataMap } from "../chunks/holes.ts";
import { damaged, type Qcow2Header, type ReadAt } from "./qcow2-header.ts";

/** What a guest cluster reads as. */
export const HOLE = 0;
export const NORMAL = 1;
export const COMPRESSED = 2;

const SECTOR = 512;
/** Bits 9-55 of an L1 or standard L2 entry, split into the high and low 32-bit words. */
const OFFSET_HIGH_MASK = 0x00ffffff;
const OFFSET_LOW_MASK = 0xfffffe00;
const COMPRESSED_BIT = 0x40000000; // bit 62, in the high word
const ZERO_BIT = 1; // bit 0 ("reads as zeros"), in the low word

/** One guest cluster, decoded: `host` is where its bytes start in the file, `stored` the compressed bytes' length. */
export interface Cluster {
  kind: typeof HOLE | typeof NORMAL | typeof COMPRESSED;
  host: number;
  stored: number;
}

export class Qcow2Tables {
  readonly clusters: number;
  private readonly perTable: number;
  /** The L2 table of each L1 entry; undefined where the L1 entry is unallocated. */
  private readonly tables: Array<DataView | undefined>;
  /** Compressed descriptor: the host offset in bits 0..x-1, extra 512-byte sectors in bits x..61, x = 62 - (cluster_bits - 8). */
  private readonly sectorsShift: number;
  private readonly sectorsMask: number;
  private readonly compressedHighMask: number;
  /** Ranges of guest bytes [start, end) that hold data, ascending: the data map. */
  private readonly dataStarts: number[] = [];
  private readonly dataEnds: number[] = [];

  constructor(
    private readonly header: Qcow2Header,
    readAt: ReadAt,
    private readonly fileSize: number,
    private readonly shown: string,
  ) {
    const { clusterSize, clusterBits, size } = header;
    this.clusters = Math.ceil(size / clusterSize);
    this.perTable = clusterSize / 8;
    const split = 62 - (clusterBits - 8);
    this.sectorsShift = split - 32;
    this.sectorsMask = 2 ** (62 - split) - 1;
    this.compressedHighMask = 2 ** (split - 32) - 1;
    this.tables = this.readTables(readAt);
    this.checkClusters();
  }

  private readTables(readAt: ReadAt): Array<DataView | undefined> {
    const { clusterSize, l1Entries, l1Offset } = this.header;
    const l1 = readAt(l1Entries * 8, l1Offset);
    const l1View = new DataView(l1.buffer, l1.byteOffset, l1.length);
    // a damaged L1 may name one table many times: read it once
    const byOffset = new Map<number, DataView>();
    const tables: Array<DataView | undefined> = [];
    for (let index = 0; index < l1Entries; index++) {
      const offset =
        (l1View.getUint32(index * 8) & OFFSET_HIGH_MASK) * 2 ** 32 +
        ((l1View.getUint32(index * 8 + 4) & OFFSET_LOW_MASK) >>> 0);
      if (offset === 0) {
        tables.push(undefined);
        continue;
      }
      if (offset % clusterSize !== 0)
        throw damaged(
          this.shown,
          `L2 table ${index} at byte ${offset} is not aligned to the ${clusterSize}-byte clusters`,
        );
      if (offset + clusterSize > this.fileSize)
        throw damaged(
          this.shown,
          `L2 table ${index} at byte ${offset} lies past the end of the file (${this.fileSize} bytes)`,
        );
      let table = byOffset.get(offset);
      if (!table) {
        const bytes = readAt(clusterSize, offset);
        table = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
        byOffset.set(offset, table);
      }
      tables.push(table);
    }
    return tables;
  }

  /** Decode guest cluster `index` into `into` (reused by callers in their loops). */
  decode(index: number, into: Cluster): Cluster {
    into.kind = HOLE;
    into.host = 0;
    into.stored = 0;
    const table = this.tables[Math.floor(index / this.perTable)];
    if (!table) return into;
    const at = (index % this.perTable) * 8;
    const high = table.getUint32(at);
    const low = table.getUint32(at + 4);
    if (high & COMPRESSED_BIT) {
      into.kind = COMPRESSED;
      into.host = (high & this.compressedHighMask) * 2 ** 32 + low;
      const sectors = ((high >>> this.sectorsShift) & this.sectorsMask) + 1;
      into.stored = sectors * SECTOR - (into.host % SECTOR);
      return into;
    }
    // qemu reads the zero flag as zeros whatever the version, and offset 0 is unallocated
    const host = (high & OFFSET_HIGH_MASK) * 2 ** 32 + ((low & OFFSET_LOW_MASK) >>> 0);
    if (low & ZERO_BIT || host === 0) return into;
    into.kind = NORMAL;
    into.host = host;
    return into;
  }

  /** Every cluster of the virtual disk must be readable from the file as it is; records the data runs. */
  private checkClusters(): void {
    const { clusterSize, size } = this.header;
    // the last compressed cluster may end inside its final 512-byte sector, where the file ends
    const sectorEnd = Math.ceil(this.fileSize / SECTOR) * SECTOR;
    const cluster: Cluster = { kind: HOLE, host: 0, stored: 0 };
    for (let index = 0; index < this.clusters; index++) {
      if (!this.tables[Math.floor(index / this.perTable)]) {
        index += this.perTable - 1 - (index % this.perTable);
        continue;
      }
      this.decode(index, cluster);
      if (cluster.kind === HOLE) continue;
      const guest = index * clusterSize;
      if (cluster.kind === NORMAL) {
        if (cluster.host % clusterSize !== 0)
          throw damaged(
            this.shown,
            `the cluster at guest byte ${guest} is at byte ${cluster.host}, not aligned to the ${clusterSize}-byte clusters`,
          );
        // the part past the virtual disk's end (in the last cluster) is never read
        if (cluster.host + Math.min(clusterSize, size - guest) > this.fileSize)
          throw damaged(
            this.shown,
            `the cluster at guest byte ${guest} lies past the end of the file (byte ${cluster.host} of ${this.fileSize})`,
          );
      } else if (cluster.host < clusterSize || cluster.host + cluster.stored > sectorEnd) {
        throw damaged(
          this.shown,
          `the compressed cluster at guest byte ${guest} lies outside the file (bytes ${cluster.host} to ${cluster.host + cluster.stored} of ${this.fileSize})`,
        );
      }
      this.markData(guest, Math.min(guest + clusterSize, size));
    }
  }

  private markData(start: number, end: number): void {
    const last = this.dataEnds.length - 1;
    if (last >= 0 && this.dataEnds[last] === start) this.dataEnds[last] = end;
    else {
      this.dataStarts.push(start);
      this.dataEnds.push(end);
    }
  }

  /** Allocated clusters (normal or compressed) are data; unallocated and zero clusters are holes. */
  dataMap(): DataMap {
    const { dataStarts: starts, dataEnds: ends } = this;
    const size = this.header.size;
    return {
      nextData(from) {
        if (from >= size) return size;
        // the first run that ends after `from`
        let low = 0;
        let high = ends.length;
        while (low < high) {
          const middle = (low + high) >>> 1;
          if ((ends[middle] as number) <= from) low = middle + 1;
          else high = middle;
        }
        return low === ends.length ? size : Math.max(from, starts[low] as number);
      },
    };
  }
}
