// A new API 2.0 drive made by one streamed POST of the whole image to the direct host (the answer
// names the drive): the source goes from its descriptor (a raw file) or through its reads (a decoded
// image, in order) straight into the socket, never held whole. Never sent twice (a second POST would
// make a second drive), so neither retried nor resumed: a stop says so and what the server may keep.
import type { Context } from "../context.ts";
import { directClient, type Connection } from "../connect.ts";
import type { Chunk, Destination, Opened, RunStats, Source } from "../chunks/endpoints.ts";
import { wholeGrid, type Grid } from "../chunks/grid.ts";
import type { ReadBack } from "../chunks/verify.ts";
import { ApiError, InputError, OperationError } from "../errors.ts";
import { answerError, networkError, type HttpClient } from "../http.ts";
import { formatRate, humanBytes } from "../size.ts";
import { openApi2Drive } from "./drive-source.ts";
import { fileBody, imageBody, streamPost, type StreamPostAnswer } from "../socket-post.ts";
import { WireError } from "../wire.ts";
import { Watchdog } from "../watchdog.ts";

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i;
const EXACT_UUID = new RegExp(`^${UUID.source}$`, "i");

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

export interface Api2DirectOptions {
  ctx: Context;
  connection: Connection;
  source: Source;
  /** How messages name the source. */
  shown: string;
  /** Goes into the POST's path: the server ignores it, its logs show it. */
  name: string;
}

export class Api2DirectDestination implements Destination {
  readonly grid: Grid;
  readonly streams = true;
  readonly once = true;
  /** One POST from pooled pieces: nothing to collect between chunks. */
  readonly gcEvery = Number.POSITIVE_INFINITY;
  private readonly client: HttpClient;
  private answer?: StreamPostAnswer;
  private drive = "";

  constructor(private readonly options: Api2DirectOptions) {
    this.grid = wholeGrid(options.source.size);
    this.client = directClient(options.connection);
  }

  /** Nothing to resume and nothing to keep: two direct uploads share nothing and each make their own drive. */
  async open(): Promise<Opened> {
    return {
      done: new Set(),
      knownZero: false,
      record: () => undefined,
      close: () => undefined,
      remove: () => undefined,
    };
  }

  async write(chunk: Chunk, signal: AbortSignal): Promise<void> {
    const { source, name, connection } = this.options;
    const { client } = this;
    const size = source.size;
    // the file name after upload/ is ignored by the server but shows in its logs; curl sends it too
    const url = client.url(`drives/upload/${encodeURIComponent(name)}`);
    const headers = {
      ...client.authorizationFor(url),
      "content-type": "application/octet-stream",
      "user-agent": "drivekit",
      accept: "application/json, text/plain",
    };
    client.trace(`> POST ${url.href}`, { ...headers, "content-length": String(size) });
    const watchdog = new Watchdog(connection.timeoutMs);
    // a raw file goes from its descriptor straight into the socket; a decoded image through read()
    const body = source.fd !== undefined ? fileBody(source.fd, this.options.shown) : imageBody(source);
    try {
      const answer = await streamPost({
        url,
        headers,
        size,
        signal: AbortSignal.any([watchdog.signal, signal]),
        fill: body.fill,
        // the run's proxy; never sent twice (a second POST would make a second drive)
        pool: connection.sockets,
        onProgress(done) {
          watchdog.touch();
          chunk.moved(done);
        },
      });
      client.trace(`< ${answer.status} ${answer.statusText}`, Object.fromEntries(answer.headers));
      if (answer.status < 200 || answer.status >= 300)
        throw answerError(answer.status, answer.headers, answer.body, "POST", url.pathname);
      this.answer = answer;
    } catch (caught) {
      const error = body.failure() ?? watchdog.translate(caught, "POST", url.pathname);
      if (!(error instanceof WireError)) throw error;
      throw networkError(error, url, "POST", url.pathname);
    } finally {
      watchdog.stop();
    }
  }

  retryName(): string {
    return "upload";
  }

  what(): string {
    return `upload of ${this.options.shown}`;
  }

  resumeHint(): string {
    return "not retried (a new attempt would create another drive)";
  }

  /** What the server may have kept: a drive it named, none when the body was cut short, else check the list. */
  stopLine(error: unknown, reason: string, done: number, interrupted: string | undefined): string {
    const partial = error instanceof ApiError ? UUID.exec(error.serverMessage)?.[0]?.toLowerCase() : undefined;
    const drive = partial
      ? `; the server named drive ${partial}, which may hold a partial image: check it and destroy it`
      : error instanceof InputError
        ? "; the POST was cut off before its last byte, so the server completes no drive from it"
        : error instanceof ApiError && error.kind === "proxy"
          ? "; the proxy let nothing through to the server"
          : error instanceof ApiError && error.kind === "tls"
            ? "; the certificate was refused before the request was sent, so the server made no drive"
            : "; the server may have created a partial drive: check your drive list";
    const { shown, source } = this.options;
    return (
      `upload of ${shown} ${interrupted ? "stopped" : "failed"} after ${humanBytes(done)} of ${humanBytes(source.size)}: ` +
      `${reason}; ${this.resumeHint()}${drive}`
    );
  }

  /** The answer must name the drive, after the whole body went out. */
  async finish(): Promise<string> {
    const answer = this.answer as StreamPostAnswer;
    const { shown, source } = this.options;
    const uuid = parseUploadAnswer(answer.body);
    if (!uuid) {
      const said = answer.body
        .replace(/[\x00-\x1f\x7f]+/g, " ")
        .trim()
        .slice(0, 200);
      throw new OperationError(
        `upload of ${shown} ended, but the answer holds no drive UUID: '${said}'; not retried: check your drive list`,
      );
    }
    if (answer.sent !== source.size) {
      // a 2xx before the whole body went out: the drive cannot hold the image
      throw new OperationError(
        `the server answered drive ${uuid} after only ${answer.sent} of ${source.size} bytes; not retried: check that drive and destroy it`,
      );
    }
    this.drive = uuid;
    return uuid;
  }

  summary(stats: RunStats): string {
    const size = this.options.source.size;
    return `uploaded ${humanBytes(size)} as drive ${this.drive} (${formatRate(size, stats.started)})`;
  }

  /** The new drive, to be read back by --verify (a server grows small images to its minimum drive size: zeros). */
  async readBack(drive: string): Promise<ReadBack> {
    return {
      source: await openApi2Drive(this.options.connection, drive, this.options.ctx.log),
      shown: `drive ${drive}`,
      against: this.options.shown,
      zerosPast: true,
      kept: "the upload itself finished; the drive is kept",
    };
  }
}
