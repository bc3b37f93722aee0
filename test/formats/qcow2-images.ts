// qcow2 test images, made by qemu-img and qemu-io (Debian qemu-utils) in a temporary folder, and
// byte patches for the damaged ones.
import { closeSync, openSync, readSync, writeSync } from "node:fs";
import { join } from "node:path";
import { imageBytes } from "../images.ts";

export function qemu(tool: "qemu-img" | "qemu-io", ...args: string[]): string {
  const result = Bun.spawnSync([tool, ...args], { stdout: "pipe", stderr: "pipe" });
  if (result.exitCode !== 0) throw new Error(`${tool} ${args.join(" ")} failed: ${result.stderr.toString()}`);
  return result.stdout.toString();
}

const MiB = 1024 * 1024;
/** Not a multiple of any cluster size (qemu rounds the virtual size up to 512 bytes). */
export const SOURCE_SIZE = 5 * MiB + 12345;
/** Zero runs in the source: unaligned, cluster-sized and larger, and one inside a cluster. */
const ZERO_RUNS: Array<[number, number]> = [
  [196608, 327780],
  [3 * MiB + 4096, 3 * MiB + 8192],
  [4 * MiB, 4 * MiB + 200000],
];
/** Never written: a hole in the raw file. */
const HOLE: [number, number] = [1 * MiB, 2 * MiB];

/** The raw source: data, zero runs, and a hole left unwritten. */
export function writeSource(path: string): void {
  const bytes = imageBytes(SOURCE_SIZE, 7, [...ZERO_RUNS, HOLE]);
  const fd = openSync(path, "w");
  try {
    writeSync(fd, bytes, 0, HOLE[0], 0);
    writeSync(fd, bytes, HOLE[1], SOURCE_SIZE - HOLE[1], HOLE[1]);
  } finally {
    closeSync(fd);
  }
}

/** qemu's own reading of an image, as raw bytes. */
export async function qemuRaw(dir: string, image: string): Promise<Uint8Array> {
  const raw = join(dir, `reference-${Math.random().toString(36).slice(2)}.raw`);
  qemu("qemu-img", "convert", "-O", "raw", image, raw);
  const bytes = new Uint8Array(await Bun.file(raw).arrayBuffer());
  await Bun.file(raw).delete();
  return bytes;
}

export interface MapEntry {
  start: number;
  length: number;
  data: boolean;
}

/** qemu's map of an image: which ranges hold data (allocated, normal or compressed). */
export function qemuMap(image: string): MapEntry[] {
  return JSON.parse(qemu("qemu-img", "map", "--output=json", image)) as MapEntry[];
}

function readAt(path: string, length: number, position: number): Buffer {
  const fd = openSync(path, "r");
  try {
    const bytes = Buffer.alloc(length);
    readSync(fd, bytes, 0, length, position);
    return bytes;
  } finally {
    closeSync(fd);
  }
}

export function patch(path: string, position: number, bytes: Uint8Array): void {
  const fd = openSync(path, "r+");
  try {
    writeSync(fd, bytes, 0, bytes.length, position);
  } finally {
    closeSync(fd);
  }
}

export function u32(value: number): Uint8Array {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32BE(value);
  return bytes;
}

export function u64(value: bigint): Uint8Array {
  const bytes = Buffer.alloc(8);
  bytes.writeBigUInt64BE(value);
  return bytes;
}

export function readU64(path: string, position: number): bigint {
  return readAt(path, 8, position).readBigUInt64BE();
}

/** The file offset of the L2 entry of guest cluster `index`, through the active L1 table. */
export function l2EntryOffset(path: string, index: number): number {
  const header = readAt(path, 48, 0);
  const clusterBits = header.readUInt32BE(20);
  const perTable = 2 ** (clusterBits - 3);
  const l1Offset = Number(header.readBigUInt64BE(40));
  const table = Number(readU64(path, l1Offset + Math.floor(index / perTable) * 8) & 0x00fffffffffffe00n);
  if (table === 0) throw new Error(`${path}: no L2 table for cluster ${index}`);
  return table + (index % perTable) * 8;
}

export { MiB };
