// The compressed writer of downloads (lib/formats/compressed-output.ts) and its resume journal:
// pieces filled in any order come out in the drive's order as whole gzip members / zstd frames
// that decode to the exact bytes; the window bounds what is held; zero pieces reuse one compressed
// piece; a stop keeps whole pieces and reports a durable point; a resume appends after it.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { closeSync, openSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { CompressedOutput, pieceSizeFor, type ResumePoint } from "../../lib/formats/compressed-output.ts";
import { CompressedJournal, resumePointOf } from "../../lib/formats/compressed-journal.ts";
import { compressPiece } from "../../lib/formats/piece-compress.ts";
import { formatOfName, withSuffix } from "../../lib/formats/output-format.ts";
import type { CompressedFormat } from "../../lib/formats/output-format.ts";
import { imageBytes, sameBytes } from "../images.ts";

const PIECE = 64 * 1024;
const CHUNK = 16 * 1024;

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "drivekit-compressed-output-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const decode = (format: CompressedFormat, bytes: Uint8Array) =>
  new Uint8Array(format === "gzip" ? gunzipSync(bytes) : Bun.zstdDecompressSync(bytes));

/** A drive of data, an all-zero piece and an odd tail. */
function driveBytes(size: number, seed: number): Uint8Array {
  return imageBytes(size, seed, [[PIECE, 2 * PIECE]]);
}

/** Feed `bytes` to an output in chunks, in the order given; returns the output's end. */
async function feed(output: CompressedOutput, bytes: Uint8Array, order: number[], from = 0): Promise<ResumePoint> {
  await Promise.all(
    order.map(async (index) => {
      const start = from + index * CHUNK;
      const length = Math.min(CHUNK, bytes.length - start);
      const room = await output.slot(start, length);
      room.set(bytes.subarray(start, start + length));
      output.filled(start, length);
    }),
  );
  return output.finish();
}

/** 0, 1, 2... shuffled within each run of `span` (lanes finishing out of order, never far apart). */
function nearlyInOrder(count: number, span: number): number[] {
  const order: number[] = [];
  for (let start = 0; start < count; start += span) {
    const run = Array.from({ length: Math.min(span, count - start) }, (_, i) => start + i);
    order.push(...run.reverse());
  }
  return order;
}

for (const format of ["gzip", "zstd"] as const) {
  describe(format, () => {
    test("chunks filled out of order come out in order, as whole members / frames that decode to the drive's bytes", async () => {
      const size = 5 * PIECE + 12345;
      const bytes = driveBytes(size, 3);
      const path = join(dir, `order.${format}`);
      const fd = openSync(path, "w");
      const points: ResumePoint[] = [];
      const output = new CompressedOutput({
        fd,
        part: path,
        format,
        size,
        pieceSize: PIECE,
        window: 3,
        onDurable: (point) => points.push(point),
      });
      const end = await feed(output, bytes, nearlyInOrder(Math.ceil(size / CHUNK), 6));
      closeSync(fd);
      const written = readFileSync(path);
      expect(end).toEqual({ driveBytes: size, partLength: written.length });
      expect(sameBytes(decode(format, written), bytes)).toBe(true);
      // each piece is its own member / frame (at the normal or the fast level): the first one alone is the first piece
      const first = await Promise.all(
        [false, true].map(async (fast) => Buffer.concat(await compressPiece(format, bytes.subarray(0, PIECE), fast))),
      );
      expect(first.some((member) => sameBytes(written.subarray(0, member.length), member))).toBe(true);
      // a durable point was recorded at a piece boundary, within what was written
      expect(points.length).toBeGreaterThan(0);
      for (const point of points) expect(point.driveBytes % PIECE === 0 || point.driveBytes === size).toBe(true);
    });

    test("an empty drive is one empty member / frame, not an empty file", async () => {
      const path = join(dir, `empty.${format}`);
      const fd = openSync(path, "w");
      const output = new CompressedOutput({ fd, part: path, format, size: 0, pieceSize: PIECE });
      const end = await output.finish();
      closeSync(fd);
      expect(end.partLength).toBeGreaterThan(0);
      expect(decode(format, readFileSync(path)).length).toBe(0);
    });

    test("a stop keeps whole pieces (durable, reported) and drops the unfinished one; a resume from there decodes whole", async () => {
      const size = 4 * PIECE + 100;
      const bytes = driveBytes(size, 5);
      const path = join(dir, `stop.${format}`);
      let fd = openSync(path, "w");
      const points: ResumePoint[] = [];
      const output = new CompressedOutput({
        fd,
        part: path,
        format,
        size,
        pieceSize: PIECE,
        onDurable: (point) => points.push(point),
      });
      // pieces 0 and 1 whole, piece 2 half
      for (let start = 0; start < 2.5 * PIECE; start += CHUNK) {
        const room = await output.slot(start, CHUNK);
        room.set(bytes.subarray(start, start + CHUNK));
        output.filled(start, CHUNK);
      }
      const kept = await output.stop();
      closeSync(fd);
      expect(kept.driveBytes).toBe(2 * PIECE);
      expect(points.at(-1)).toEqual(kept);
      expect(statSync(path).size).toBe(kept.partLength);
      expect(() => output.filled(2 * PIECE, CHUNK)).toThrow(/stopped/);

      // bytes after the point (a run killed mid-write) are cut away when the next run starts
      writeFileSync(path, new Uint8Array(999).fill(1), { flag: "a" });
      const journal = CompressedJournal.start(
        join(dir, `stop-journal.${format}`),
        path,
        { file: path, drive: "d", size, format, pieceSize: PIECE },
        kept,
      );
      fd = journal.fd;
      const resumed = new CompressedOutput({ fd, part: path, format, size, pieceSize: PIECE, start: kept });
      const chunks = Math.ceil((size - kept.driveBytes) / CHUNK);
      const end = await feed(
        resumed,
        bytes,
        Array.from({ length: chunks }, (_, i) => i),
        kept.driveBytes,
      );
      closeSync(fd);
      journal.journal.remove();
      expect(end.driveBytes).toBe(size);
      const written = readFileSync(path);
      expect(written.length).toBe(end.partLength);
      expect(sameBytes(decode(format, written), bytes)).toBe(true);
    });
  });
}

test("a piece that completes while the compressors are busy takes the fast level; the output still decodes exactly", async () => {
  const size = 6 * PIECE;
  const bytes = imageBytes(size, 12);
  const path = join(dir, "busy.zst");
  const fd = openSync(path, "w");
  // every piece after the first completes while one is compressing: all but the first hurry
  const output = new CompressedOutput({ fd, part: path, format: "zstd", size, pieceSize: PIECE, window: 6, busyAt: 1 });
  for (let start = 0; start < size; start += PIECE) {
    (await output.slot(start, PIECE)).set(bytes.subarray(start, start + PIECE));
    output.filled(start, PIECE);
  }
  const end = await output.finish();
  closeSync(fd);
  expect(output.levels.pieces).toBe(6);
  expect(output.levels.fast).toBeGreaterThan(0);
  expect(output.levels.fast).toBeLessThan(6);
  expect(end.partLength).toBe(statSync(path).size);
  expect(sameBytes(decode("zstd", readFileSync(path)), bytes)).toBe(true);
});

test("a slot beyond the window waits until the first piece is written; an abort ends the wait", async () => {
  const size = 4 * PIECE;
  const bytes = imageBytes(size, 9);
  const path = join(dir, "window.zst");
  const fd = openSync(path, "w");
  const output = new CompressedOutput({ fd, part: path, format: "zstd", size, pieceSize: PIECE, window: 2 });
  await output.slot(PIECE, CHUNK);
  let granted = false;
  const beyond = output.slot(2 * PIECE, CHUNK).then((room) => {
    granted = true;
    return room;
  });
  const aborter = new AbortController();
  const aborted = output.slot(3 * PIECE, CHUNK, aborter.signal);
  aborter.abort(new Error("stop waiting"));
  await expect(aborted).rejects.toThrow("stop waiting");
  // a full turn of the event loop: still waiting, piece 0 is not written
  await new Promise((resolve) => setImmediate(resolve));
  expect(granted).toBe(false);
  for (let start = 0; start < PIECE; start += CHUNK) {
    (await output.slot(start, CHUNK)).set(bytes.subarray(start, start + CHUNK));
    output.filled(start, CHUNK);
  }
  const room = await beyond;
  expect(granted).toBe(true);
  expect(room.length).toBe(CHUNK);
  await output.stop();
  closeSync(fd);
});

test("all-zero pieces of one length reuse one compressed piece; zstd frames carry a checksum that is checked", async () => {
  const a = await compressPiece("zstd", new Uint8Array(PIECE));
  const b = await compressPiece("zstd", new Uint8Array(PIECE));
  expect(a).toBe(b);
  const data = imageBytes(PIECE, 4);
  const frame = Buffer.concat(await compressPiece("zstd", data));
  expect((frame[4] as number) & 0x04).toBe(0x04);
  expect(sameBytes(new Uint8Array(Bun.zstdDecompressSync(frame)), data)).toBe(true);
  const damaged = frame.slice();
  damaged[damaged.length - 1] = (damaged[damaged.length - 1] as number) ^ 1;
  expect(() => Bun.zstdDecompressSync(damaged)).toThrow();
});

test("pieces are a whole number of reads, about 4 MiB", () => {
  expect(pieceSizeFor(4 * 1024 * 1024)).toBe(4 * 1024 * 1024);
  expect(pieceSizeFor(64 * 1024)).toBe(4 * 1024 * 1024);
  expect(pieceSizeFor(3 * 1024 * 1024)).toBe(3 * 1024 * 1024);
});

test("names: the suffix picks the format; a default name gets the asked-for format's suffix once", () => {
  expect(formatOfName("disk.img.gz")).toBe("gzip");
  expect(formatOfName("DISK.ZST")).toBe("zstd");
  expect(formatOfName("disk.img")).toBe("raw");
  expect(withSuffix("web", "zstd")).toBe("web.zst");
  expect(withSuffix("web.zst", "zstd")).toBe("web.zst");
  expect(withSuffix("web.gz", "zstd")).toBe("web.gz.zst");
  expect(withSuffix("web", "raw")).toBe("web");
  expect(withSuffix("web", undefined)).toBe("web");
});

describe("resume journal", () => {
  const download = { file: "/out/disk.zst", drive: "d1", size: 10 * PIECE, format: "zstd" as const, pieceSize: PIECE };

  test("the last whole, consistent point counts; a torn line, a point past the .part or off the grid does not", () => {
    const journal = join(dir, "journal-points");
    const part = join(dir, "journal-points.part");
    const { fd, journal: record } = CompressedJournal.start(journal, part, download);
    closeSync(fd);
    writeFileSync(part, new Uint8Array(5000));
    record.record({ driveBytes: PIECE, partLength: 1000 });
    record.record({ driveBytes: 2 * PIECE, partLength: 2000 });
    record.close();
    expect(resumePointOf(journal, part, download)).toEqual({
      driveBytes: 2 * PIECE,
      partLength: 2000,
      size: download.size,
    });
    const text = readFileSync(journal, "utf8");
    writeFileSync(journal, `${text}${3 * PIECE} 9000\n${3 * PIECE + 1} 3000\n${4 * PIECE} 40`);
    // 9000 is past the .part's 5000 bytes, 3 PIECE + 1 is off the grid, the last line is torn
    expect(resumePointOf(journal, part, download)?.driveBytes).toBe(2 * PIECE);
    // another drive, format, piece size or drive size: no resume
    expect(resumePointOf(journal, part, { ...download, drive: "d2" })).toBeUndefined();
    expect(resumePointOf(journal, part, { ...download, format: "gzip" })).toBeUndefined();
    expect(resumePointOf(journal, part, { ...download, pieceSize: 2 * PIECE })).toBeUndefined();
    expect(resumePointOf(journal, part, { ...download, size: download.size + 1 })).toBeUndefined();
    // a raw download's journal (same place) is another kind
    writeFileSync(
      journal,
      `${JSON.stringify({ v: 1, kind: "download", file: download.file, size: download.size, chunk: PIECE, drive: "d1" })}\n1\n2\n`,
    );
    expect(resumePointOf(journal, part, download)).toBeUndefined();
  });

  test("start cuts the .part back to the point and rewrites the journal with it", () => {
    const journal = join(dir, "journal-start");
    const part = join(dir, "journal-start.part");
    writeFileSync(part, new Uint8Array(7000).fill(5));
    const { fd, journal: record } = CompressedJournal.start(journal, part, download, {
      driveBytes: PIECE,
      partLength: 3000,
    });
    closeSync(fd);
    record.close();
    expect(statSync(part).size).toBe(3000);
    expect(resumePointOf(journal, part, download)).toEqual({
      driveBytes: PIECE,
      partLength: 3000,
      size: download.size,
    });
  });
});
