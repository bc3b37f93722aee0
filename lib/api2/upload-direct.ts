// API 2.0 direct upload: one streamed POST of the raw image to the direct host; the answer names
// the new drive. Never retried (a second POST would make a second drive). --verify streams the
// drive back and compares.
import { readSync } from "node:fs";
import type { Context, Progress } from "../context.ts";
import { directClient, type Connection } from "../connect.ts";
import { isAllZero } from "../bytes.ts";
import { ApiError, InputError, InterruptedError, messageOf, OperationError, UsageError } from "../errors.ts";
import { abortOnInterrupt } from "../chunks/engine.ts";
import { answerError, networkError } from "../http.ts";
import type { ImageSource } from "../chunks/image.ts";
import { openUploadInput } from "../formats/open.ts";
import { formatRate, humanBytes } from "../size.ts";
import type { UploadRequest } from "../transfer.ts";
import { fileBody, imageBody, streamPost, StreamPostError, type StreamPostAnswer } from "./socket-post.ts";
import { NO_TOTAL_LIMIT, Watchdog } from "./watchdog.ts";
import { contentLength } from "./download.ts";

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i;
const EXACT_UUID = new RegExp(`^${UUID.source}$`, "i");
/** Bytes compared per step in --verify. */
const PIECE = 1024 * 1024;

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

export async function uploadDirect(ctx: Context, connection: Connection, request: UploadRequest): Promise<string> {
  const client = directClient(connection);
  if (request.drive) throw new UsageError("-d/--drive is API 1.0 only: an API 2.0 upload always creates a new drive");
  if (request.offset)
    throw new UsageError("-o/--offset is API 1.0 only: an API 2.0 upload sends the whole image in one request");
  const image = await openUploadInput(ctx, request);
  const size = image.size;
  if (size === 0) {
    await image.close();
    throw new UsageError(`${request.file} is empty: nothing to upload`);
  }
  // the file name after upload/ is ignored by the server but shows in its logs; curl sends it too
  const url = client.url(`drives/upload/${encodeURIComponent(request.name)}`);
  const headers = {
    ...client.authorizationFor(url),
    "content-type": "application/octet-stream",
    "user-agent": "drivekit",
    accept: "application/json, text/plain",
  };
  client.trace(`> POST ${url.href}`, { ...headers, "content-length": String(size) });
  const progress = ctx.progress({ label: "upload", total: size, quiet: request.quiet });
  const watchdog = new Watchdog(connection.timeoutMs);
  // Ctrl-C / SIGTERM end the POST with the same one line as a failure, and status 130 / 143
  const interrupt = abortOnInterrupt();
  const started = performance.now();
  let sent = 0;
  // a raw file goes from its descriptor straight into the socket; a decoded image through read()
  const body = image.fd !== undefined ? fileBody(image.fd, request.file) : imageBody(image);
  let answer: StreamPostAnswer;
  try {
    answer = await streamPost({
      url,
      headers,
      size,
      signal: AbortSignal.any([watchdog.signal, interrupt.controller.signal]),
      fill: body.fill,
      onProgress(done) {
        sent = done;
        watchdog.touch();
        progress.update(done);
      },
    });
    client.trace(`< ${answer.status} ${answer.statusText}`, Object.fromEntries(answer.headers));
    if (answer.status < 200 || answer.status >= 300) {
      throw answerError(answer.status, answer.headers, answer.body, "POST", url.pathname);
    }
  } catch (caught) {
    let error = body.failure() ?? watchdog.translate(caught, "POST", url.pathname);
    if (error instanceof StreamPostError) error = networkError(error, url, "POST", url.pathname);
    progress.finish();
    const partial = error instanceof ApiError ? UUID.exec(error.serverMessage)?.[0]?.toLowerCase() : undefined;
    const drive = partial
      ? `; the server named drive ${partial}, which may hold a partial image: check it and destroy it`
      : error instanceof InputError
        ? "; the POST was cut off before its last byte, so the server completes no drive from it"
        : error instanceof ApiError && error.kind === "tls"
          ? "; the certificate was refused before the request was sent, so the server made no drive"
          : "; the server may have created a partial drive: check your drive list";
    const stoppedBy = interrupt.interrupted();
    const message =
      `upload of ${request.file} ${stoppedBy ? "stopped" : "failed"} after ${humanBytes(sent)} of ${humanBytes(size)}: ` +
      `${stoppedBy ? `interrupted (${stoppedBy})` : messageOf(error)}; not retried (a new attempt would create another drive)${drive}`;
    throw stoppedBy ? new InterruptedError(message, stoppedBy) : new OperationError(message);
  } finally {
    interrupt.remove();
    watchdog.stop();
    await image.close();
  }
  const uuid = parseUploadAnswer(answer.body);
  if (!uuid) {
    progress.finish();
    const shown = answer.body
      .replace(/[\x00-\x1f\x7f]+/g, " ")
      .trim()
      .slice(0, 200);
    throw new OperationError(
      `upload of ${request.file} ended, but the answer holds no drive UUID: '${shown}'; not retried: check your drive list`,
    );
  }
  if (answer.sent !== size) {
    // a 2xx before the whole body went out: the drive cannot hold the image
    progress.finish();
    throw new OperationError(
      `the server answered drive ${uuid} after only ${answer.sent} of ${size} bytes; not retried: check that drive and destroy it`,
    );
  }
  progress.finish(`uploaded ${humanBytes(size)} as drive ${uuid} (${formatRate(size, started)})`);
  if (request.verify) {
    // the image was closed with the POST: read it again from its start
    const again = await image.reopen!();
    try {
      await verifyDirect(ctx, connection, uuid, again, request.file, request.quiet);
    } finally {
      await again.close();
    }
  }
  return uuid;
}

/**
 * Read the new drive back and compare it with the image, streaming both. The drive may be longer
 * (a server grows small images to its minimum drive size): the extra bytes must all be zero.
 */
export async function verifyDirect(
  ctx: Context,
  connection: Connection,
  uuid: string,
  image: ImageSource,
  file: string,
  quiet: boolean,
): Promise<void> {
  const client = directClient(connection);
  const path = `drives/${uuid}/download/`;
  const watchdog = new Watchdog(connection.timeoutMs);
  const started = performance.now();
  const size = image.size;
  const fd = image.fd;
  let done = 0;
  let progress: Progress | undefined;
  const mismatch = (at: number, why: string) =>
    new OperationError(
      `verify failed: drive ${uuid} ${why} at byte ${at} (the upload itself finished; the drive is kept)`,
    );
  try {
    const response = await client.request("GET", path, {
      headers: { "accept-encoding": "identity" },
      timeoutMs: NO_TOTAL_LIMIT,
      signal: watchdog.signal,
    });
    const total = contentLength(response);
    if (total !== undefined && total < size)
      throw mismatch(total, `is shorter than the image (${total} of ${size} bytes)`);
    progress = ctx.progress({ label: "verify", total: total ?? size, quiet });
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
          if (!isAllZero(rest))
            throw mismatch(done + rest.findIndex((byte) => byte !== 0), "holds non-zero bytes past the image's end");
          done += rest.length;
          break;
        }
        const want = Math.min(value.length - at, size - done, local.length);
        // a raw file is read directly; a decoded image in order, as the drive's bytes come
        let n = want;
        if (fd !== undefined) n = readSync(fd, local, 0, want, done);
        else await image.read(local, want, done);
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
    progress.finish(`verified drive ${uuid} against ${file} (${formatRate(done, started)})`);
  } catch (error) {
    progress?.finish();
    throw watchdog.translate(error, "GET", client.url(path).pathname);
  } finally {
    watchdog.stop();
  }
}
