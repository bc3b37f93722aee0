// API 2.0 download: one GET of the drive from the direct host, following redirects (credentials
// only to the origin named), into FILE.part, renamed only on a full byte count; a rerun resumes
// the .part with Range when the server allows it.
import { closeSync, fstatSync, openSync, statSync, writeSync } from "node:fs";
import { rename, rm } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { Context } from "../context.ts";
import { directClient, type Connection } from "../connect.ts";
import { messageOf, OperationError, UsageError } from "../errors.ts";
import { checkOutputPath, exists } from "../files.ts";
import { formatRate, humanBytes } from "../size.ts";
import type { DownloadRequest } from "../transfer.ts";
import { NO_TOTAL_LIMIT, Watchdog } from "./watchdog.ts";

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
  const get = (from: number) =>
    client.request("GET", path, {
      // identity: Bun's fetch would otherwise ask for gzip and inflate it, and the byte count would no
      // longer match Content-Length (nor a Range its offsets)
      headers: from > 0 ? { range: `bytes=${from}-`, "accept-encoding": "identity" } : { "accept-encoding": "identity" },
      timeoutMs: NO_TOTAL_LIMIT,
      signal: watchdog.signal,
      ok: (status) => status === 200 || status === 206 || (from > 0 && status === 416),
    });
  try {
    let from = target ? partSize(`${target.path}.part`) : 0;
    let response = await get(from);
    if (!target) {
      const name = safeFileName(dispositionName(response.headers.get("content-disposition")), request.drive);
      target = { path: join(ctx.cwd, name), shown: name };
      if (!request.force && (await exists(target.path))) {
        await response.body?.cancel();
        // the name was only known from the answer, so this is not a status-2 call: something was sent
        throw new OperationError(`${name} exists (the server's name for drive ${request.drive}): pass --force to overwrite it, or give FILE`);
      }
      from = partSize(`${target.path}.part`);
      if (from > 0) {
        await response.body?.cancel();
        response = await get(from);
      }
    }
    const part = `${target.path}.part`;
    if (from > 0) {
      const outcome = await acceptPartial(ctx, response, from, part);
      if (outcome === "complete") return await finish(ctx, target, request, part, from, from);
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
    const written = await receive(ctx, response, part, from, total, request.quiet, watchdog);
    return await finish(ctx, target, request, part, from + written, total);
  } catch (error) {
    throw watchdog.translate(error, "GET", shownPath);
  } finally {
    watchdog.stop();
  }
}

/** A ranged answer either continues FILE.part exactly, says it is already whole (416), or we restart. */
async function acceptPartial(ctx: Context, response: Response, from: number, part: string): Promise<"append" | "complete" | "restart"> {
  if (response.status === 416) {
    const total = /^\s*bytes\s+\*\/(\d+)\s*$/i.exec(response.headers.get("content-range") ?? "")?.[1];
    await response.body?.cancel();
    if (total !== undefined && Number(total) === from) return "complete";
    return "restart";
  }
  if (response.status !== 206) return "restart";
  const range = parseContentRange(response.headers.get("content-range"));
  const length = contentLength(response);
  if (range && range.start === from && range.end === range.total - 1 && (length === undefined || length === range.total - from)) {
    ctx.log.info(`resuming ${part} from byte ${from}`);
    return "append";
  }
  await response.body?.cancel();
  return "restart";
}

/** Stream the body into FILE.part from byte `from`; returns the bytes written. */
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
  let written = 0;
  try {
    if (from === 0) {
      // Bun.write streams a response natively into the file (fast, flat memory); progress and the
      // stall watchdog watch the file grow.
      let seen = 0;
      const poll = setInterval(() => {
        const size = partSize(part);
        if (size !== seen) {
          seen = size;
          watchdog.touch();
          progress.update(size);
        }
      }, 200);
      try {
        written = await Bun.write(part, response);
      } finally {
        clearInterval(poll);
      }
    } else {
      // a resumed body is appended at its offset, piece by piece
      const fd = openSync(part, "r+");
      try {
        if (fstatSync(fd).size !== from) throw new OperationError(`${part} changed while resuming`);
        for await (const chunk of response.body as ReadableStream<Uint8Array>) {
          let at = 0;
          while (at < chunk.length) at += writeSync(fd, chunk, at, chunk.length - at, from + written + at);
          written += chunk.length;
          watchdog.touch();
          progress.update(from + written);
        }
      } finally {
        closeSync(fd);
      }
    }
  } catch (error) {
    progress.finish();
    const got = partSize(part);
    const message = messageOf(watchdog.translate(error, "GET", "download"));
    // the cut may come before Bun.write made the file, or leave it empty: nothing to resume then
    if (got === 0) await rm(part, { force: true });
    const next = got > 0 ? `${part} kept: run the same command again to resume` : "nothing was kept: run the same command again";
    throw new OperationError(`download cut short at ${humanBytes(got)} of ${humanBytes(total)}: ${message}; ${next}`);
  }
  progress.finish(`downloaded ${humanBytes(from + written)}${from > 0 ? ` (resumed at ${humanBytes(from)})` : ""} (${formatRate(written, started)})`);
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
