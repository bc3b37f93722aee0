// qcow2 images of every kind qemu writes, read through openQcow2 in uneven pieces and in parallel,
// byte for byte against qemu-img's own raw conversion, and their data maps against qemu-img map.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { constants, deflateRawSync } from "node:zlib";
import type { ImageSource } from "../../lib/chunks/image.ts";
import { InputError, OperationError } from "../../lib/errors.ts";
import { inflateCluster, openQcow2 } from "../../lib/formats/qcow2.ts";
import { hasQcow2Magic } from "../../lib/formats/qcow2-header.ts";
import { detectFormat } from "../../lib/formats/detect.ts";
import { sameBytes } from "../images.ts";
import {
  l2EntryOffset,
  MiB,
  patch,
  qemu,
  qemuMap,
  qemuRaw,
  readU64,
  SOURCE_SIZE,
  writeSource,
} from "./qcow2-images.ts";

let dir: string;
let source: string;

const convert = (out: string, ...options: string[]) =>
  qemu("qemu-img", "convert", "-O", "qcow2", ...options, source, out);
const io = (image: string, ...commands: string[]) =>
  qemu("qemu-io", "-f", "qcow2", ...commands.flatMap((command) => ["-c", command]), image);

/** Each image as qemu makes it from the source, then changed the way the name says. */
const IMAGES: Record<string, (out: string) => void> = {
  "v2 (compat=0.10)": (out) => convert(out, "-o", "compat=0.10"),
  "v3 (compat=1.1)": (out) => convert(out, "-o", "compat=1.1"),
  "v3 with 512-byte clusters": (out) => convert(out, "-o", "compat=1.1,cluster_size=512"),
  "v3 with 2 MiB clusters": (out) => convert(out, "-o", "cluster_size=2M"),
  "compressed (convert -c)": (out) => convert(out, "-c"),
  "compressed v2 with 4 KiB clusters": (out) => convert(out, "-c", "-o", "compat=0.10,cluster_size=4096"),
  "compressed with 512-byte clusters": (out) => convert(out, "-c", "-o", "cluster_size=512"),
  "compressed with 2 MiB clusters": (out) => convert(out, "-c", "-o", "cluster_size=2M"),
  "compressed, then partly overwritten": (out) => {
    convert(out, "-c");
    io(out, "write -P 0x5a 100000 700000", "write -P 0x33 4500000 70000");
  },
  "v3 with zero clusters (allocated, unmapped, and zeros inside a cluster)": (out) => {
    convert(out, "-o", "compat=1.1");
    io(out, "write -z 65536 131072", "write -z -u 2162688 196608", "write -z 3000 1000");
  },
  "v3 with discarded ranges": (out) => {
    convert(out, "-o", "compat=1.1");
    io(out, "discard 0 131072", "discard 4259840 65536");
  },
  "v2 with discarded ranges": (out) => {
    convert(out, "-o", "compat=0.10");
    io(out, "discard 0 131072", "discard 4259840 65536");
  },
  "v3 with internal snapshots (the active L1 is read)": (out) => {
    convert(out, "-o", "compat=1.1");
    qemu("qemu-img", "snapshot", "-c", "one", out);
    io(out, "write -P 0xab 100000 300000", "write -z 2097152 65536");
    qemu("qemu-img", "snapshot", "-c", "two", out);
    io(out, "write -P 0xcd 4194304 10000", "discard 655360 131072");
  },
  "v3 preallocated (metadata), partly written": (out) => {
    qemu("qemu-img", "create", "-q", "-f", "qcow2", "-o", "preallocation=metadata", out, String(SOURCE_SIZE));
    io(out, "write -P 0x11 70000 200000", "write -P 0x22 5000000 100000");
  },
  "dirty (lazy refcounts, writer killed)": (out) => {
    qemu("qemu-img", "create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", out, String(SOURCE_SIZE));
    // qemu-io's abort leaves the dirty bit set, as a crashed writer would; qemu-io exits by a signal
    Bun.spawnSync(
      [
        "qemu-io",
        "-t",
        "writeback",
        "-f",
        "qcow2",
        "-c",
        "write -P 0x44 100000 200000",
        "-c",
        "flush",
        "-c",
        "abort",
        out,
      ],
      { stderr: "pipe" },
    );
  },
};

/** Deterministic uneven piece sizes: odd bytes, sub-cluster, cluster-straddling, multi-MiB. */
const PIECES = [1, 511, 4097, 65535, 65537, 1 * MiB + 7, 333333, 2 * MiB + 3];

async function readInPieces(image: ImageSource): Promise<Uint8Array> {
  const out = new Uint8Array(image.size);
  for (let at = 0, turn = 0; at < image.size; turn++) {
    const length = Math.min(PIECES[turn % PIECES.length] as number, image.size - at);
    const piece = new Uint8Array(length);
    await image.read(piece, length, at);
    out.set(piece, at);
    at += length;
  }
  return out;
}

/** Pieces of uneven sizes, all read at once (the upload lanes read in parallel). */
async function readInParallel(image: ImageSource): Promise<Uint8Array> {
  const out = new Uint8Array(image.size);
  const reads: Array<Promise<void>> = [];
  for (let at = 0, turn = 3; at < image.size; turn++) {
    const length = Math.min(PIECES[turn % PIECES.length] as number, image.size - at);
    reads.push(image.read(out.subarray(at, at + length), length, at));
    at += length;
  }
  await Promise.all(reads);
  return out;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "drivekit-qcow2-"));
  source = join(dir, "source.raw");
  writeSource(source);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe.each(Object.keys(IMAGES))("%s", (name) => {
  let path: string;
  let expected: Uint8Array;
  let image: ImageSource;

  beforeAll(async () => {
    path = join(dir, `${Object.keys(IMAGES).indexOf(name)}.qcow2`);
    IMAGES[name]?.(path);
    expected = await qemuRaw(dir, path);
    image = await openQcow2(path, "in.qcow2");
  });

  afterAll(async () => {
    await image.close();
  });

  test("opens as a random-access decoded image of its virtual size", () => {
    expect(image.format).toBe("qcow2");
    expect(image.sequential).toBe(false);
    expect(image.fd).toBeUndefined();
    expect(image.isDevice).toBe(false);
    expect(image.path).toBe(path);
    expect(image.size).toBe(expected.length);
  });

  test("reads as qemu-img convert -O raw does, in uneven pieces, in parallel and whole", async () => {
    expect(sameBytes(await readInPieces(image), expected)).toBe(true);
    expect(sameBytes(await readInParallel(image), expected)).toBe(true);
    const whole = new Uint8Array(image.size);
    await image.read(whole, image.size, 0);
    expect(sameBytes(whole, expected)).toBe(true);
  });

  test("its data map has qemu's holes as holes and never a data cluster as one", () => {
    const map = image.dataMap;
    if (!map) throw new Error("no data map");
    const entries = qemuMap(path);
    expect(entries.length).toBeGreaterThan(0);
    entries.forEach((entry, i) => {
      const end = entry.start + entry.length;
      if (entry.data) {
        for (const at of [entry.start, entry.start + Math.floor(entry.length / 2), end - 1])
          expect(map.nextData(at)).toBe(at);
      } else {
        const nextData = entries.slice(i + 1).find((later) => later.data)?.start ?? image.size;
        for (const at of [entry.start, end - 1]) expect(map.nextData(at)).toBe(nextData);
      }
    });
    expect(map.nextData(image.size)).toBe(image.size);
  });

  test("reopens from the start", async () => {
    const again = await image.reopen?.();
    if (!again) throw new Error("no reopen");
    try {
      const piece = new Uint8Array(100000);
      await again.read(piece, piece.length, image.size - piece.length);
      expect(sameBytes(piece, expected.subarray(image.size - piece.length))).toBe(true);
    } finally {
      await again.close();
    }
  });
});

test("the source's data and holes survive into the images (the fixtures test what they claim)", async () => {
  const path = join(dir, "check.qcow2");
  convert(path, "-o", "compat=1.1");
  const expected = await qemuRaw(dir, path);
  const sourceBytes = new Uint8Array(await Bun.file(source).arrayBuffer());
  expect(sameBytes(expected.subarray(0, SOURCE_SIZE), sourceBytes)).toBe(true);
  expect(expected.length % 65536).not.toBe(0);
  const entries = qemuMap(path);
  expect(entries.some((entry) => !entry.data)).toBe(true);
  expect(entries.some((entry) => entry.data)).toBe(true);
});

test("the qcow2 magic, and only the magic: the header reader and format detection agree", () => {
  const cases: Array<[number[], boolean]> = [
    [[0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3], true],
    [[0x51, 0x46, 0x49, 0xfb], true],
    [[0x51, 0x46, 0x49], false],
    [[0x51, 0x46, 0x49, 0xfc, 0, 0, 0, 3], false],
    [[0x1f, 0x8b, 8, 0], false],
    [[], false],
  ];
  for (const [bytes, qcow2] of cases) {
    const head = new Uint8Array(bytes);
    expect(hasQcow2Magic(head)).toBe(qcow2);
    expect(detectFormat(head) === "qcow2").toBe(qcow2);
  }
});

test("reads outside the disk are refused", async () => {
  const path = join(dir, "bounds.qcow2");
  convert(path);
  const image = await openQcow2(path, "in.qcow2");
  try {
    await expect(image.read(new Uint8Array(10), 10, image.size - 5)).rejects.toThrow(OperationError);
    await expect(image.read(new Uint8Array(10), 10, -1)).rejects.toThrow(OperationError);
  } finally {
    await image.close();
  }
});

test("a compressed cluster whose bytes do not inflate fails the read with where and why", async () => {
  const path = join(dir, "bad-deflate.qcow2");
  convert(path, "-c");
  // the first compressed cluster's descriptor: offset in the low bits (62 - (16 - 8) = 54 of them)
  const entry = readU64(path, l2EntryOffset(path, 0));
  expect(entry & (1n << 62n)).not.toBe(0n);
  const host = Number(entry & ((1n << 54n) - 1n));
  patch(path, host, new Uint8Array(512).fill(0xff));
  const image = await openQcow2(path, "in.qcow2");
  try {
    const error = await image.read(new Uint8Array(65536), 65536, 0).then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(InputError);
    expect((error as Error).message).toMatch(
      /^in\.qcow2: the compressed cluster at guest byte 0 \(file byte \d+\) does not inflate .*: the image is damaged$/,
    );
  } finally {
    await image.close();
  }
});

test("a compressed cluster inflates whether its stream ends exactly, runs into the next cluster's bytes, or stops once the cluster is full", () => {
  const cluster = new Uint8Array(65536).map((_, i) => (i * 7) ^ (i >> 9));
  const finished = deflateRawSync(cluster);
  const trailing = Buffer.concat([finished, Buffer.alloc(300, 0xab)]);
  // a stream flushed but never finished: all of the cluster's bytes, no final block
  const unfinished = deflateRawSync(cluster, { finishFlush: constants.Z_SYNC_FLUSH });
  for (const stored of [finished, trailing, unfinished])
    expect(sameBytes(inflateCluster(stored, 65536), cluster)).toBe(true);
  // a stream cut before the cluster is full gives fewer bytes, which the reader refuses as damaged
  expect(inflateCluster(finished.subarray(0, finished.length - 50), 65536).length).toBeLessThan(65536);
});
