// API 1.0 download into a compressed FILE.part (.gz / .zst): the raw download's parallel reads, each
// straight into its place in a piece of the ordered compressed writer; renamed to FILE only when
// every byte of the drive went in. A journal of durable points lets a rerun cut the .part back to
// the last one and read on from there.
import { closeSync, fstatSync } from "node:fs";
import { rename } from "node:fs/promises";
import { basename } from "node:path";
import type { Context } from "../context.ts";
import { readInto } from "./drives.ts";
import { messageOf, OperationError } from "../errors.ts";
import { chunkGrid, runChunks } from "../chunks/engine.ts";
import { exists } from "../files.ts";
import type { HttpClient } from "../http.ts";
import { logRetry, withRetry, type RetryPolicy } from "../retry.ts";
import { humanBytes } from "../size.ts";
import type { DownloadRequest } from "../transfer.ts";
import { CompressedOutput, compressionWindow, pieceSizeFor, type ResumePoint } from "../formats/compressed-output.ts";
import { CompressedJournal, resumePointOf } from "../formats/compressed-journal.ts";
import { compressedSummary, type CompressedFormat } from "../formats/output-format.ts";

export interface CompressedTarget {
  path: string;
  part: string;
  size: number;
  journalFile: string;
  format: CompressedFormat;
  concurrency: number;
  policy: Readonly<RetryPolicy>;
}

export async function downloadCompressed(
  ctx: Context,
  client: HttpClient,
  request: DownloadRequest,
  target: CompressedTarget,
): Promise<string> {
  const { path, part, size, journalFile, format } = target;
  const drive = request.drive;
  const chunk = request.chunk;
  const download = { file: path, drive, size, format, pieceSize: pieceSizeFor(chunk) };
  const point = resumePointOf(journalFile, part, download);
  if (point)
    ctx.log.info(
      `resuming the download of drive ${drive} into ${basename(part)} at ${humanBytes(point.driveBytes)} of ${humanBytes(size)}`,
    );
  else if (await exists(part))
    ctx.log.warn(`${basename(part)} exists without a record of what it holds: starting it over`);
  const { fd, journal } = CompressedJournal.start(journalFile, part, download, point);
  // room for the reads in flight on top of the pieces being compressed, so compression never lowers --concurrency
  const window = Math.ceil((target.concurrency * chunk) / download.pieceSize) + compressionWindow();
  const output = new CompressedOutput({
    fd,
    part,
    format,
    size,
    pieceSize: download.pieceSize,
    window,
    start: point,
    onDurable: (at) => journal.record(at),
  });

  const { count, pieceOf } = chunkGrid(size, chunk, 0);
  let retries = 0;
  const work = async (index: number, signal: AbortSignal): Promise<number> => {
    const [start, end] = pieceOf(index);
    const length = end - start;
    const room = await output.slot(start, length, signal);
    await withRetry(() => readInto(client, drive, start, length, room, signal), {
      policy: target.policy,
      signal,
      onRetry: logRetry(ctx.log, `read at ${start}`, () => retries++),
    });
    output.filled(start, length);
    return length;
  };
  const pending = (function* () {
    // a point is a piece boundary (a whole number of chunks) or the drive's end
    for (let index = Math.ceil((point?.driveBytes ?? 0) / chunk); index < count; index++) yield index;
  })();
  const resumeHint = () => `${basename(part)} is kept: rerun the same command in ${ctx.cwd} to resume`;
  const { seconds, progress } = await runChunks(ctx, {
    label: "download",
    what: `download of drive ${drive}`,
    total: size,
    done: point?.driveBytes ?? 0,
    pending,
    concurrency: target.concurrency,
    quiet: request.quiet,
    work,
    note: () => (retries ? `${retries} retries` : undefined),
    async onStop() {
      // whole pieces still go in and are recorded: the rerun starts after them
      await output.stop().catch(() => undefined);
      journal.close();
      closeSync(fd);
    },
    resumeHint,
  });
  let end: ResumePoint;
  try {
    end = await output.finish();
    if (end.driveBytes !== size || fstatSync(fd).size !== end.partLength) {
      throw new OperationError(`${part} holds ${end.driveBytes} of the drive's ${size} bytes`);
    }
  } catch (error) {
    await output.stop().catch(() => undefined);
    journal.close();
    closeSync(fd);
    progress.finish();
    throw new OperationError(`download of drive ${drive} stopped: ${messageOf(error)}; ${resumeHint()}`);
  }
  closeSync(fd);
  // the final name appears only now, complete; a FILE that showed up meanwhile is still protected
  if (!request.force && (await exists(path))) {
    journal.close();
    throw new OperationError(
      `${path} appeared during the download: the drive's data is in ${part} (pass --force to replace ${basename(path)})`,
    );
  }
  try {
    await rename(part, path);
  } catch (error) {
    journal.close();
    throw new OperationError(`cannot rename ${part} to ${path}: ${messageOf(error)}`);
  }
  journal.remove();
  progress.finish(
    `downloaded drive ${drive} (${humanBytes(size)}) to ${path} in ${seconds.toFixed(1)} s, ${compressedSummary(format, end.partLength, size, output.levels)}` +
      `${retries ? `, ${retries} retries` : ""}`,
  );
  return path;
}
