// Every qcow2 openQcow2 cannot read faithfully is refused at open (before any drive exists) with
// one UsageError line: the file as the user typed it, the reason, and what to do.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { copyFileSync, mkdirSync, truncateSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { UsageError } from "../../lib/errors.ts";
import { openQcow2 } from "../../lib/formats/qcow2.ts";
import { sameBytes } from "../images.ts";
import { l2EntryOffset, MiB, patch, qemu, qemuRaw, readU64, u32, u64, writeSource } from "./qcow2-images.ts";

let dir: string;
let source: string;
/** A plain v3 image with 64 KiB clusters, copied and damaged by each test. */
let good: string;
/** The same as a compressed image. */
let compressed: string;

const SHOWN = "in.qcow2";
const FLATTEN = "flatten it first: qemu-img convert -O qcow2 in.qcow2 flat.qcow2";
const DAMAGED = "the image is truncated or damaged; check it with qemu-img check in.qcow2";

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "drivekit-qcow2-refusals-"));
  source = join(dir, "source.raw");
  writeSource(source);
  good = join(dir, "good.qcow2");
  qemu("qemu-img", "convert", "-O", "qcow2", "-o", "compat=1.1", source, good);
  compressed = join(dir, "compressed.qcow2");
  qemu("qemu-img", "convert", "-c", "-O", "qcow2", source, compressed);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

let copies = 0;
function copyOf(image: string): string {
  const copy = join(dir, `copy-${copies++}.qcow2`);
  copyFileSync(image, copy);
  return copy;
}

/** The refusal's message, checked to be a UsageError of one line that names the file. */
async function refusal(path: string): Promise<string> {
  const error = await openQcow2(path, SHOWN).then(
    async (image) => {
      await image.close();
      return undefined;
    },
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(UsageError);
  const message = (error as Error).message;
  expect(message.startsWith(`${SHOWN}: `)).toBe(true);
  expect(message).not.toContain("\n");
  return message;
}

const create = (out: string, ...options: string[]) =>
  qemu("qemu-img", "create", "-q", "-f", "qcow2", ...options, out, "1M");

test("bad magic", async () => {
  const path = copyOf(good);
  patch(path, 0, new Uint8Array([0x51, 0x46, 0x49, 0xfc]));
  expect(await refusal(path)).toBe(`${SHOWN}: not a qcow2 image (it does not begin with the qcow2 magic "QFI\\xfb")`);
  expect(await refusal(source)).toContain("not a qcow2 image");
});

test("versions other than 2 and 3", async () => {
  const path = copyOf(good);
  patch(path, 4, u32(4));
  expect(await refusal(path)).toBe(
    `${SHOWN}: qcow2 version 4 is not supported (only 2 and 3); convert it first: qemu-img convert -O qcow2 in.qcow2 new.qcow2`,
  );
  patch(path, 4, u32(1));
  expect(await refusal(path)).toContain("is a qcow version 1 image");
});

test("a backing file", async () => {
  const path = join(dir, "overlay.qcow2");
  qemu("qemu-img", "create", "-q", "-f", "qcow2", "-b", source, "-F", "raw", path);
  expect(await refusal(path)).toBe(
    `${SHOWN}: has a backing file (${source}), which holds part of its data; ${FLATTEN}`,
  );
});

test("encryption: LUKS, and the old AES", async () => {
  const path = join(dir, "luks.qcow2");
  // qemu-img times its key derivation by CPU time and fails ("Unable to get accurate CPU usage")
  // now and then on a loaded machine (4 of 60 tries here): up to 10 tries, for that error only
  for (let attempt = 1; ; attempt++) {
    try {
      create(
        path,
        "--object",
        "secret,id=s,data=x",
        "-o",
        "encrypt.format=luks,encrypt.key-secret=s,encrypt.iter-time=10",
      );
      break;
    } catch (error) {
      if (attempt >= 10 || !/accurate CPU usage/.test((error as Error).message)) throw error;
    }
  }
  expect(await refusal(path)).toMatch(
    /^in\.qcow2: is encrypted \(LUKS\) and drivekit does not decrypt; write a plain copy first: qemu-img convert .*encrypt\.key-secret=key -O qcow2 plain\.qcow2$/,
  );
  const aes = copyOf(good);
  patch(aes, 32, u32(1));
  expect(await refusal(aes)).toContain("is encrypted (AES)");
});

test("an external data file", async () => {
  const path = join(dir, "external.qcow2");
  create(path, "-o", `data_file=${join(dir, "external.raw")}`);
  expect(await refusal(path)).toBe(
    `${SHOWN}: keeps its data in an external data file (${join(dir, "external.raw")}); ${FLATTEN}`,
  );
  const raw = join(dir, "external-raw.qcow2");
  create(raw, "-o", `data_file=${join(dir, "external2.raw")},data_file_raw=on`);
  expect(await refusal(raw)).toContain("; upload that file instead (it is kept as a raw image), or flatten it first");
});

test("extended L2 entries", async () => {
  const path = join(dir, "extended.qcow2");
  create(path, "-o", "extended_l2=on");
  expect(await refusal(path)).toBe(
    `${SHOWN}: uses extended L2 entries (subclusters), which drivekit does not read; ${FLATTEN}`,
  );
});

test("a compression type other than zlib", async () => {
  const path = join(dir, "zstd.qcow2");
  create(path, "-o", "compression_type=zstd");
  expect(await refusal(path)).toBe(
    `${SHOWN}: compresses its clusters with zstd; drivekit inflates zlib only; convert it first: qemu-img convert -O qcow2 -o compression_type=zlib in.qcow2 new.qcow2`,
  );
});

test("the corrupt bit, and incompatible features it does not know", async () => {
  const corrupt = copyOf(good);
  patch(corrupt, 72, u64(1n << 1n));
  expect(await refusal(corrupt)).toBe(
    `${SHOWN}: is marked corrupt by qemu; repair it first: qemu-img check -r all in.qcow2`,
  );
  const unknown = copyOf(good);
  patch(unknown, 72, u64((1n << 10n) | (1n << 40n)));
  expect(await refusal(unknown)).toContain("uses incompatible features drivekit does not know (bit 10, bit 40)");
});

test("a dirty bit alone is fine: refcounts are not needed to read", async () => {
  const path = copyOf(good);
  patch(path, 72, u64(1n));
  const image = await openQcow2(path, SHOWN);
  try {
    const bytes = new Uint8Array(image.size);
    await image.read(bytes, bytes.length, 0);
    expect(sameBytes(bytes, await qemuRaw(dir, good))).toBe(true);
  } finally {
    await image.close();
  }
});

test("cluster sizes outside 512 B to 2 MiB", async () => {
  for (const bits of [8, 22]) {
    const path = copyOf(good);
    patch(path, 20, u32(bits));
    expect(await refusal(path)).toBe(
      `${SHOWN}: its cluster size 2^${bits} is outside qcow2's 512 B to 2 MiB: ${DAMAGED}`,
    );
  }
});

test("a virtual size of 0, or larger than any drive", async () => {
  const empty = join(dir, "empty.qcow2");
  qemu("qemu-img", "create", "-q", "-f", "qcow2", empty, "0");
  expect(await refusal(empty)).toBe(`${SHOWN}: its virtual size is 0 bytes: there is nothing to upload`);
  const huge = copyOf(good);
  patch(huge, 24, u64(1n << 60n));
  expect(await refusal(huge)).toContain("is larger than any drive: the image is truncated or damaged");
});

test("a truncated copy", async () => {
  const path = copyOf(good);
  truncateSync(path, 3 * MiB);
  expect(await refusal(path)).toMatch(
    /^in\.qcow2: the cluster at guest byte \d+ lies past the end of the file \(byte \d+ of 3145728\): the image is truncated or damaged; check it with qemu-img check in\.qcow2$/,
  );
  const headerOnly = copyOf(good);
  truncateSync(headerOnly, 60);
  expect(await refusal(headerOnly)).toContain("the file ends inside the qcow2 header (60 bytes)");
  const noTables = copyOf(good);
  truncateSync(noTables, 65536);
  expect(await refusal(noTables)).toContain("its L1 table at byte");
});

test("an L1 table, an L2 table or a cluster past the end of the file or misaligned", async () => {
  const l1PastEnd = copyOf(good);
  patch(l1PastEnd, 40, u64(1n << 40n));
  expect(await refusal(l1PastEnd)).toBe(
    `${SHOWN}: its L1 table at byte ${2 ** 40} lies outside the file (${Bun.file(good).size} bytes): ${DAMAGED}`,
  );

  const l1Offset = Number(readU64(good, 40));
  const l2PastEnd = copyOf(good);
  patch(l2PastEnd, l1Offset, u64((1n << 63n) | (1n << 32n)));
  expect(await refusal(l2PastEnd)).toBe(
    `${SHOWN}: L2 table 0 at byte ${2 ** 32} lies past the end of the file (${Bun.file(good).size} bytes): ${DAMAGED}`,
  );
  const l2Misaligned = copyOf(good);
  patch(l2Misaligned, l1Offset, u64(readU64(good, l1Offset) + 512n));
  expect(await refusal(l2Misaligned)).toContain("L2 table 0 at byte");
  expect(await refusal(l2Misaligned)).toContain("is not aligned to the 65536-byte clusters");

  const entry = l2EntryOffset(good, 2);
  const clusterPastEnd = copyOf(good);
  patch(clusterPastEnd, entry, u64((1n << 63n) | (1n << 36n)));
  expect(await refusal(clusterPastEnd)).toBe(
    `${SHOWN}: the cluster at guest byte 131072 lies past the end of the file (byte ${2 ** 36} of ${Bun.file(good).size}): ${DAMAGED}`,
  );
  const clusterMisaligned = copyOf(good);
  patch(clusterMisaligned, entry, u64(readU64(good, entry) + 4096n));
  expect(await refusal(clusterMisaligned)).toContain("the cluster at guest byte 131072 is at byte");

  const compressedEntry = l2EntryOffset(compressed, 0);
  const compressedPastEnd = copyOf(compressed);
  patch(compressedPastEnd, compressedEntry, u64((1n << 62n) | (1n << 40n)));
  expect(await refusal(compressedPastEnd)).toContain("the compressed cluster at guest byte 0 lies outside the file");
});

test("files that are not there or not files", async () => {
  expect(await refusal(join(dir, "missing.qcow2"))).toBe(`${SHOWN}: no such file`);
  const folder = join(dir, "folder.qcow2");
  mkdirSync(folder);
  expect(await refusal(folder)).toBe(`${SHOWN}: a qcow2 image must be a regular file`);
});
