// The qcow2 header (versions 2 and 3) and its extensions, checked before any table is read: an
// image this reader cannot turn into exactly the disk qemu would show is refused here, at open,
// before a drive is created. Header fields are big-endian.
import { UsageError } from "../errors.ts";
import { shellWord } from "../files.ts";

/** Reads up to `length` bytes at `position` (fewer at the end of the file). */
export type ReadAt = (length: number, position: number) => Uint8Array;

export interface Qcow2Header {
  version: 2 | 3;
  clusterBits: number;
  clusterSize: number;
  /** The virtual disk's size in bytes: the drive's size. */
  size: number;
  /** L1 entries that cover the virtual disk (the table may hold more, never read). */
  l1Entries: number;
  l1Offset: number;
}

const V2_HEADER_LENGTH = 72;
const V3_HEADER_LENGTH = 104;
/** qemu reads clusters of 512 B to 2 MiB only. */
const MIN_CLUSTER_BITS = 9;
const MAX_CLUSTER_BITS = 21;
/** No drive is this large: a bigger virtual size is a damaged header. */
const MAX_VIRTUAL_SIZE = 2 ** 50;
/** qemu's own limit on the active L1 table (32 MiB). */
const MAX_L1_ENTRIES = (32 * 1024 * 1024) / 8;

const INCOMPATIBLE_DIRTY = 0;
const INCOMPATIBLE_CORRUPT = 1;
const INCOMPATIBLE_DATA_FILE = 2;
const INCOMPATIBLE_COMPRESSION_TYPE = 3;
const INCOMPATIBLE_EXTENDED_L2 = 4;
const KNOWN_INCOMPATIBLE = [
  INCOMPATIBLE_DIRTY,
  INCOMPATIBLE_CORRUPT,
  INCOMPATIBLE_DATA_FILE,
  INCOMPATIBLE_COMPRESSION_TYPE,
  INCOMPATIBLE_EXTENDED_L2,
];
const AUTOCLEAR_RAW_DATA_FILE = 1;

const EXTENSION_END = 0;
const EXTENSION_FEATURE_NAMES = 0x6803f857;
const EXTENSION_ENCRYPTION = 0x0537be77;
const EXTENSION_DATA_FILE = 0x44415441;

const MAGIC = [0x51, 0x46, 0x49, 0xfb]; // "QFI\xfb"

/** qcow2 files begin with "QFI\xfb": the one test of it (format detection and the header reader). */
export function hasQcow2Magic(head: Uint8Array): boolean {
  return head.length >= MAGIC.length && MAGIC.every((byte, i) => head[i] === byte);
}

function refusal(shown: string, reason: string, fix: string): UsageError {
  return new UsageError(`${shown}: ${reason}; ${fix}`);
}

const flattenHint = (shown: string) => `flatten it first: qemu-img convert -O qcow2 ${shellWord(shown)} flat.qcow2`;

/** The refusal for tables or clusters that cannot be where the header or a table says. */
export function damaged(shown: string, what: string): UsageError {
  return refusal(
    shown,
    `${what}: the image is truncated or damaged`,
    `check it with qemu-img check ${shellWord(shown)}`,
  );
}

/** A 64-bit field as a number: exact below 2^53, and anything larger fails every bound checked here. */
function u64(view: DataView, at: number): number {
  return view.getUint32(at) * 2 ** 32 + view.getUint32(at + 4);
}

/** Bit numbers set in a 64-bit feature field. */
function bitsSet(view: DataView, at: number): number[] {
  const bits: number[] = [];
  for (let bit = 0; bit < 64; bit++) {
    const word = view.getUint32(bit < 32 ? at + 4 : at);
    if ((word >>> (bit % 32)) & 1) bits.push(bit);
  }
  return bits;
}

/** Printable text of a name stored in the image (for messages only). */
function printable(bytes: Uint8Array): string {
  return new TextDecoder()
    .decode(bytes)
    .replace(/\0+$/, "")
    .replace(/[^\x20-\x7e]/g, "?");
}

interface Extension {
  type: number;
  data: Uint8Array;
}

/** The header extensions: typed, length-prefixed, 8-byte aligned, ended by type 0, all inside the first cluster. */
function extensionsOf(cluster: Uint8Array, from: number, shown: string): Extension[] {
  const view = new DataView(cluster.buffer, cluster.byteOffset, cluster.length);
  const found: Extension[] = [];
  let at = from;
  // each pass moves at least 8 bytes forward, so the loop ends within the cluster
  while (at + 8 <= cluster.length) {
    const type = view.getUint32(at);
    const length = view.getUint32(at + 4);
    if (type === EXTENSION_END) return found;
    if (at + 8 + length > cluster.length)
      throw damaged(shown, `header extension 0x${type.toString(16)} runs past the first cluster`);
    found.push({ type, data: cluster.subarray(at + 8, at + 8 + length) });
    at += 8 + Math.ceil(length / 8) * 8;
  }
  return found;
}

/** Names of incompatible features from the image's own feature name table, for the refusal of unknown bits. */
function featureNames(extensions: Extension[]): Map<number, string> {
  const names = new Map<number, string>();
  for (const extension of extensions.filter((one) => one.type === EXTENSION_FEATURE_NAMES)) {
    for (let at = 0; at + 48 <= extension.data.length; at += 48) {
      if (extension.data[at] === 0)
        names.set(extension.data[at + 1] as number, printable(extension.data.subarray(at + 2, at + 48)));
    }
  }
  return names;
}

/** Read and check the header; throws UsageError for anything this reader cannot faithfully read. */
export function readQcow2Header(readAt: ReadAt, fileSize: number, shown: string): Qcow2Header {
  const head = readAt(V3_HEADER_LENGTH + 8, 0);
  if (!hasQcow2Magic(head))
    throw new UsageError(`${shown}: not a qcow2 image (it does not begin with the qcow2 magic "QFI\\xfb")`);
  if (head.length < 8) throw damaged(shown, `the file ends inside the qcow2 header (${fileSize} bytes)`);
  const view = new DataView(head.buffer, head.byteOffset, head.length);
  const version = view.getUint32(4);
  const convertHint = `convert it first: qemu-img convert -O qcow2 ${shellWord(shown)} new.qcow2`;
  if (version === 1) throw refusal(shown, "is a qcow version 1 image, which drivekit does not read", convertHint);
  if (version !== 2 && version !== 3)
    throw refusal(shown, `qcow2 version ${version} is not supported (only 2 and 3)`, convertHint);
  const headerLength =
    version === 2 ? V2_HEADER_LENGTH : head.length >= V3_HEADER_LENGTH ? view.getUint32(100) : V3_HEADER_LENGTH;
  if (head.length < Math.min(headerLength, V3_HEADER_LENGTH))
    throw damaged(shown, `the file ends inside the qcow2 header (${fileSize} bytes)`);

  const clusterBits = view.getUint32(20);
  if (clusterBits < MIN_CLUSTER_BITS || clusterBits > MAX_CLUSTER_BITS)
    throw damaged(shown, `its cluster size 2^${clusterBits} is outside qcow2's 512 B to 2 MiB`);
  const clusterSize = 2 ** clusterBits;
  if (version === 3 && (headerLength < V3_HEADER_LENGTH || headerLength > clusterSize))
    throw damaged(
      shown,
      `its header length ${headerLength} is outside ${V3_HEADER_LENGTH} to the cluster size ${clusterSize}`,
    );

  const cluster = readAt(clusterSize, 0);
  const extensions = extensionsOf(cluster, headerLength, shown);
  const incompatible = version === 3 ? bitsSet(view, 72) : [];
  const autoclear = version === 3 ? bitsSet(view, 88) : [];

  if (incompatible.includes(INCOMPATIBLE_CORRUPT))
    throw refusal(shown, "is marked corrupt by qemu", `repair it first: qemu-img check -r all ${shellWord(shown)}`);

  const cryptMethod = view.getUint32(32);
  if (cryptMethod !== 0 || extensions.some((one) => one.type === EXTENSION_ENCRYPTION)) {
    const kind = cryptMethod === 1 ? "AES" : cryptMethod === 2 ? "LUKS" : `method ${cryptMethod}`;
    throw refusal(
      shown,
      `is encrypted (${kind}) and drivekit does not decrypt`,
      `write a plain copy first: qemu-img convert --object secret,id=key,file=KEYFILE --image-opts driver=qcow2,file.filename=${shellWord(shown)},encrypt.key-secret=key -O qcow2 plain.qcow2`,
    );
  }

  const backingOffset = u64(view, 8);
  if (backingOffset !== 0) {
    const backingLength = view.getUint32(16);
    const name =
      backingLength <= 1023 && backingOffset + backingLength <= fileSize
        ? printable(readAt(backingLength, backingOffset))
        : "its name is unreadable";
    throw refusal(shown, `has a backing file (${name}), which holds part of its data`, flattenHint(shown));
  }

  const dataFile = extensions.find((one) => one.type === EXTENSION_DATA_FILE);
  if (incompatible.includes(INCOMPATIBLE_DATA_FILE) || dataFile) {
    const name = dataFile ? printable(dataFile.data) : "unnamed";
    const fix =
      autoclear.includes(AUTOCLEAR_RAW_DATA_FILE) && dataFile
        ? `upload that file instead (it is kept as a raw image), or ${flattenHint(shown)}`
        : flattenHint(shown);
    throw refusal(shown, `keeps its data in an external data file (${name})`, fix);
  }

  if (incompatible.includes(INCOMPATIBLE_EXTENDED_L2))
    throw refusal(shown, "uses extended L2 entries (subclusters), which drivekit does not read", flattenHint(shown));

  const compressionType = headerLength > V3_HEADER_LENGTH ? (head[V3_HEADER_LENGTH] as number) : 0;
  if (compressionType !== 0 || incompatible.includes(INCOMPATIBLE_COMPRESSION_TYPE)) {
    const kind = compressionType === 1 ? "zstd" : compressionType === 0 ? "an unnamed type" : `type ${compressionType}`;
    throw refusal(
      shown,
      `compresses its clusters with ${kind}; drivekit inflates zlib only`,
      `convert it first: qemu-img convert -O qcow2 -o compression_type=zlib ${shellWord(shown)} new.qcow2`,
    );
  }

  const unknown = incompatible.filter((bit) => !KNOWN_INCOMPATIBLE.includes(bit));
  if (unknown.length > 0) {
    const names = featureNames(extensions);
    const listed = unknown.map((bit) => (names.has(bit) ? `bit ${bit}: ${names.get(bit)}` : `bit ${bit}`)).join(", ");
    throw refusal(shown, `uses incompatible features drivekit does not know (${listed})`, convertHint);
  }

  const size = u64(view, 24);
  if (size === 0) throw new UsageError(`${shown}: its virtual size is 0 bytes: there is nothing to upload`);
  if (size > MAX_VIRTUAL_SIZE) throw damaged(shown, `its virtual size ${size} bytes is larger than any drive`);

  const clusters = Math.ceil(size / clusterSize);
  const l1Entries = Math.ceil(clusters / (clusterSize / 8));
  const l1Size = view.getUint32(36);
  const l1Offset = u64(view, 40);
  if (l1Entries > MAX_L1_ENTRIES)
    throw damaged(shown, `its L1 table would need ${l1Entries} entries, more than qemu allows`);
  if (l1Size < l1Entries)
    throw damaged(shown, `its L1 table (${l1Size} entries) does not cover its virtual size (${l1Entries} needed)`);
  if (l1Offset % clusterSize !== 0)
    throw damaged(shown, `its L1 table at byte ${l1Offset} is not aligned to the ${clusterSize}-byte clusters`);
  if (l1Offset === 0 || l1Offset + l1Entries * 8 > fileSize)
    throw damaged(shown, `its L1 table at byte ${l1Offset} lies outside the file (${fileSize} bytes)`);

  return { version, clusterBits, clusterSize, size, l1Entries, l1Offset };
}
