// API 2.0 download into a compressed FILE.part (.gz / .zst): the GET's body, copied into the
// pieces of the ordered compressed writer, renamed to FILE only when the
// announced drive size went in whole. A journal of durable points lets a retry or a rerun cut the
// .part back to the last one and ask for the rest with a Range.
import { closeSync, fstatSync, ftruncateSync, openSync } from "node:fs";
import { rm } from "node:fs/promises";
import type { Progress } from "../context.ts";
import { ApiError, messageOf, OperationError } from "../errors.ts";
import { publishPart } from "../files.ts";
import { formatRate, humanBytes } from "../size.ts";
import type { DownloadRequest } from "../transfer.ts";
import { CompressedOutput, PIECE_TARGET, type ResumePoint } from "../formats/compressed-output.ts";
import { CompressedJournal } from "../formats/compressed-journal.ts";
import { compressedSummary, type CompressedFormat } from "../formats/output-format.ts";
import type { Watchdog } from "./watchdog.ts";
import { bodyFailure } from "./download-retry.ts";

export interface CompressedReceive {
  /** Where the finished file goes, and how messages name it. */
  path: string;
  shown: string;
  format: CompressedFormat;
  journalFile: string;
  /** The drive byte the body starts at: 0, or the resume point's. */
  from: number;
  point?: ResumePoint;
  /** The drive's size, as the answer announced it. */
  total: number;
  watchdog: Watchdog;
  /** The run's progress line, which goes on over its attempts. */
  progress: Progress;
}

/**
 * A full collection every this many drive bytes: the body's pieces and each compressed piece are
 * left behind, which Bun's GC does not count as pressure. Each full GC pauses the main thread that
 * feeds the compressors: on 1 GiB to .zst (bench/RESULTS-formats.md) every 64 MiB took 2.68 s and
 * 147 MiB of peak RSS, every 128 MiB 2.36 s and 161 MiB, every 256 MiB 2.35 s and 182 MiB.
 */
const GC_EVERY = 128 * 1024 * 1024;

/** Where the body's next bytes go: the rest of the current piece; past the end, a spare to catch a body that runs over. */
function roomFor(
  output: CompressedOutput,
  received: number,
  total: number,
  spare: Uint8Array,
): Promise<Uint8Array> | Uint8Array {
  if (received >= total) return spare;
  const pieceEnd = Math.min(total, (Math.floor(received / PIECE_TARGET) + 1) * PIECE_TARGET);
  return output.slot(received, pieceEnd - received);
}

/** Rename the complete FILE.part onto FILE (never over one that appeared meanwhile, without --force); its journal goes. */
export async function publishCompressed(
  request: DownloadRequest,
  target: Pick<CompressedReceive, "path" | "shown" | "journalFile">,
): Promise<string> {
  const part = `${target.path}.part`;
  await publishPart(part, target.path, request.force, target.shown);
  await rm(target.journalFile, { force: true });
  return target.path;
}

/**
 * The body into FILE.part, compressed (publishCompressed then makes it FILE). A failure leaves
 * the whole pieces recorded (none: no .part) and is thrown as what it means for a retry (bodyFailure).
 */
export async function receiveCompressed(
  request: DownloadRequest,
  response: Response,
  target: CompressedReceive,
): Promise<void> {
  const { format, from, total, watchdog, progress } = target;
  const part = `${target.path}.part`;
  const download = { file: target.path, drive: request.drive, size: total, format, pieceSize: PIECE_TARGET };
  const { fd, journal } = CompressedJournal.start(target.journalFile, part, download, target.point);
  const output = new CompressedOutput({
    fd,
    part,
    format,
    size: total,
    pieceSize: PIECE_TARGET,
    start: target.point,
    onDurable: (at) => journal.record(at),
  });
  const started = performance.now();
  const spare = new Uint8Array(64 * 1024);
  let received = from;
  let sinceGc = 0;
  const onBytes = (n: number) => {
    if (received + n > total) throw new OperationError(`the server sent more than the ${total} bytes it announced`);
    watchdog.touch();
    output.filled(received, n);
    received += n;
    sinceGc += n;
    if (sinceGc >= GC_EVERY) {
      sinceGc = 0;
      Bun.gc(true);
    }
    progress.update(received);
  };
  let end: ResumePoint;
  try {
    // the body as a JS stream, not through the raw download's pipe: a pipe read waits on the
    // runtime's thread pool behind the compressions, which held the download to about one piece
    // compressing at a time (1.0-1.2 s for 256 MiB on loopback where this takes 0.75-0.9 s)
    for await (const chunk of response.body ?? new ReadableStream<Uint8Array>()) {
      // bounded: each step takes at least one byte of the chunk, or throws past the end
      for (let at = 0; at < chunk.length; ) {
        const room = await roomFor(output, received, total, spare);
        const n = Math.min(room.length, chunk.length - at);
        room.set(chunk.subarray(at, at + n));
        onBytes(n);
        at += n;
      }
    }
    // a connection closed cleanly before the announced length: a cut like any other
    if (received !== total)
      throw new ApiError({
        kind: "network",
        message: `the answer ended at byte ${received} of ${total}`,
        method: "GET",
        path: "download",
      });
    end = await output.finish();
    if (fstatSync(fd).size !== end.partLength)
      throw new OperationError(`${part} is ${fstatSync(fd).size} bytes, not the ${end.partLength} written`);
  } catch (error) {
    // whole pieces still go in and are recorded: the retry (or rerun) starts after them
    const kept = await output.stop().catch(() => undefined);
    journal.close();
    closeSync(fd);
    if ((kept?.driveBytes ?? from) === 0) {
      // nothing a retry could use
      await rm(part, { force: true });
      await rm(target.journalFile, { force: true });
    }
    throw bodyFailure(error, watchdog);
  }
  closeSync(fd);
  journal.close();
  progress.finish(
    `downloaded ${humanBytes(total)}${from > 0 ? ` (resumed at ${humanBytes(from)})` : ""} (${formatRate(total - from, started)}), ` +
      compressedSummary(format, end.partLength, total, output.levels),
  );
}

/** A .part whose journal says it holds the whole drive (a run stopped before its rename): cut to that length, then FILE. */
export async function finishCompressed(
  request: DownloadRequest,
  target: Pick<CompressedReceive, "path" | "shown" | "journalFile"> & { point: ResumePoint },
): Promise<string> {
  const part = `${target.path}.part`;
  try {
    const fd = openSync(part, "r+");
    try {
      ftruncateSync(fd, target.point.partLength);
    } finally {
      closeSync(fd);
    }
  } catch (error) {
    throw new OperationError(`cannot finish ${part}: ${messageOf(error)}`);
  }
  return await publishCompressed(request, target);
}
