// API 2.0 download: one GET of the drive from the direct host, following redirects (credentials
// only to the origin named), written at its offsets into FILE.part with all-zero 4 KiB blocks left
// as holes (as sparse as the API 1.0 download), renamed only on a full byte count; a rerun resumes
// the .part with Range when the server allows it. A FILE.gz / FILE.zst (or --format) goes through
// the compressed writer instead (download-compressed.ts). One run at a time per .part (download-part.ts).
import { closeSync, fstatSync, ftruncateSync, openSync, statSync } from "node:fs";
import { rename, rm } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { Context } from "../context.ts";
import { directClient, type Connection } from "../connect.ts";
import { InterruptedError, messageOf, OperationError, UsageError } from "../errors.ts";
import { abortOnInterrupt } from "../chunks/engine.ts";
import { checkOutputPath, exists, writeSparse } from "../files.ts";
import { BLOCK } from "../bytes.ts";
import { formatRate, humanBytes } from "../size.ts";
import type { DownloadRequest } from "../transfer.ts";
import { NO_TOTAL_LIMIT, Watchdog } from "./watchdog.ts";
import { getDrive } from "./drives.ts";
import { openPipe, pumpThroughPipe } from "./body-pipe.ts";
import { planPart, type PartPlan } from "./download-part.ts";
import { finishCompressed, receiveCompressed } from "./download-compressed.ts";
import { withSuffix } from "../formats/output-format.ts";

/** The file name a Content-Disposition header proposes, undecoded by any safety rule yet. */
export function dispositionName(header: string | null): string | undefined {
  if (!header) return undefined;
  // RFC 6266: filename* (RFC 5987, percent-encoded) wins over filename
  const extended = /(?:^|;)\s*filename\*\s*=\s*([^']*)'[^']*'([^;]*)/i.exec(header);
  if (extended) {
    try {
      return decodeURIComponent((extended[2] ?? "").trim());
    } catch {
      // a broken encoding: fall back to the plain parameter
    }
  }
  const quoted = /(?:^|;)\s*filename\s*=\s*"((?:[^"\\]|\\.)*)"/i.exec(header);
  if (quoted) return (quoted[1] ?? "").replace(/\\(.)/g, "$1");
  const token = /(?:^|;)\s*filename\s*=\s*([^;]*)/i.exec(header);
  return token ? (token[1] ?? "").trim() : undefined;
}

/**
 * A name the server proposes, reduced to a plain base name that stays in the current folder: the
 * last path segment (either separator), no control characters, not empty, not `.` or `..`, at most
 * 255 bytes. Anything else gives the fallback (the drive UUID).
 */
export function safeFileName(proposed: string | undefined, fallback: string): string {
  if (proposed === undefined) return fallback;
  const segment = proposed.split(/[/\\]/).pop() ?? "";
  const name = segment.replace(/[\x00-\x1f\x7f-\x9f]/g, "").trim();
  if (name === "" || /^\.+$/.test(name) || Buffer.byteLength(name) > 255) return fallback;
  return name;
}

/** `bytes START-END/TOTAL` of a 206 answer. */
export function parseContentRange(header: string | null): { start: number; end: number; total: number } | undefined {
  const match = /^\s*bytes\s+(\d+)-(\d+)\/(\d+)\s*$/i.exec(header ?? "");
  if (!match) return undefined;
  const [start, end, total] = [Number(match[1]), Number(match[2]), Number(match[3])];
  if (!Number.isSafeInteger(total) || start > end || end >= total) return undefined;
  return { start, end, total };
}

export function contentLength(response: Response): number | undefined {
  const text = response.headers.get("content-length");
  if (text === null || !/^\d+$/.test(text.trim())) return undefined;
  const value = Number(text);
  return Number.isSafeInteger(value) ? value : undefined;
}

interface Target {
  /** Where the finished file goes. */
  path: string;
  /** How messages name it: the argument as given, or the server's (sanitised) name. */
  shown: string;
}

function partSize(part: string): number {
  try {
    const info = statSync(part);
    return info.isFile() ? info.size : 0;
  } catch {
    return 0;
  }
}

export async function downloadDirect(ctx: Context, connection: Connection, request: DownloadRequest): Promise<string> {
  const client = directClient(connection);
  if (request.offset) throw new UsageError("-o/--offset is API 1.0 only: an API 2.0 download resumes from FILE.part by itself");
  if (request.file === "") throw new UsageError("empty FILE");
  let target: Target | undefined;
  if (request.file !== undefined) {
    target = { path: resolve(ctx.cwd, request.file), shown: request.file };
    // refused before anything is sent (exit 2)
    await checkOutputPath(target.path, request.force);
  }
  const path = `drives/${request.drive}/download/`;
  const shownPath = client.url(path).pathname;
  const watchdog = new Watchdog(connection.timeoutMs);
  // Ctrl-C / SIGTERM end the GET like a stall does: .part kept, one line, status 130 / 143
  const interrupt = abortOnInterrupt();
  const signal = AbortSignal.any([watchdog.signal, interrupt.controller.signal]);
  const get = (from: number) =>
    client.request("GET", path, {
      // identity: Bun's fetch would otherwise ask for gzip and inflate it, and the byte count would no
      // longer match Content-Length (nor a Range its offsets)
      headers: from > 0 ? { range: `bytes=${from}-`, "accept-encoding": "identity" } : { "accept-encoding": "identity" },
      timeoutMs: NO_TOTAL_LIMIT,
      signal,
      ok: (status) => status === 200 || status === 206 || (from > 0 && status === 416),
    });
  let plan: PartPlan | undefined;
  try {
    plan = target ? planPart(ctx, request, target.path) : undefined;
    let from = plan?.from ?? 0;
    let response = await get(from);
    if (!target) {
      const name = withSuffix(safeFileName(dispositionName(response.headers.get("content-disposition")), request.drive), request.format);
      target = { path: join(ctx.cwd, name), shown: name };
      if (!request.force && (await exists(target.path))) {
        await response.body?.cancel();
        // the name was only known from the answer, so this is not a status-2 call: something was sent
        throw new OperationError(`${name} exists (the server's name for drive ${request.drive}): pass --force to overwrite it, or give FILE`);
      }
      try {
        plan = planPart(ctx, request, target.path);
      } catch (error) {
        await response.body?.cancel();
        throw error;
      }
      from = plan.from;
      if (from > 0) {
        await response.body?.cancel();
        response = await get(from);
      }
    }
    const part = `${target.path}.part`;
    const { format, point, journalFile } = plan as PartPlan;
    const compressed = format === "raw" ? undefined : { ...target, format, journalFile, watchdog };
    if (from > 0) {
      const outcome = await acceptPartial(ctx, response, from, part, point?.size);
      if (outcome === "complete") {
        return compressed && point ? await finishCompressed(request, { ...compressed, from, point, total: from }) : await finish(ctx, target, request, part, from, from);
      }
      if (outcome === "restart") {
        ctx.log.info(`the server does not resume ${target.shown}.part from byte ${from}: starting again from 0`);
        if (response.status !== 200) response = await get(0);
        from = 0;
      }
    }
    const total = from > 0 ? (parseContentRange(response.headers.get("content-range")) as { total: number }).total : contentLength(response);
    if (total === undefined) {
      await response.body?.cancel();
      throw new OperationError(`the server sent drive ${request.drive} without a Content-Length: a cut download could not be told from a whole one`);
    }
    await checkTotal(connection, request.drive, total, response);
    if (compressed) return await receiveCompressed(ctx, request, response, { ...compressed, from, point: from > 0 ? point : undefined, total });
    const written = await receive(ctx, response, part, from, total, request.quiet, watchdog);
    return await finish(ctx, target, request, part, from + written, total);
  } catch (error) {
    const stoppedBy = interrupt.interrupted();
    if (stoppedBy) {
      const part = target && `${target.path}.part`;
      const kept = part ? partSize(part) : 0;
      const next = part && kept > 0 ? `${part} kept: run the same command again to resume` : "nothing was kept: run the same command again";
      throw new InterruptedError(`download of drive ${request.drive} stopped at ${humanBytes(kept)}: interrupted (${stoppedBy}); ${next}`, stoppedBy);
    }
    throw watchdog.translate(error, "GET", shownPath);
  } finally {
    plan?.lock.release();
    interrupt.remove();
    watchdog.stop();
  }
}

/**
 * The length the server announced must be the drive's size (one API call): a body that arrives
 * whole but holds less (or more) than the drive would be a wrong file under the final name.
 */
async function checkTotal(connection: Connection, drive: string, total: number, response: Response): Promise<void> {
  let size: number | undefined;
  try {
    size = (await getDrive(connection.client, drive)).size;
  } catch (error) {
    await response.body?.cancel();
    throw error;
  }
  if (size === undefined || size === total) return;
  await response.body?.cancel();
  throw new OperationError(`the server announced ${total} bytes for drive ${drive}, which holds ${size}: refusing a file that would not be the drive`);
}

/**
 * A ranged answer either continues FILE.part exactly, says it is already whole (416), or we
 * restart. `size`: the drive's size FILE.part was started for, when known (a compressed .part's journal).
 */
async function acceptPartial(ctx: Context, response: Response, from: number, part: string, size?: number): Promise<"append" | "complete" | "restart"> {
  if (response.status === 416) {
    const total = /^\s*bytes\s+\*\/(\d+)\s*$/i.exec(response.headers.get("content-range") ?? "")?.[1];
    await response.body?.cancel();
    if (total !== undefined && Number(total) === from && (size === undefined || size === from)) return "complete";
    return "restart";
  }
  if (response.status !== 206) return "restart";
  const range = parseContentRange(response.headers.get("content-range"));
  const length = contentLength(response);
  const sameDrive = size === undefined || range?.total === size;
  if (range && sameDrive && range.start === from && range.end === range.total - 1 && (length === undefined || length === range.total - from)) {
    ctx.log.info(`resuming ${part} from byte ${from}`);
    return "append";
  }
  await response.body?.cancel();
  return "restart";
}

/**
 * Bytes gathered before they are scanned and written: fetch hands the body over in pieces of any
 * size (53 bytes to 256 KiB seen here), zeros are found per whole 4 KiB block, and one positional
 * write per data run of a buffer costs fewer syscalls than one per piece.
 */
const GATHER = 1024 * 1024;

/**
 * Writes a body into FILE.part at its offsets, all-zero 4 KiB blocks left as holes. What a resume
 * relies on: the file's size is always the count of bytes received and written (holes included),
 * so a rerun asks for `Range: bytes=SIZE-`. A buffer's data runs are written before the file is
 * extended over its trailing zeros, so a crash in between leaves a shorter file, never a longer one.
 */
export class SparseWriter {
  private readonly buffer = new Uint8Array(GATHER);
  private fill = 0;
  /** Where the buffer's first byte goes: everything before it is in the file. */
  private start: number;
  /** The first buffer ends on the 4 KiB grid, so later ones start on it (aligned word scans). */
  private limit: number;

  constructor(
    private readonly fd: number,
    from: number,
  ) {
    this.start = from;
    this.limit = GATHER - (from % BLOCK);
  }

  /** Bytes received so far, the buffered ones included. */
  get received(): number {
    return this.start + this.fill;
  }

  /** Bytes in the file (its size). */
  get written(): number {
    return this.start;
  }

  /** Where the next bytes can be read to directly (never empty). */
  space(): Uint8Array {
    return this.buffer.subarray(this.fill, this.limit);
  }

  /** `n` bytes were put into space(). */
  commit(n: number): void {
    this.fill += n;
    if (this.fill === this.limit) this.flush();
  }

  add(chunk: Uint8Array): void {
    let at = 0;
    while (at < chunk.length) {
      const n = Math.min(chunk.length - at, this.limit - this.fill);
      this.buffer.set(n === chunk.length ? chunk : chunk.subarray(at, at + n), this.fill);
      this.fill += n;
      at += n;
      if (this.fill === this.limit) this.flush();
    }
  }

  flush(): void {
    if (this.fill === 0) return;
    const bytes = this.buffer.subarray(0, this.fill);
    const runs = writeSparse(this.fd, bytes, this.start);
    // zeros at the end are not written: extend the file over them, so its size still counts them
    if ((runs[runs.length - 1]?.[1] ?? 0) !== this.fill) ftruncateSync(this.fd, this.start + this.fill);
    this.start += this.fill;
    this.fill = 0;
    this.limit = GATHER;
  }
}

/** Stream the body into FILE.part from byte `from`, zero blocks left as holes; returns the bytes written. */
async function receive(
  ctx: Context,
  response: Response,
  part: string,
  from: number,
  total: number,
  quiet: boolean,
  watchdog: Watchdog,
): Promise<number> {
  const progress = ctx.progress({ label: "download", total, quiet });
  const started = performance.now();
  let fd: number | undefined;
  let writer: SparseWriter | undefined;
  try {
    // a fresh start (or a restart) truncates whatever an earlier run left: old bytes never show through a hole
    fd = openSync(part, from === 0 ? "w" : "r+", 0o644);
    if (from > 0 && fstatSync(fd).size !== from) throw new OperationError(`${part} changed while resuming`);
    writer = new SparseWriter(fd, from);
    const sink = writer;
    const piece = (length: number) => {
      if (sink.received + length > total) throw new OperationError(`the server sent more than the ${total} bytes it announced`);
      watchdog.touch();
    };
    const pipe = await openPipe();
    if (pipe) {
      await pumpThroughPipe(response, pipe, () => sink.space(), (n) => {
        piece(n);
        sink.commit(n);
        progress.update(sink.received);
      });
    } else {
      for await (const chunk of response.body ?? new ReadableStream<Uint8Array>()) {
        piece(chunk.length);
        sink.add(chunk);
        progress.update(sink.received);
      }
    }
    writer.flush();
  } catch (error) {
    progress.finish();
    // what arrived before the cut is right: keep it for the resume
    try {
      writer?.flush();
    } catch {
      // the disk failed too: the file holds what was written before
    }
    const got = writer?.written ?? from;
    if (fd !== undefined) closeSync(fd);
    const message = messageOf(watchdog.translate(error, "GET", "download"));
    // a cut before the first byte leaves an empty file: nothing to resume then
    if (got === 0) await rm(part, { force: true });
    const next = got > 0 ? `${part} kept: run the same command again to resume` : "nothing was kept: run the same command again";
    throw new OperationError(`download cut short at ${humanBytes(got)} of ${humanBytes(total)}: ${message}; ${next}`);
  }
  const allocated = fstatSync(fd).blocks * 512;
  closeSync(fd);
  const written = writer.written - from;
  progress.finish(
    `downloaded ${humanBytes(writer.written)}${from > 0 ? ` (resumed at ${humanBytes(from)})` : ""} (${formatRate(written, started)}), ` +
      `${humanBytes(allocated)} allocated`,
  );
  return written;
}

/** Rename FILE.part onto FILE only when it holds exactly what the server announced. */
async function finish(ctx: Context, target: Target, request: DownloadRequest, part: string, have: number, total: number): Promise<string> {
  const onDisk = partSize(part);
  if (have !== total || onDisk !== total) {
    throw new OperationError(
      `download of drive ${request.drive} cut short: ${onDisk} of ${total} bytes; ${part} kept: run the same command again to resume`,
    );
  }
  if (!request.force && (await exists(target.path))) {
    throw new OperationError(`${target.shown} appeared while downloading: kept it; the download is in ${part}`);
  }
  try {
    await rename(part, target.path);
  } catch (error) {
    throw new OperationError(`could not rename ${part} to ${target.path}: ${(error as Error).message}`);
  }
  // the absolute path, as the API 1.0 engine prints it: usable whatever the caller's folder
  return target.path;
}
