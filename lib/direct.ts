// API 2.0 direct upload and download (CloudSigma): one POST of the raw image to the direct host, one
// GET (with redirects) to fetch it back. Both stream: memory stays flat whatever the image size.
import { closeSync, fstatSync, openSync, readFileSync, readSync, statSync, writeSync } from "node:fs";
import { rename, rm } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { RunContext } from "./cli.ts";
import type { Connection } from "./connect.ts";
import { isAllZero } from "./drives.ts";
import { ApiError, OperationError, UsageError } from "./errors.ts";
import { checkOutputPath, exists } from "./files.ts";
import { classifyError, type HttpClient } from "./http.ts";
import { streamPost, StreamPostError, type StreamPostAnswer } from "./rawpost.ts";
import { createProgress, type Progress } from "./progress.ts";
import { humanBytes } from "./size.ts";
import type { DownloadRequest, UploadRequest } from "./transfer.ts";

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i;
const EXACT_UUID = new RegExp(`^${UUID.source}$`, "i");
/** Bytes compared per step in --verify. */
const PIECE = 1024 * 1024;
/** The transfer itself may take hours: HttpClient's whole-request timeout is replaced by a stall watchdog. */
const NO_TOTAL_LIMIT = 2 ** 31 - 1;
const DEFAULT_TIMEOUT_MS = 120_000;

// ---- pure helpers (exported for tests) ----

/** The new drive's UUID from the upload answer: JSON (a string, `{uuid}`, `{objects: [{uuid}]}`) or plain text. */
export function parseUploadAnswer(text: string): string | undefined {
  const trimmed = text.trim();
  let value: unknown = trimmed;
  try {
    value = JSON.parse(trimmed);
  } catch {
    // plain text, as curl users see it
  }
  const pick = (item: unknown): unknown => {
    if (typeof item === "string") return item.trim();
    if (Array.isArray(item)) return item.length === 1 ? pick(item[0]) : undefined;
    if (item && typeof item === "object") {
      const record = item as Record<string, unknown>;
      if (typeof record.uuid === "string") return record.uuid;
      if (typeof record.drive === "string") return record.drive;
      if (Array.isArray(record.objects)) return pick(record.objects);
    }
    return undefined;
  };
  const uuid = pick(value);
  return typeof uuid === "string" && EXACT_UUID.test(uuid) ? uuid.toLowerCase() : undefined;
}

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

function contentLength(response: Response): number | undefined {
  const text = response.headers.get("content-length");
  if (text === null || !/^\d+$/.test(text.trim())) return undefined;
  const value = Number(text);
  return Number.isSafeInteger(value) ? value : undefined;
}

// ---- the image ----

/** Bytes in a regular file or a block device (whose stat size is 0: ask sysfs). */
export function imageSize(path: string): number {
  let info: ReturnType<typeof statSync>;
  try {
    info = statSync(path);
  } catch (error) {
    const code = (error as { code?: string }).code;
    throw new UsageError(`cannot read ${path}: ${code === "ENOENT" ? "no such file" : ((error as Error).message ?? code)}`);
  }
  if (info.isFile()) return info.size;
  if (info.isBlockDevice()) {
    const rdev = Number(info.rdev);
    // glibc's gnu_dev_major / gnu_dev_minor
    const major = ((rdev >>> 8) & 0xfff) | (Math.floor(rdev / 2 ** 32) & ~0xfff);
    const minor = (rdev & 0xff) | ((rdev >>> 12) & ~0xff);
    try {
      return Number(readFileSync(`/sys/dev/block/${major}:${minor}/size`, "utf8").trim()) * 512;
    } catch {
      throw new UsageError(`cannot tell the size of block device ${path} (no /sys/dev/block/${major}:${minor}/size)`);
    }
  }
  throw new UsageError(`${path} is not a regular file or a block device`);
}

// ---- stall watchdog ----

/**
 * Aborts when nothing moved for `timeoutMs`: a long transfer is fine as long as it progresses, and
 * the user's --timeout keeps its meaning ("how long to wait for the other side").
 */
class Watchdog {
  private readonly controller = new AbortController();
  private last = performance.now();
  private readonly timer: ReturnType<typeof setInterval>;
  stalled = false;

  constructor(readonly timeoutMs: number) {
    this.timer = setInterval(() => {
      if (performance.now() - this.last < timeoutMs) return;
      this.stalled = true;
      this.controller.abort();
    }, Math.max(50, Math.min(1000, timeoutMs / 4)));
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  touch(): void {
    this.last = performance.now();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Turn the abort it caused into a timeout error; anything else passes unchanged. */
  translate(error: unknown, method: string, path: string): unknown {
    if (this.stalled && (error as Error)?.name === "AbortError") {
      return new ApiError("timeout", `nothing moved for ${Math.round(this.timeoutMs / 1000)} s`, undefined, method, path);
    }
    return error;
  }
}

function directClient(connection: Connection): HttpClient {
  if (!connection.direct) throw new UsageError("API 2.0 needs a direct host (CSDIRECT, or CSURI to derive it)");
  return connection.direct;
}

/** Bun's network errors end in a hint about `verbose: true` that means nothing to our users. */
function reason(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.replace(/\.? For more information.*$/s, "");
}

function rate(bytes: number, startedMs: number): string {
  const seconds = Math.max(0.001, (performance.now() - startedMs) / 1000);
  return `${seconds.toFixed(1)} s, ${(bytes / 1e6 / seconds).toFixed(1)} MB/s`;
}

// ---- upload ----

export async function uploadDirect(ctx: RunContext, connection: Connection, request: UploadRequest): Promise<string> {
  const client = directClient(connection);
  if (request.drive) throw new UsageError("-d/--drive is API 1.0 only: an API 2.0 upload always creates a new drive");
  if (request.offset) throw new UsageError("-o/--offset is API 1.0 only: an API 2.0 upload sends the whole image in one request");
  const file = resolve(ctx.io.cwd, request.file);
  const size = imageSize(file);
  if (size === 0) throw new UsageError(`${request.file} is empty: nothing to upload`);
  let fd: number;
  try {
    fd = openSync(file, "r");
  } catch (error) {
    throw new UsageError(`cannot read ${request.file}: ${(error as Error).message}`);
  }
  // the file name after upload/ is ignored by the server but shows in its logs; curl sends it too
  const url = client.url(`drives/upload/${encodeURIComponent(request.name)}`);
  const { user, secret } = connection.config;
  const headers = {
    Authorization: `Basic ${Buffer.from(`${user}:${secret}`).toString("base64")}`,
    "Content-Type": "application/octet-stream",
    "User-Agent": "drivekit",
    Accept: "application/json, text/plain",
  };
  if (ctx.verbose) {
    const shown = Object.entries({ ...headers, Authorization: "Basic ****", "Content-Length": String(size) }).map(([k, v]) => `  ${k}: ${v}`);
    ctx.log.info([`> POST ${url.href}`, ...shown].join("\n"));
  }
  const progress = createProgress(ctx, { label: "upload", total: size, quiet: request.quiet });
  const watchdog = new Watchdog(connection.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  const started = performance.now();
  let sent = 0;
  let readFailure: Error | undefined;
  let answer: StreamPostAnswer;
  try {
    answer = await streamPost({
      url,
      headers,
      size,
      signal: watchdog.signal,
      fill(buffer, offset, length) {
        try {
          const n = readSync(fd, buffer, 0, length, offset);
          if (n === 0) readFailure = new OperationError(`${request.file} shrank to ${offset} bytes during the upload`);
          return n;
        } catch (error) {
          readFailure = new OperationError(`reading ${request.file} at byte ${offset} failed: ${(error as Error).message}`);
          return 0;
        }
      },
      onProgress(done) {
        sent = done;
        watchdog.touch();
        progress.update(done);
      },
    });
    if (ctx.verbose) ctx.log.info([`< ${answer.status} ${answer.statusText}`, ...[...answer.headers].map(([k, v]) => `  ${k}: ${v}`)].join("\n"));
    if (answer.status < 200 || answer.status >= 300) {
      const { kind, message } = classifyError(answer.status, answer.headers.get("x-elastic-error"), answer.body);
      throw new ApiError(kind, message, answer.status, "POST", url.pathname);
    }
  } catch (caught) {
    let error = readFailure ?? watchdog.translate(caught, "POST", url.pathname);
    if (error instanceof StreamPostError) {
      error = new ApiError("network", `${error.message}${error.code && !error.message.includes(error.code) ? ` (${error.code})` : ""} (${url.host})`, undefined, "POST", url.pathname);
    }
    progress.finish();
    const partial = error instanceof ApiError ? UUID.exec(error.serverMessage)?.[0]?.toLowerCase() : undefined;
    const drive = partial
      ? `; the server named drive ${partial}, which may hold a partial image: check it and destroy it`
      : "; the server may have created a partial drive: check your drive list";
    throw new OperationError(
      `upload of ${request.file} failed after ${humanBytes(sent)} of ${humanBytes(size)}: ${reason(error)}; not retried (a new attempt would create another drive)${drive}`,
    );
  } finally {
    watchdog.stop();
    closeSync(fd);
  }
  const uuid = parseUploadAnswer(answer.body);
  if (!uuid) {
    progress.finish();
    const shown = answer.body.replace(/[\x00-\x1f\x7f]+/g, " ").trim().slice(0, 200);
    throw new OperationError(`upload of ${request.file} ended, but the answer holds no drive UUID: '${shown}'; not retried: check your drive list`);
  }
  if (answer.sent !== size) {
    // a 2xx before the whole body went out: the drive cannot hold the image
    progress.finish();
    throw new OperationError(`the server answered drive ${uuid} after only ${answer.sent} of ${size} bytes; not retried: check that drive and destroy it`);
  }
  progress.finish(`uploaded ${humanBytes(size)} as drive ${uuid} (${rate(size, started)})`);
  if (request.verify) await verifyDirect(ctx, connection, uuid, file, size, request.quiet);
  return uuid;
}

/**
 * Read the new drive back and compare it with the image, streaming both. The drive may be longer
 * (a server grows small images to its minimum drive size): the extra bytes must all be zero.
 */
async function verifyDirect(ctx: RunContext, connection: Connection, uuid: string, file: string, size: number, quiet: boolean): Promise<void> {
  const client = directClient(connection);
  const path = `drives/${uuid}/download/`;
  const watchdog = new Watchdog(connection.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  const started = performance.now();
  const fd = openSync(file, "r");
  let done = 0;
  let progress: Progress | undefined;
  const mismatch = (at: number, why: string) =>
    new OperationError(`verify failed: drive ${uuid} ${why} at byte ${at} (the upload itself finished; the drive is kept)`);
  try {
    const response = await client.request("GET", path, {
      headers: { "accept-encoding": "identity" },
      timeoutMs: NO_TOTAL_LIMIT,
      signal: watchdog.signal,
    });
    const total = contentLength(response);
    if (total !== undefined && total < size) throw mismatch(total, `is shorter than the image (${total} of ${size} bytes)`);
    progress = createProgress(ctx, { label: "verify", total: total ?? size, quiet });
    const local = new Uint8Array(PIECE);
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    for (;;) {
      const { value, done: end } = await reader.read();
      if (end) break;
      watchdog.touch();
      let at = 0;
      while (at < value.length) {
        if (done >= size) {
          const rest = value.subarray(at);
          if (!isAllZero(rest)) throw mismatch(done + rest.findIndex((byte) => byte !== 0), "holds non-zero bytes past the image's end");
          done += rest.length;
          break;
        }
        const want = Math.min(value.length - at, size - done, local.length);
        const n = readSync(fd, local, 0, want, done);
        if (n !== want) throw new OperationError(`verify: ${file} changed size while verifying`);
        const theirs = value.subarray(at, at + n);
        if (!Buffer.from(theirs.buffer, theirs.byteOffset, n).equals(Buffer.from(local.buffer, 0, n))) {
          const index = theirs.findIndex((byte, i) => byte !== local[i]);
          throw mismatch(done + index, "differs from the image");
        }
        at += n;
        done += n;
      }
      progress.update(done);
    }
    if (done < size) throw mismatch(done, `ended early (${done} of ${size} bytes)`);
    if (total !== undefined && done !== total) throw mismatch(done, `download ended at ${done} of ${total} bytes`);
    progress.finish(`verified drive ${uuid} against ${file} (${rate(done, started)})`);
  } catch (error) {
    progress?.finish();
    throw watchdog.translate(error, "GET", client.url(path).pathname);
  } finally {
    watchdog.stop();
    closeSync(fd);
  }
}

// ---- download ----

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

export async function downloadDirect(ctx: RunContext, connection: Connection, request: DownloadRequest): Promise<string> {
  const client = directClient(connection);
  if (request.offset) throw new UsageError("-o/--offset is API 1.0 only: an API 2.0 download resumes from FILE.part by itself");
  if (request.file === "") throw new UsageError("empty FILE");
  let target: Target | undefined;
  if (request.file !== undefined) {
    target = { path: resolve(ctx.io.cwd, request.file), shown: request.file };
    // refused before anything is sent (exit 2)
    await checkOutputPath(target.path, request.force);
  }
  const path = `drives/${request.drive}/download/`;
  const shownPath = client.url(path).pathname;
  const watchdog = new Watchdog(connection.timeoutMs ?? DEFAULT_TIMEOUT_MS);
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
      target = { path: join(ctx.io.cwd, name), shown: name };
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
async function acceptPartial(ctx: RunContext, response: Response, from: number, part: string): Promise<"append" | "complete" | "restart"> {
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
  ctx: RunContext,
  response: Response,
  part: string,
  from: number,
  total: number,
  quiet: boolean,
  watchdog: Watchdog,
): Promise<number> {
  const progress = createProgress(ctx, { label: "download", total, quiet });
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
    const message = reason(watchdog.translate(error, "GET", "download"));
    // the cut may come before Bun.write made the file, or leave it empty: nothing to resume then
    if (got === 0) await rm(part, { force: true });
    const next = got > 0 ? `${part} kept: run the same command again to resume` : "nothing was kept: run the same command again";
    throw new OperationError(`download cut short at ${humanBytes(got)} of ${humanBytes(total)}: ${message}; ${next}`);
  }
  progress.finish(`downloaded ${humanBytes(from + written)}${from > 0 ? ` (resumed at ${humanBytes(from)})` : ""} (${rate(written, started)})`);
  return written;
}

/** Rename FILE.part onto FILE only when it holds exactly what the server announced. */
async function finish(ctx: RunContext, target: Target, request: DownloadRequest, part: string, have: number, total: number): Promise<string> {
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
