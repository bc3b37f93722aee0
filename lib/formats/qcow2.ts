// A qcow2 image (versions 2 and 3) read as the disk it holds: random access, in parallel, with
// runs of host-contiguous clusters read in one pread, compressed clusters inflated (raw deflate)
// and unallocated or zero clusters read as zeros without touching the file.
import { readSync } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { statImage, type ImageSource } from "../chunks/image.ts";
import { nodeZlib } from "../builtins.ts";
import { InputError, OperationError, UsageError } from "../errors.ts";
import { readQcow2Header, type Qcow2Header, type ReadAt } from "./qcow2-header.ts";
import { HOLE, NORMAL, Qcow2Tables, type Cluster } from "./qcow2-tables.ts";

/** Compressed clusters close together in the file are read in one pread of up to this span. */
const COMPRESSED_SPAN = 2 * 1024 * 1024;
/** Bytes between two compressed clusters still worth reading through rather than a second pread. */
const COMPRESSED_GAP = 4096;
/**
 * Each inflate leaves a cluster-sized buffer behind, which Bun gives back late without a full GC;
 * each GC pauses the reader. Every 64 MiB keeps most of the speed of none, whose memory grows with
 * the image (bench/RESULTS-formats.md, "Figures the code relies on").
 */
const INFLATED_BETWEEN_GCS = 64 * 1024 * 1024;
/** Decoded compressed clusters kept for the read that takes the rest of a cluster a read cut. */
const CACHED_CLUSTERS = 8;

/** A compressed cluster a read needs: `within`..`within + take` of it goes to `dest` in the buffer. */
interface CompressedPiece {
  index: number;
  host: number;
  stored: number;
  within: number;
  take: number;
  dest: number;
}

/** Runs of pieces whose stored bytes lie close together and ascending in the file, each within one span. */
function* groupsInFile(pieces: CompressedPiece[]): Generator<CompressedPiece[]> {
  let first = 0;
  while (first < pieces.length) {
    const start = (pieces[first] as CompressedPiece).host;
    let end = start + (pieces[first] as CompressedPiece).stored;
    let next = first + 1;
    for (; next < pieces.length; next++) {
      const piece = pieces[next] as CompressedPiece;
      const pieceEnd = Math.max(end, piece.host + piece.stored);
      if (piece.host < start || piece.host > end + COMPRESSED_GAP || pieceEnd - start > COMPRESSED_SPAN) break;
      end = pieceEnd;
    }
    yield pieces.slice(first, next);
    first = next;
  }
}

function readAtSync(fd: number): ReadAt {
  return (length, position) => {
    const bytes = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const got = readSync(fd, bytes, done, length - done, position + done);
      if (got === 0) break;
      done += got;
    }
    return bytes.subarray(0, done);
  };
}

/** Read up to `length` bytes into `buffer` at `offset`; fewer only where the file ends. */
async function readUpTo(
  handle: FileHandle,
  buffer: Uint8Array,
  offset: number,
  length: number,
  position: number,
): Promise<number> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(buffer, offset + done, length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

class Qcow2Reader {
  private readonly cache = new Map<number, Uint8Array>();
  private readonly spans: Uint8Array[] = [];
  private inflatedSinceGc = 0;

  constructor(
    private readonly handle: FileHandle,
    private readonly header: Qcow2Header,
    private readonly tables: Qcow2Tables,
    private readonly shown: string,
  ) {}

  async read(buffer: Uint8Array, length: number, position: number): Promise<void> {
    const { clusterSize, size } = this.header;
    if (!Number.isSafeInteger(position) || position < 0 || length < 0 || position + length > size) {
      throw new OperationError(
        `${this.shown}: read of ${length} bytes at ${position} is outside the ${size}-byte disk`,
      );
    }
    const reads: Array<Promise<void>> = [];
    const compressed: CompressedPiece[] = [];
    const cluster: Cluster = { kind: HOLE, host: 0, stored: 0 };
    // the pending run of clusters that follow each other in the file as in the disk
    let runDest = 0;
    let runHost = 0;
    let runLength = 0;
    const flush = () => {
      if (runLength > 0) reads.push(this.readRun(buffer, runDest, runLength, runHost));
      runLength = 0;
    };
    const end = position + length;
    for (let at = position, index = Math.floor(position / clusterSize); at < end; index++) {
      const within = at - index * clusterSize;
      const take = Math.min(clusterSize - within, end - at);
      const dest = at - position;
      this.tables.decode(index, cluster);
      if (cluster.kind === NORMAL) {
        const host = cluster.host + within;
        if (runLength > 0 && runHost + runLength === host) runLength += take;
        else {
          flush();
          runDest = dest;
          runHost = host;
          runLength = take;
        }
      } else {
        flush();
        if (cluster.kind === HOLE) buffer.fill(0, dest, dest + take);
        else compressed.push({ index, host: cluster.host, stored: cluster.stored, within, take, dest });
      }
      at += take;
    }
    flush();
    if (compressed.length > 0) reads.push(this.readCompressed(buffer, compressed));
    // let every read finish before reporting a failure: none may write into the buffer afterwards
    const results = await Promise.allSettled(reads);
    for (const result of results) if (result.status === "rejected") throw result.reason;
  }

  private async readRun(buffer: Uint8Array, dest: number, length: number, host: number): Promise<void> {
    const got = await readUpTo(this.handle, buffer, dest, length, host);
    if (got < length)
      throw new InputError(
        `${this.shown}: the file ended at byte ${host + got}, inside a data cluster (it shrank while being read?)`,
      );
  }

  /** Compressed clusters, in groups that lie close together in the file: one pread per group. */
  private async readCompressed(buffer: Uint8Array, pieces: CompressedPiece[]): Promise<void> {
    for (const group of groupsInFile(pieces)) {
      const start = (group[0] as CompressedPiece).host;
      // taken from the cache now: other reads may evict them while this one waits for the file
      const cached = group.map((piece) => this.cache.get(piece.index));
      const spanLength = group.reduce(
        (longest, piece, i) => (cached[i] ? longest : Math.max(longest, piece.host + piece.stored - start)),
        0,
      );
      const spare = this.spans.pop() ?? new Uint8Array(COMPRESSED_SPAN + 2 * this.header.clusterSize);
      // a group is one cluster longer than the span at most, unless a descriptor claims more
      const room = spanLength <= spare.length ? spare : new Uint8Array(spanLength);
      const span = room.subarray(0, await readUpTo(this.handle, room, 0, spanLength, start));
      for (const [i, piece] of group.entries()) {
        const cluster =
          cached[i] ?? this.inflate(span.subarray(piece.host - start, piece.host - start + piece.stored), piece);
        buffer.set(cluster.subarray(piece.within, piece.within + piece.take), piece.dest);
        if (piece.take < this.header.clusterSize) this.remember(piece.index, cluster);
      }
      this.spans.push(spare);
    }
  }

  private inflate(stored: Uint8Array, piece: CompressedPiece): Uint8Array {
    const { clusterSize } = this.header;
    const where = `${this.shown}: the compressed cluster at guest byte ${piece.index * clusterSize} (file byte ${piece.host})`;
    if (stored.length === 0)
      throw new InputError(`${where} lies past the end of the file (it shrank while being read?)`);
    let cluster: Uint8Array;
    try {
      cluster = inflateCluster(stored, clusterSize);
    } catch (error) {
      throw new InputError(
        `${where} does not inflate to one cluster (${(error as Error).message}): the image is damaged`,
      );
    }
    if (cluster.length !== clusterSize)
      throw new InputError(
        `${where} inflates to ${cluster.length} bytes, not a ${clusterSize}-byte cluster: the image is damaged`,
      );
    this.inflatedSinceGc += clusterSize;
    if (this.inflatedSinceGc >= INFLATED_BETWEEN_GCS) {
      this.inflatedSinceGc = 0;
      Bun.gc(true);
    }
    return cluster;
  }

  private remember(index: number, cluster: Uint8Array): void {
    this.cache.delete(index);
    this.cache.set(index, cluster);
    if (this.cache.size > CACHED_CLUSTERS) this.cache.delete(this.cache.keys().next().value as number);
  }
}

/**
 * One compressed cluster's raw deflate stream, inflated. Its stored bytes may run past the stream's
 * end (into the next cluster's): Bun's inflate stops there, and leaves less garbage per call than a
 * node:zlib stream. Or the stream may stop short of its end once the cluster is full, which qemu
 * accepts: a sync flush takes that. Throws when neither gives bytes; the caller checks the length.
 */
export function inflateCluster(stored: Uint8Array, clusterSize: number): Uint8Array {
  try {
    return Bun.inflateSync(stored as Uint8Array<ArrayBuffer>);
  } catch {
    const zlib = nodeZlib();
    return zlib.inflateRawSync(stored, {
      finishFlush: zlib.constants.Z_SYNC_FLUSH,
      maxOutputLength: clusterSize,
      chunkSize: clusterSize,
    });
  }
}

/** Open a qcow2 image; every refusal (UsageError) happens here, before anything is sent. */
export async function openQcow2(path: string, shown: string): Promise<ImageSource> {
  const info = await statImage(path, shown);
  if (!info.isFile()) throw new UsageError(`${shown}: a qcow2 image must be a regular file`);
  let handle: FileHandle;
  try {
    handle = await open(path, "r");
  } catch (error) {
    throw new OperationError(`cannot open ${shown}: ${(error as Error).message}`);
  }
  try {
    const readAt = readAtSync(handle.fd);
    const header = readQcow2Header(readAt, info.size, shown);
    const tables = new Qcow2Tables(header, readAt, info.size, shown);
    const reader = new Qcow2Reader(handle, header, tables, shown);
    return {
      path,
      size: header.size,
      mtimeMs: Math.floor(info.mtimeMs),
      isDevice: false,
      format: "qcow2",
      sequential: false,
      fd: undefined,
      reopen: () => openQcow2(path, shown),
      dataMap: tables.dataMap(),
      read: (buffer, length, position) => reader.read(buffer, length, position),
      close: () => handle.close(),
    };
  } catch (error) {
    await handle.close();
    if (error instanceof UsageError || error instanceof OperationError) throw error;
    throw new OperationError(`cannot read ${shown}: ${(error as Error).message}`);
  }
}
