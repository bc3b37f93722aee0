// API 2.0 download: a GET of the drive from the direct host, following redirects (credentials
// only to the origin named), its body into FILE.part (download-raw.ts: sparse, renamed only on a
// full byte count; download-compressed.ts for FILE.gz / FILE.zst or --format). A passing failure is
// retried within the run (download-retry.ts) and, like a rerun, resumes the .part with Range when
// the server allows it. One run at a time per .part (download-part.ts).
import { join, resolve } from "node:path";
import type { Context, Progress } from "../context.ts";
import { directClient, type Connection } from "../connect.ts";
import type { HttpClient } from "../http.ts";
import { InterruptedError, OperationError, UsageError } from "../errors.ts";
import { abortOnInterrupt } from "../chunks/engine.ts";
import { checkOutputPath, exists } from "../files.ts";
import { humanBytes } from "../size.ts";
import type { DownloadRequest } from "../transfer.ts";
import { NO_TOTAL_LIMIT, type Watchdog } from "./watchdog.ts";
import { getDrive } from "./drives.ts";
import { keptBytes, planPart, replanPart, type PartPlan, type Target } from "./download-part.ts";
import { finishCompressed, publishCompressed, receiveCompressed } from "./download-compressed.ts";
import { finish, partSize, receive } from "./download-raw.ts";
import { DownloadAttempts, type Standing } from "./download-retry.ts";
import { withSuffix } from "../formats/output-format.ts";
import { contentLength, parseContentRange } from "./drive-source.ts";

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

export async function downloadDirect(ctx: Context, connection: Connection, request: DownloadRequest): Promise<string> {
  const client = directClient(connection);
  if (request.file === "") throw new UsageError("empty FILE");
  let target: Target | undefined;
  if (request.file !== undefined) {
    target = { path: resolve(ctx.cwd, request.file), shown: request.file };
    // refused before anything is sent (exit 2)
    await checkOutputPath(target.path, request.force);
  }
  const download = new DirectDownload(ctx, connection, client, request, target);
  // Ctrl-C / SIGTERM end the GET like a stall does, but are never retried: .part kept, one line, status 130 / 143
  const interrupt = abortOnInterrupt();
  const attempts = new DownloadAttempts(
    ctx,
    connection.timeoutMs,
    connection.retry,
    interrupt.controller.signal,
    `download of drive ${request.drive}`,
    download.shownPath,
  );
  try {
    return await attempts.run((watchdog, signal) => download.attempt(watchdog, signal));
  } catch (error) {
    download.progress?.finish();
    const stoppedBy = interrupt.interrupted();
    if (stoppedBy) {
      const part = download.target && `${download.target.path}.part`;
      const kept = part ? partSize(part) : 0;
      const next =
        part && kept > 0
          ? `${part} kept: run the same command again to resume`
          : "nothing was kept: run the same command again";
      throw new InterruptedError(
        `download of drive ${request.drive} stopped at ${humanBytes(kept)}: interrupted (${stoppedBy}); ${next}`,
        stoppedBy,
      );
    }
    throw attempts.failure(error, download.standing());
  } finally {
    download.plan?.lock.release();
    interrupt.remove();
  }
}

/**
 * One download's state over the run's attempts: where it goes (FILE, or the server's name learnt
 * from the first answer), the .part's plan (locked once), the size the server announced.
 */
class DirectDownload {
  readonly path: string;
  readonly shownPath: string;
  plan?: PartPlan;
  /** The drive's size, as announced and checked in this run. */
  total?: number;
  progress?: Progress;
  /** The last attempt's body arrived whole: what fails after it (the rename) is no cut. */
  bodyDone = false;

  constructor(
    private readonly ctx: Context,
    private readonly connection: Connection,
    private readonly client: HttpClient,
    private readonly request: DownloadRequest,
    public target: Target | undefined,
  ) {
    this.path = `drives/${request.drive}/download/`;
    this.shownPath = client.url(this.path).pathname;
  }

  private get(from: number, signal: AbortSignal): Promise<Response> {
    return this.client.request("GET", this.path, {
      // identity: Bun's fetch would otherwise ask for gzip and inflate it, and the byte count would no
      // longer match Content-Length (nor a Range its offsets)
      headers:
        from > 0 ? { range: `bytes=${from}-`, "accept-encoding": "identity" } : { "accept-encoding": "identity" },
      timeoutMs: NO_TOTAL_LIMIT,
      signal,
      ok: (status) => status === 200 || status === 206 || (from > 0 && status === 416),
    });
  }

  /** One try: the GET from where FILE.part stands (as a rerun would see it), its body into the .part. */
  async attempt(watchdog: Watchdog, signal: AbortSignal): Promise<string> {
    const { ctx, request } = this;
    this.bodyDone = false;
    let response: Response | undefined;
    if (!this.target) {
      response = await this.get(0, signal);
      this.target = await this.namedByServer(response);
    }
    const target = this.target;
    try {
      this.plan = this.plan ? replanPart(ctx, request, target.path, this.plan) : planPart(ctx, request, target.path);
    } catch (error) {
      await response?.body?.cancel();
      throw error;
    }
    let from = this.plan.from;
    if (response && from > 0) await response.body?.cancel();
    if (!response || from > 0) response = await this.get(from, signal);
    const part = `${target.path}.part`;
    const { format, point, journalFile } = this.plan;
    const compressed = format === "raw" ? undefined : { ...target, format, journalFile, watchdog };
    if (from > 0) {
      const outcome = await acceptPartial(ctx, response, from, part, point?.size);
      if (outcome === "complete") {
        this.bodyDone = true;
        return compressed && point
          ? await finishCompressed(request, { ...compressed, point })
          : await finish(target, request, part, from, from);
      }
      if (outcome === "restart") {
        ctx.log.info(`the server does not resume ${target.shown}.part from byte ${from}: starting again from 0`);
        if (response.status !== 200) response = await this.get(0, signal);
        from = 0;
      }
    }
    const total =
      from > 0
        ? (parseContentRange(response.headers.get("content-range")) as { total: number }).total
        : contentLength(response);
    if (total === undefined) {
      await response.body?.cancel();
      throw new OperationError(
        `the server sent drive ${request.drive} without a Content-Length: a cut download could not be told from a whole one`,
      );
    }
    await this.checkTotal(total, response);
    const progress = this.progressOf(total);
    if (compressed) {
      await receiveCompressed(request, response, {
        ...compressed,
        from,
        point: from > 0 ? point : undefined,
        total,
        progress,
      });
      this.bodyDone = true;
      return await publishCompressed(request, compressed);
    }
    const written = await receive(response, part, from, total, progress, watchdog);
    this.bodyDone = true;
    return await finish(target, request, part, from + written, total);
  }

  /** Without FILE: the server's (sanitised) name, refused when it exists and --force is not given. */
  private async namedByServer(response: Response): Promise<Target> {
    const { ctx, request } = this;
    const name = withSuffix(
      safeFileName(dispositionName(response.headers.get("content-disposition")), request.drive),
      request.format,
    );
    const target = { path: join(ctx.cwd, name), shown: name };
    if (!request.force && (await exists(target.path))) {
      await response.body?.cancel();
      // the name was only known from the answer, so this is not a status-2 call: something was sent
      throw new OperationError(
        `${name} exists (the server's name for drive ${request.drive}): pass --force to overwrite it, or give FILE`,
      );
    }
    return target;
  }

  /** The run's one progress line, over all its attempts. */
  private progressOf(total: number): Progress {
    this.progress ??= this.ctx.progress({ label: "download", total, quiet: this.request.quiet });
    return this.progress;
  }

  /** The announced length, checked against the drive once per run; later attempts must announce the same. */
  private async checkTotal(total: number, response: Response): Promise<void> {
    if (this.total === undefined) {
      await checkTotal(this.connection, this.request.drive, total, response);
      this.total = total;
    } else if (total !== this.total) {
      await response.body?.cancel();
      throw new OperationError(
        `the server announced ${total} bytes for drive ${this.request.drive}, after ${this.total} earlier in this run: refusing to mix them`,
      );
    }
  }

  /** Where the run stands, for its failure message. */
  standing(): Standing {
    const { target, plan } = this;
    return {
      part: target && `${target.path}.part`,
      kept: target && plan ? keptBytes(this.request, target.path, plan) : 0,
      total: this.total,
      bodyDone: this.bodyDone,
    };
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
  throw new OperationError(
    `the server announced ${total} bytes for drive ${drive}, which holds ${size}: refusing a file that would not be the drive`,
  );
}

/**
 * A ranged answer either continues FILE.part exactly, says it is already whole (416), or we
 * restart. `size`: the drive's size FILE.part was started for, when known (a compressed .part's journal).
 */
async function acceptPartial(
  ctx: Context,
  response: Response,
  from: number,
  part: string,
  size?: number,
): Promise<"append" | "complete" | "restart"> {
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
  if (
    range &&
    sameDrive &&
    range.start === from &&
    range.end === range.total - 1 &&
    (length === undefined || length === range.total - from)
  ) {
    ctx.log.info(`resuming ${part} from byte ${from}`);
    return "append";
  }
  await response.body?.cancel();
  return "restart";
}
