// openInput: the format from the first bytes (or forced), the size (--size, zstd frame headers,
// a counting pass for gzip), decoded reads in order with gaps, and every refusal: xz, bzip2, a
// forced format without its magic, stdin without --size, truncated or damaged data, an image
// larger or smaller than its size.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { zstdCompressSync } from "node:zlib";
import { InputError, OperationError, UsageError } from "../../lib/errors.ts";
import type { ImageSource } from "../../lib/chunks/image.ts";
import { openInput, type InputOptions } from "../../lib/formats/open.ts";
import { detectFormat } from "../../lib/formats/detect.ts";
import { imageBytes, sameBytes, zstdWithoutSize } from "../images.ts";

const SIZE = 3 * 1024 * 1024 + 777;
const bytes = imageBytes(SIZE, 5, [[1 << 20, 2 << 20]]);
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "drivekit-open-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function write(name: string, content: Uint8Array): Promise<string> {
  const path = join(dir, name);
  await Bun.write(path, content);
  return path;
}

const gzipMembers = (...parts: Uint8Array[]) =>
  Buffer.concat(parts.map((part) => Bun.gzipSync(part as Uint8Array<ArrayBuffer>)));

function logger() {
  const lines: string[] = [];
  return {
    lines,
    log: {
      info: (text: string) => void lines.push(`info ${text}`),
      warn: (text: string) => void lines.push(`warn ${text}`),
    },
  };
}

/** Read the whole image in ascending 1 MiB reads, as an engine would (every read issued at once, in order). */
async function readAll(image: ImageSource, piece = 1024 * 1024): Promise<Uint8Array> {
  const out = new Uint8Array(image.size);
  const reads: Promise<void>[] = [];
  for (let at = 0; at < image.size; at += piece) {
    const length = Math.min(piece, image.size - at);
    reads.push(image.read(out.subarray(at, at + length), length, at));
  }
  await Promise.all(reads);
  return out;
}

const stdinOf =
  (content: Uint8Array, piece = 65536) =>
  () =>
    new ReadableStream<Uint8Array>({
      start(controller) {
        for (let at = 0; at < content.length; at += piece) controller.enqueue(content.slice(at, at + piece));
        controller.close();
      },
    });

async function opened(path: string, options: InputOptions = {}) {
  const image = await openInput(path, path, options);
  try {
    return { image, read: await readAll(image) };
  } finally {
    await image.close();
  }
}

test("the format comes from the first bytes", () => {
  expect(detectFormat(Bun.gzipSync(new Uint8Array(10)))).toBe("gzip");
  expect(detectFormat(zstdCompressSync(new Uint8Array(10)))).toBe("zstd");
  expect(detectFormat(new Uint8Array([0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3]))).toBe("qcow2");
  expect(detectFormat(new Uint8Array([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0, 4]))).toBe("xz");
  expect(detectFormat(new TextEncoder().encode("BZh91AY&"))).toBe("bzip2");
  expect(detectFormat(new TextEncoder().encode("BZhx"))).toBe("raw");
  expect(detectFormat(new Uint8Array(0))).toBe("raw");
  expect(detectFormat(bytes)).toBe("raw");
});

for (const [label, make] of [
  ["gzip, one member", async () => Bun.gzipSync(bytes as Uint8Array<ArrayBuffer>)],
  [
    "gzip, three members",
    async () => gzipMembers(bytes.subarray(0, 100_000), bytes.subarray(100_000, 2_000_000), bytes.subarray(2_000_000)),
  ],
  ["zstd with its content size", async () => zstdCompressSync(bytes)],
  ["zstd without a content size", () => zstdWithoutSize(bytes)],
  [
    "zstd, two frames and a skippable one",
    async () =>
      Buffer.concat([
        zstdCompressSync(bytes.subarray(0, 1_000_000)),
        Buffer.from([0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 1, 2, 3]),
        zstdCompressSync(bytes.subarray(1_000_000)),
      ]),
  ],
] as const) {
  test(`${label}: decoded byte for byte, its size found`, async () => {
    const encoded = await make();
    const path = await write(`image-${label.replace(/\W+/g, "-")}`, encoded);
    const { lines, log } = logger();
    const { image, read } = await opened(path, { log });
    expect(image.format).toBe(label.startsWith("gzip") ? "gzip" : "zstd");
    expect(image.sequential).toBe(true);
    expect(image.fd).toBeUndefined();
    expect(image.size).toBe(SIZE);
    expect(sameBytes(read, bytes)).toBe(true);
    const counted = label.startsWith("gzip") || label.includes("without");
    expect(lines.some((line) => line.includes("decompressing it once to count (--size SIZE skips this)"))).toBe(
      counted,
    );
    // --verify's second pass
    const again = await image.reopen!();
    try {
      expect(sameBytes(await readAll(again, 4 * 1024 * 1024), bytes)).toBe(true);
    } finally {
      await again.close();
    }
  });
}

test("reads with gaps decode and drop the bytes between (a resume); a read backwards is refused", async () => {
  const path = await write("gaps.gz", Bun.gzipSync(bytes as Uint8Array<ArrayBuffer>));
  const image = await openInput(path, "gaps.gz", { size: SIZE });
  try {
    const a = new Uint8Array(1000);
    const b = new Uint8Array(SIZE - 3_000_000);
    const reads = [image.read(a, 1000, 500_000), image.read(b, b.length, 3_000_000)];
    await Promise.all(reads);
    expect(sameBytes(a, bytes.subarray(500_000, 501_000))).toBe(true);
    expect(sameBytes(b, bytes.subarray(3_000_000))).toBe(true);
    const error = await image.read(new Uint8Array(10), 10, 0).catch((caught) => caught);
    expect(error).toBeInstanceOf(OperationError);
    expect(error.message).toContain("can only be read forwards");
  } finally {
    await image.close();
  }
});

test("stdin: raw, gzip or zstd as its first bytes say; --size required; a stream shorter than --size is an error, never padded", async () => {
  for (const encoded of [bytes, Bun.gzipSync(bytes as Uint8Array<ArrayBuffer>), await zstdWithoutSize(bytes)]) {
    const image = await openInput("-", "-", { size: SIZE, stdin: stdinOf(encoded) });
    expect(image.path).toBe("-");
    expect(image.reopen).toBeUndefined();
    expect(sameBytes(await readAll(image), bytes)).toBe(true);
    await image.close();
  }
  const missing = await openInput("-", "-", { stdin: stdinOf(bytes) }).catch((caught) => caught);
  expect(missing).toBeInstanceOf(UsageError);
  expect(missing.message).toBe(
    "reading the image from stdin (-) needs --size SIZE: a stream does not tell how large its image is",
  );

  const empty = await openInput("-", "-", { size: SIZE, stdin: stdinOf(new Uint8Array(0)) }).catch((caught) => caught);
  expect(empty).toBeInstanceOf(UsageError);
  expect(empty.message).toBe("stdin is empty: there is nothing to upload (did the command feeding it fail?)");
  const nothing = await openInput("-", "-", { size: SIZE, stdin: stdinOf(Bun.gzipSync(new Uint8Array(0))) });
  const decodedNothing = await readAll(nothing).catch((caught) => caught);
  await nothing.close();
  expect(decodedNothing).toBeInstanceOf(InputError);
  expect(decodedNothing.message).toBe("stdin decodes to nothing (0 bytes): there is no image in it");

  // a pipe that ends early is a producer that died, never an image to pad
  const short = await openInput("-", "-", {
    size: SIZE + 5000,
    stdin: stdinOf(Bun.gzipSync(bytes as Uint8Array<ArrayBuffer>)),
  });
  const cut = await readAll(short).catch((caught) => caught);
  await short.close();
  expect(cut).toBeInstanceOf(InputError);
  expect(cut.message).toBe(
    `stdin ended at byte ${SIZE}, before --size ${SIZE + 5000}: did the command feeding it stop early? A pipe is never padded: give the image's exact size (resize.ts makes the drive larger afterwards)`,
  );
});

test("a raw file: --size smaller is refused, larger pads with zeros as a hole", async () => {
  const path = await write("disk.raw", bytes);
  const small = await openInput(path, "disk.raw", { size: SIZE - 1 }).catch((caught) => caught);
  expect(small).toBeInstanceOf(UsageError);
  expect(small.message).toBe(`--size ${SIZE - 1} is smaller than disk.raw (${SIZE} bytes): the image would not fit`);
  const { lines, log } = logger();
  const image = await openInput(path, "disk.raw", { size: SIZE + 4096, log });
  const read = await readAll(image);
  await image.close();
  expect(image.fd).toBeUndefined();
  expect(image.dataMap?.nextData(SIZE)).toBe(SIZE + 4096);
  expect(sameBytes(read.subarray(0, SIZE), bytes)).toBe(true);
  expect(read.subarray(SIZE).every((byte) => byte === 0)).toBe(true);
  expect(lines).toEqual(["info disk.raw is 3.0 MiB: the drive is 3.0 MiB (--size), the rest of it zeros"]);
  const plain = await openInput(path, "disk.raw");
  expect(plain.fd).toBeNumber();
  expect(plain.sequential).toBe(false);
  await plain.close();
});

test("refused before anything is read: xz and bzip2 (with the pipe that works), a forced format without its magic", async () => {
  const xz = await write("disk.raw.xz", new Uint8Array([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0, 4, 1, 2]));
  const error = await openInput(xz, "disk.raw.xz").catch((caught) => caught);
  expect(error).toBeInstanceOf(UsageError);
  expect(error.message).toBe(
    "disk.raw.xz is xz-compressed, which upload.ts does not decode (no xz in the runtime; it cannot seek either): xz -dc disk.raw.xz | upload.ts - --size SIZE (the image's size)",
  );
  const bz = await write("disk.bz2", new TextEncoder().encode("BZh91AY&SY"));
  expect((await openInput(bz, "disk.bz2").catch((caught) => caught)).message).toContain(
    "bzip2 -dc disk.bz2 | upload.ts - --size SIZE",
  );
  const stdinXz = await openInput("-", "-", {
    size: 100,
    stdin: stdinOf(new Uint8Array([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0, 4])),
  }).catch((caught) => caught);
  expect(stdinXz.message).toContain("... | xz -dc | upload.ts - --size SIZE");
  const raw = await write("plain.img", bytes);
  for (const format of ["gzip", "zstd", "qcow2"] as const) {
    const forced = await openInput(raw, "plain.img", { format }).catch((caught) => caught);
    expect(forced).toBeInstanceOf(UsageError);
    expect(forced.message).toStartWith(`plain.img is not ${format} (its first bytes say no known format)`);
  }
  // raw is always possible: the file's bytes as they are
  const gz = await write("as-is.gz", Bun.gzipSync(bytes as Uint8Array<ArrayBuffer>));
  const asIs = await openInput(gz, "as-is.gz", { format: "raw" });
  expect(asIs.format).toBe("raw");
  await asIs.close();
});

test("truncated or damaged data: refused at open when the size is found first, else at the byte it fails", async () => {
  const gz = Bun.gzipSync(bytes as Uint8Array<ArrayBuffer>);
  const truncated = await write("cut.gz", gz.subarray(0, gz.length - 5000));
  const counting = await openInput(truncated, "cut.gz").catch((caught) => caught);
  expect(counting).toBeInstanceOf(InputError);
  expect(counting.message).toMatch(
    /^cut\.gz: the gzip data ends early, after \d+ bytes of the image \(a truncated file\?\)$/,
  );
  // with --size nothing is counted: the read that meets the end fails
  const image = await openInput(truncated, "cut.gz", { size: SIZE });
  const failed = await readAll(image).catch((caught) => caught);
  await image.close();
  expect(failed).toBeInstanceOf(InputError);
  expect(failed.message).toContain("the gzip data ends early");

  const damaged = Buffer.from(gz);
  damaged.fill(0xff, 200_000, 200_010);
  const bad = await openInput(await write("bad.gz", damaged), "bad.gz").catch((caught) => caught);
  expect(bad).toBeInstanceOf(InputError);
  expect(bad.message).toMatch(/^bad\.gz: damaged gzip data after \d+ bytes of the image \(.+\)$/);

  const zst = zstdCompressSync(bytes);
  const cutZst = await openInput(await write("cut.zst", zst.subarray(0, zst.length - 100)), "cut.zst").catch(
    (caught) => caught,
  );
  expect(cutZst).toBeInstanceOf(InputError);
  expect(cutZst.message).toMatch(
    /^cut\.zst: the zstd data ends inside a frame at compressed byte \d+ \(a truncated file\?\)$/,
  );
  const junk = await openInput(
    await write("junk.zst", Buffer.concat([zst, Buffer.from("junk after")])),
    "junk.zst",
  ).catch((caught) => caught);
  expect(junk.message).toBe(
    `junk.zst: not a zstd frame at compressed byte ${zst.length} (data after the last frame, or a damaged file)`,
  );
});

test("a zstd frame that needs a dictionary is refused with status 2 before anything is read", async () => {
  // magic, descriptor (single segment, 1-byte dictionary ID), dictionary 7, content size 5, then a raw last block
  const framed = new Uint8Array([0x28, 0xb5, 0x2f, 0xfd, 0x21, 7, 5, 0x29, 0, 0, 1, 2, 3, 4, 5]);
  const error = await openInput(await write("dict.zst", framed), "dict.zst").catch((caught) => caught);
  expect(error).toBeInstanceOf(UsageError);
  expect(error.message).toBe(
    "dict.zst needs zstd dictionary 7 to decompress, which upload.ts does not have: zstd -D DICTIONARY -dc ... | upload.ts - --size SIZE",
  );
});

test("an image longer than --size is an error at the last byte; a zstd one is refused at open", async () => {
  const gz = await write("long.gz", Bun.gzipSync(bytes as Uint8Array<ArrayBuffer>));
  const image = await openInput(gz, "long.gz", { size: SIZE - 1000 });
  const error = await readAll(image).catch((caught) => caught);
  await image.close();
  expect(error).toBeInstanceOf(InputError);
  expect(error.message).toBe(
    `long.gz holds more than ${SIZE - 1000} bytes (byte ${SIZE - 1000} is not the end): --size ${SIZE - 1000} is smaller than the image: give its whole size (or, for a file, leave --size out)`,
  );
  const zst = await write("long.zst", zstdCompressSync(bytes));
  const refused = await openInput(zst, "long.zst", { size: SIZE - 1000 }).catch((caught) => caught);
  expect(refused).toBeInstanceOf(UsageError);
  expect(refused.message).toBe(
    `--size ${SIZE - 1000} is smaller than long.zst (${SIZE} bytes decoded, as its zstd frames record): the image would not fit`,
  );
  const stdin = await openInput("-", "-", { size: SIZE - 1, stdin: stdinOf(bytes) });
  const tooLong = await readAll(stdin).catch((caught) => caught);
  await stdin.close();
  expect(tooLong.message).toStartWith(`stdin holds more than ${SIZE - 1} bytes`);
});

test("a zstd frame header that records too few or too many bytes is an error, not a cut or padded image", async () => {
  for (const delta of [10, -10]) {
    const zst = Buffer.from(zstdCompressSync(bytes));
    // a 4-byte content size, after the descriptor and (unless single-segment) the window byte
    expect(zst[4]! >> 6).toBe(2);
    zst.writeUInt32LE(SIZE + delta, zst[4]! & 0x20 ? 5 : 6);
    const image = await openInput(await write("lies.zst", zst), "lies.zst");
    expect(image.size).toBe(SIZE + delta);
    const error = await readAll(image).catch((caught) => caught);
    await image.close();
    expect(error).toBeInstanceOf(InputError);
    expect(error.message).toMatch(/^lies\.zst: damaged zstd data after \d+ bytes of the image/);
  }
});
