// The API 2.0 side of the emulator: it routes every path under /api/2.0/ (credentials checked but
// on the one-time upload links) to the resource that owns it: drives (emulator/api2-drives.ts),
// the chunked upload (api2-upload.ts), library drives (api2-libdrives.ts), snapshots
// (api2-snapshots.ts), servers (api2-servers.ts); anything else gets 418. Every answer carries
// X-REQUEST-ID, every error is CloudSigma's JSON list. A second change to an object while one is
// still being answered (PUT, DELETE, an action other than clone or upload_chunk) gets 503
// `concurrency`, as the real API answers concurrent updates. It also serves CloudSigma's direct
// upload and download:
// - `POST /api/2.0/drives/upload/[NAME]` streams the body into a sparse drive file (no whole-body
//   buffer), 411 without Content-Length, 400 on a short body, grows images under a minimum drive
//   size, answers the new drive's UUID (JSON by default, as CloudSigma; plain text on request).
// - `GET /api/2.0/drives/UUID/download/` answers 302 to a second origin (another Bun.serve, another
//   port) that serves the bytes with Content-Disposition and honours Range, like a signed URL: it
//   needs no credentials and records what it receives, so tests can prove none were forwarded.
// Uploaded drives live in the 1.0 stub's drive map, so every 1.0 call sees them too.
import { ftruncateSync, writeSync } from "node:fs";
import { isAllZero } from "../lib/bytes.ts";
import { isUuid } from "../lib/uuid.ts";
import { missing, partsOf, refused } from "./api2-common.ts";
import { Api2Drives } from "./api2-drives.ts";
import { Api2LibDrives } from "./api2-libdrives.ts";
import { Api2Servers } from "./api2-servers.ts";
import { Api2Snapshots } from "./api2-snapshots.ts";
import { ChunkUploadStub, type ChunkUploadOptions } from "./api2-upload.ts";
import { api2Error } from "./errors.ts";
import { API2_PREFIX, type DriveStub, type StubDrive } from "./server.ts";
import type { Listener } from "./transport.ts";

export interface Api2Options {
  /** Images smaller than this are grown (zero-padded) on completion, as CloudSigma does. Default 0. */
  minDriveSize?: number;
  /** How the upload answers the UUID: `json` (`{"uuid": ...}`, the default) or `plain` text. */
  answer?: "json" | "plain";
  /** The drive calls (emulator/api2-drives.ts): ms a drive stays creating/cloning/resizing (default 0). */
  statusDelayMs?: number;
  /** The chunked upload (initupload/, upload_chunk, one-time links): emulator/api2-upload.ts. */
  chunked?: ChunkUploadOptions;
  /** Snapshots: ms a new one stays `creating` (default 0; Infinity: it never becomes available). */
  snapshotCreatingMs?: number;
}

export interface OriginRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  status: number;
}

export interface UploadOutcome {
  status: number;
  received: number;
  expected: number;
  drive?: string;
}

/** A test's own answer on the download origin; undefined lets the origin answer. */
export type OriginHook = (request: Request, drive: StubDrive) => Response | undefined | Promise<Response | undefined>;

export class Api2Stub {
  /** Requests the download origin received, with their headers. */
  readonly originRequests: OriginRequest[] = [];
  /** Every finished upload (also a failed one), in order. */
  readonly uploads: UploadOutcome[] = [];
  /** The Content-Disposition for a drive (default: `attachment; filename="UUID"`, as CloudSigma). */
  disposition: (drive: StubDrive) => string | undefined = (drive) => `attachment; filename="${drive.uuid}"`;
  /** Replace the origin's answer (a server that ignores Range, a cut body...). */
  originHook?: OriginHook;
  private origin!: Listener;
  private readonly tokens = new Map<string, string>();
  private readonly waiters: ((outcome: UploadOutcome) => void)[] = [];

  /** The drive calls: list, get, create, update, delete, clone, resize, capabilities. */
  readonly drives: Api2Drives;
  /** The chunked upload: its links, and what they received. */
  readonly chunked: ChunkUploadStub;
  /** The drives library (`libdrives/`), seeded at start. */
  readonly libdrives: Api2LibDrives;
  /** Snapshots: `creatingMs` sets how long a new one stays `creating`. */
  readonly snapshots: Api2Snapshots;
  /** Servers, as far as they mount drives. */
  readonly servers: Api2Servers;
  /** Objects a change is being answered for (a second one meanwhile gets 503 concurrency). */
  private readonly changing = new Set<string>();

  constructor(
    readonly stub: DriveStub,
    readonly options: Api2Options = {},
  ) {
    this.drives = new Api2Drives(stub, { statusDelayMs: options.statusDelayMs });
    this.chunked = new ChunkUploadStub(stub, this.drives, options.chunked);
    this.libdrives = new Api2LibDrives(stub, this.drives);
    this.drives.library = (uuid) => this.libdrives.drives.get(uuid);
    this.snapshots = new Api2Snapshots(stub, this.drives, { creatingMs: options.snapshotCreatingMs });
    this.servers = new Api2Servers(stub, this.drives);
  }

  /** CSURI for this emulator (the direct host is the same origin: for loopback the direct host is the API origin). */
  get uri(): string {
    return `${this.stub.url}api/2.0/`;
  }

  get originUrl(): string {
    return this.origin.url;
  }

  get env(): Record<string, string> {
    return { CSURI: this.uri, CSAUTH: `${this.stub.user}:${this.stub.secret}` };
  }

  /** The next upload to finish (resolves at once with nothing if `count` already finished). */
  waitForUploads(count: number): Promise<UploadOutcome | undefined> {
    if (this.uploads.length >= count) return Promise.resolve(this.uploads[count - 1]);
    return new Promise((resolve) => {
      const check = (outcome: UploadOutcome) => {
        if (this.uploads.length >= count) resolve(outcome);
        else this.waiters.push(check);
      };
      this.waiters.push(check);
    });
  }

  async start(): Promise<this> {
    this.libdrives.seed();
    this.serveOrigin(0);
    this.stub.handlers.push((request, path) =>
      path.startsWith(API2_PREFIX) ? this.route(request, path.slice(API2_PREFIX.length)) : undefined,
    );
    // a restarted server forgets its links and drops the downloads in flight too
    this.stub.restartListeners.push(() => {
      this.tokens.clear();
      this.chunked.forget();
      const port = this.origin.port;
      this.origin.stop();
      this.serveOrigin(port);
    });
    return this;
  }

  private serveOrigin(port: number): void {
    this.origin = this.stub.transport.listen(port, {
      idleTimeout: 120,
      fetch: (request) => this.answerOrigin(request),
      error: (error) => new Response(`origin failure: ${error.message}\n`, { status: 500 }),
    });
  }

  stop(): void {
    this.drives.stop();
    this.snapshots.stop();
    this.libdrives.close();
    this.origin?.stop();
  }

  private settle(outcome: UploadOutcome): void {
    this.uploads.push(outcome);
    const waiting = this.waiters.splice(0);
    for (const waiter of waiting) waiter(outcome);
  }

  private async route(request: Request, path: string): Promise<Response> {
    // a one-time upload link needs no credentials: the token is the permission
    if (this.chunked.isLinkPath(path)) return this.chunked.receive(request, path);
    if (!this.stub.authorised(request)) {
      await request.body?.cancel().catch(() => undefined);
      return api2Error(401, "auth", "Authentication failed", { "www-authenticate": 'Basic realm="drivekit stub"' });
    }
    const changed = this.changeOf(request, path);
    if (!changed) return this.answerAuthorised(request, path);
    if (this.changing.has(changed)) {
      await request.body?.cancel().catch(() => undefined);
      return api2Error(503, "concurrency", `Another request is changing ${changed} right now: retry`);
    }
    this.changing.add(changed);
    try {
      return await this.answerAuthorised(request, path);
    } finally {
      this.changing.delete(changed);
    }
  }

  /** The object a request changes (PUT, DELETE, an action but clone and upload_chunk), if any. */
  private changeOf(request: Request, path: string): string | undefined {
    const [, id, action] = partsOf(path) ?? [];
    if (!id || !isUuid(id)) return undefined;
    if (request.method === "PUT" || request.method === "DELETE")
      return action === undefined ? id.toLowerCase() : undefined;
    const todo = new URL(request.url).searchParams.get("do");
    if (request.method !== "POST" || action !== "action" || todo === "clone" || todo === "upload_chunk")
      return undefined;
    return id.toLowerCase();
  }

  private async answerAuthorised(request: Request, path: string): Promise<Response> {
    const chunked = this.chunked.route(request, path, new URL(request.url).search);
    if (chunked) return chunked;
    const parts = path.split("/");
    if (parts[0] === "drives" && parts[1] === "upload" && parts.length <= 4) {
      if (request.method !== "POST") return api2Error(405, "method", "use POST");
      let name = parts[2] ?? "";
      try {
        name = decodeURIComponent(name);
      } catch {
        // the name is ignored anyway, as on CloudSigma
      }
      return this.upload(request, name || "upload");
    }
    if (parts[0] === "drives" && isUuid(parts[1] ?? "") && parts[2] === "download" && parts.length <= 4 && !parts[3]) {
      if (request.method !== "GET" && request.method !== "HEAD") return api2Error(405, "method", "use GET");
      const uuid = (parts[1] as string).toLowerCase();
      const drive = this.stub.drives.get(uuid);
      if (!drive) return missing(uuid);
      if (drive.fields.storage_type === "local_nvme")
        return refused(`Drive ${uuid} is ephemeral (local_nvme): it cannot be downloaded`);
      const token = crypto.randomUUID();
      this.tokens.set(token, drive.uuid);
      return new Response(null, { status: 302, headers: { location: `${this.originUrl}download/${token}` } });
    }
    for (const resource of [this.drives, this.libdrives, this.snapshots, this.servers]) {
      const answer = await resource.route(request, path);
      if (answer) return answer;
    }
    return new Response("stub: unexpected API 2.0 request\n", { status: 418 });
  }

  private async upload(request: Request, name: string): Promise<Response> {
    const lengthText = request.headers.get("content-length");
    if (lengthText === null || (request.headers.get("transfer-encoding") ?? "").toLowerCase().includes("chunked")) {
      await request.body?.cancel().catch(() => undefined);
      this.settle({ status: 411, received: 0, expected: -1 });
      return api2Error(411, "validation", "Content-Length required: it sets the size of the new drive");
    }
    const expected = Number(lengthText);
    const drive = this.stub.addDrive(0, { name });
    let received = 0;
    let failure: string | undefined;
    try {
      // streamed: each piece goes to the file as it arrives; all-zero pieces are skipped (sparse)
      for await (const chunk of request.body ?? new ReadableStream<Uint8Array>()) {
        if (received + chunk.length > expected) {
          failure = "body longer than Content-Length";
          break;
        }
        if (!isAllZero(chunk)) writeSync(drive.fd, chunk, 0, chunk.length, received);
        received += chunk.length;
      }
    } catch (error) {
      failure = `connection lost: ${(error as Error).message}`;
    }
    if (!failure && received < expected) failure = `short body: ${received} of ${expected} bytes`;
    if (failure) {
      this.stub.removeDrive(drive);
      this.settle({ status: 400, received, expected });
      return api2Error(400, "validation", `${failure}; no drive created`);
    }
    drive.size = Math.max(expected, this.options.minDriveSize ?? 0);
    ftruncateSync(drive.fd, drive.size);
    this.settle({ status: 200, received, expected, drive: drive.uuid });
    if (this.options.answer === "plain")
      return new Response(`${drive.uuid}\n`, { headers: { "content-type": "text/plain" } });
    return Response.json({ uuid: drive.uuid });
  }

  private async answerOrigin(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const record: OriginRequest = {
      method: request.method,
      path: url.pathname,
      headers: Object.fromEntries(request.headers),
      status: 0,
    };
    this.originRequests.push(record);
    // the stub's faults apply here too (paths /download/TOKEN): a download cut or stalled mid-body
    const response = await this.stub.withFaults(
      request,
      url.pathname,
      () => this.originAnswer(request, url.pathname),
      (status, _kind, message, headers) => new Response(`${message}\n`, { status, headers }),
    );
    record.status = response.status;
    return response;
  }

  private async originAnswer(request: Request, path: string): Promise<Response> {
    const match = /^\/download\/([0-9a-f-]{36})$/.exec(path);
    const uuid = match ? this.tokens.get(match[1] as string) : undefined;
    const drive = uuid ? this.stub.drives.get(uuid) : undefined;
    if (!drive) return new Response("no such download link\n", { status: 404 });
    const hooked = await this.originHook?.(request, drive);
    if (hooked) return hooked;
    const headers: Record<string, string> = { "content-type": "application/octet-stream", "accept-ranges": "bytes" };
    const disposition = this.disposition(drive);
    if (disposition !== undefined) headers["content-disposition"] = disposition;
    const file = Bun.file(drive.path);
    const range = /^bytes=(\d+)-(\d*)$/.exec(request.headers.get("range") ?? "");
    if (range) {
      const start = Number(range[1]);
      const end = range[2] ? Math.min(Number(range[2]), drive.size - 1) : drive.size - 1;
      if (start >= drive.size || start > end) {
        return new Response(null, { status: 416, headers: { ...headers, "content-range": `bytes */${drive.size}` } });
      }
      return new Response(file.slice(start, end + 1), {
        status: 206,
        headers: { ...headers, "content-range": `bytes ${start}-${end}/${drive.size}` },
      });
    }
    return new Response(file.slice(0, drive.size), { headers });
  }
}

/** Add the API 2.0 side to a running 1.0 stub. */
export async function installApi2(stub: DriveStub, options: Api2Options = {}): Promise<Api2Stub> {
  return new Api2Stub(stub, options).start();
}
