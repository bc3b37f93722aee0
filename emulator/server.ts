// An emulator of the drive API (1.0 drive calls), for tests, benchmarks and trying the scripts
// without a cloud account. One Bun.serve on 127.0.0.1; each test can add its own handlers,
// inject faults (error answers, connections dropped or stalled before or mid-body, slow answers),
// restart it with its drives gone, and count requests. Anything it does not expect gets 418.
import { closeSync, ftruncateSync, openSync, readSync, writeSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import zlib from "node:zlib";
import { formatRecord, formatRecords, parseRecord, type KvRecord } from "../lib/kv.ts";
import { CutServer } from "./cut.ts";
import { Transport, type Listener, type TransportOptions } from "./transport.ts";

export const MAX_READ = 4 * 1024 * 1024;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const SIZE = /^(\d+)([kKMGT]?)$/;
const SHIFT: Record<string, number> = { "": 0, k: 10, K: 10, M: 20, G: 30, T: 40 };

/** Also: `tls` (https), and the WAN model: `rttMs`, `connectCostMs`, `bandwidth`, `connBandwidth` (emulator/wan.ts). */
export interface StubOptions extends TransportOptions {
  /** 0 (the default) picks a free port; tests always use 0. */
  port?: number;
  user?: string;
  secret?: string;
  /** Bytes of source copied per imaging step, and the pause between steps. */
  imagingStepBytes?: number;
  imagingStepMs?: number;
}

export interface StubDrive {
  uuid: string;
  fields: KvRecord;
  size: number;
  path: string;
  fd: number;
  /** Imaging in progress: bytes of the source done out of total, or queued. */
  imaging?: { done: number; total: number; queued: boolean };
  /**
   * API 2.0 lifecycle status, `unmounted` when unset: creating, uploading, cloning, resizing,
   * mounted... The 2.0 view of a drive maps the 1.0 fields: `name`, `media` (default disk),
   * `meta` = the `user:KEY` fields, `tags` = the space-separated `tags` field.
   */
  status?: string;
}

export interface RequestRecord {
  method: string;
  path: string;
  status: number;
  bytesIn: number;
  bytesOut: number;
  headers: Record<string, string>;
}

/**
 * `afterBytes` acts mid-body: on the request's body for a request that carries one (an upload),
 * else on the answer's body (a download), whose Content-Length still promises the whole (that
 * answer comes after a 307 to a raw socket: emulator/cut.ts).
 */
export type FaultAction =
  | { status: number; kind?: string; message?: string; headers?: Record<string, string> }
  /** The connection drops: before the answer, or after `afterBytes` bytes of the body. */
  | { reset: true; afterBytes?: number }
  /** Nothing moves for `delayMs`: before the answer, or after `afterBytes` bytes of the body (then the connection drops). */
  | { delayMs: number; afterBytes?: number }
  /** The answer's body ends cleanly after `afterBytes` bytes, short of its Content-Length (on an upload: as reset). */
  | { end: true; afterBytes: number };

export interface Fault {
  method?: string;
  /** Matched against the path (after the base path). */
  path?: RegExp;
  /** Act on every Nth matching request (1 = each). */
  every?: number;
  /** Act at most this many times. */
  times?: number;
  action: FaultAction;
  matched?: number;
  acted?: number;
}

/** The error answer of a side of the emulator for an injected `status` fault. */
export type FaultAnswer = (
  status: number,
  kind: string | undefined,
  message: string,
  headers?: Record<string, string>,
) => Response;

/** A test's own handler: return a Response to answer, or undefined to let the emulator answer. */
export type Handler = (request: Request, path: string) => Response | undefined | Promise<Response | undefined>;

export function elasticError(
  status: number,
  kind: string,
  message: string,
  headers: Record<string, string> = {},
): Response {
  return new Response(`errors:${kind} ${message}\n`, {
    status,
    headers: { "content-type": "text/plain", "x-elastic-error": kind, ...headers },
  });
}

function parseStubSize(text: string | undefined): number | undefined {
  const match = SIZE.exec(text ?? "");
  if (!match) return undefined;
  const value = Number(match[1]) * 2 ** (SHIFT[match[2] ?? ""] ?? 0);
  return Number.isSafeInteger(value) ? value : undefined;
}

const kvAnswer = (record: KvRecord | KvRecord[]) =>
  new Response(
    Array.isArray(record) ? formatRecords(record, { escape: true }) : formatRecord(record, { escape: true }),
    {
      headers: { "content-type": "text/plain" },
    },
  );

const notFound = (what: string) =>
  elasticError(404, "missing", `Drive ${what} could not be found. Please re-validate your entry.`);

/** API 2.0 errors: a JSON list, as CloudSigma answers (`error_point`, `error_type`, `error_message`). */
export function jsonError(
  status: number,
  type: string,
  message: string,
  headers: Record<string, string> = {},
): Response {
  return Response.json([{ error_point: null, error_type: type, error_message: message }], { status, headers });
}

/** The path prefix of the API 2.0 side (emulator/api2.ts): its answers carry X-REQUEST-ID and JSON errors. */
export const API2_PREFIX = "/api/2.0/";

/**
 * A connection dropped mid-answer: the client sees a reset. The stream errors with no Error
 * object (Bun prints an Error's stack into the test output; an injected fault is not a failure).
 */
function dropConnection(): Response {
  return new Response(
    new ReadableStream({
      start(controller) {
        controller.error(undefined);
      },
    }),
    { headers: { "content-length": "1" } },
  );
}

// `tier` (disk or ssd): the vendor's upload tool puts `tier disk` (or `-t ssd`) in every create
function carriesBody(request: Request): boolean {
  return Number(request.headers.get("content-length") ?? 0) > 0 || request.headers.has("transfer-encoding");
}

/** Read `bytes` of a request's body and stop reading (what a server that fails mid-upload does). */
async function readPrefix(request: Request, bytes: number): Promise<void> {
  const reader = request.body?.getReader();
  // bounded: each read takes at least one byte, or ends
  for (let read = 0; reader && read < bytes; ) {
    const { value, done } = await reader.read().catch(() => ({ value: undefined, done: true }));
    if (done || !value) return;
    read += value.length;
  }
}

const CREATE_FIELDS = new Set(["name", "size", "claim:type", "readers", "tags", "avoid", "encryption:cipher", "tier"]);
const TIERS = new Set(["disk", "ssd"]);
const SET_FIELDS = new Set(["name", "size", "claim:type", "readers", "tags"]);

export class DriveStub {
  readonly user: string;
  readonly secret: string;
  readonly drives = new Map<string, StubDrive>();
  readonly requests: RequestRecord[] = [];
  readonly faults: Fault[] = [];
  /** Handlers each test can set; the first that answers wins. */
  readonly handlers: Handler[] = [];
  options: StubOptions;
  /** https and the WAN model, for every origin of this emulator. */
  transport!: Transport;
  private server!: Listener;
  private dir!: string;
  private stopped = false;
  /** Drives a restart dropped: their files are gone, their descriptors closed only at stop (requests in flight may still hold them). */
  private readonly retired: StubDrive[] = [];
  /** Answers cut or stalled mid-body. */
  private readonly cuts = new CutServer();
  /** Run on restart, after the drives are gone (the API 2.0 side forgets its links and restarts its origin). */
  readonly restartListeners: Array<() => void> = [];
  private readonly tasks = new Set<Promise<void>>();

  constructor(options: StubOptions = {}) {
    this.options = options;
    this.user = options.user ?? crypto.randomUUID();
    this.secret = options.secret ?? Buffer.from(crypto.getRandomValues(new Uint8Array(18))).toString("base64url");
  }

  get url(): string {
    return this.server.url;
  }

  get port(): number {
    return this.server.port;
  }

  /** The CA that signed the https certificate (for NODE_EXTRA_CA_CERTS); undefined over plain http. */
  get caPath(): string | undefined {
    return this.transport.caPath;
  }

  /** The environment a script needs to talk to this stub over API 1.0. */
  get env(): Record<string, string> {
    return { EHURI: this.url, EHAUTH: `${this.user}:${this.secret}` };
  }

  async start(): Promise<this> {
    this.dir = await mkdtemp(join(tmpdir(), "drivekit-stub-"));
    try {
      this.transport = Transport.start(this.dir, this.options);
    } catch (error) {
      await rm(this.dir, { recursive: true, force: true });
      throw error;
    }
    this.serve(this.options.port ?? 0);
    return this;
  }

  private serve(port: number): void {
    this.server = this.transport.listen(port, {
      maxRequestBodySize: 2 ** 40,
      idleTimeout: 120,
      fetch: (request) => this.answer(request),
      error: (error) => elasticError(500, "system", `stub failure: ${error.message}`),
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.server?.stop();
    this.cuts.stop();
    await Promise.allSettled([...this.tasks]);
    for (const drive of [...this.drives.values(), ...this.retired]) closeSync(drive.fd);
    this.drives.clear();
    this.retired.length = 0;
    await rm(this.dir, { recursive: true, force: true });
  }

  /**
   * A server restarted with its storage wiped: every connection dropped, every drive gone, the
   * same port and credentials. Requests during the restart find nobody listening.
   */
  async restart(): Promise<void> {
    const port = this.port;
    const gone = [...this.drives.values()];
    // no await until it listens again: a client in this process never finds the port closed
    this.server.stop();
    this.cuts.stop();
    this.retired.push(...gone);
    this.drives.clear();
    for (const listener of this.restartListeners) listener();
    this.serve(port);
    await Promise.all(gone.map((drive) => rm(drive.path, { force: true })));
  }

  /** Destroy a drive (its file and descriptor); nothing to do for one a restart already dropped. */
  removeDrive(drive: StubDrive): void {
    if (this.drives.get(drive.uuid) !== drive) return;
    closeSync(drive.fd);
    this.drives.delete(drive.uuid);
    void rm(drive.path, { force: true });
  }

  /** Requests whose method and path match (both optional). */
  count(method?: string, path?: RegExp): number {
    return this.requests.filter((r) => (!method || r.method === method) && (!path || path.test(r.path))).length;
  }

  fault(fault: Fault): Fault {
    fault.matched = 0;
    fault.acted = 0;
    this.faults.push(fault);
    return fault;
  }

  reset(): void {
    this.faults.length = 0;
    this.handlers.length = 0;
    this.requests.length = 0;
  }

  /** Add a drive directly (test set-up), optionally filled with bytes at offset 0. */
  addDrive(size: number, fields: KvRecord = {}, content?: Uint8Array): StubDrive {
    const uuid = crypto.randomUUID();
    const path = join(this.dir, uuid);
    const fd = openSync(path, "w+");
    ftruncateSync(fd, size);
    if (content) writeSync(fd, content, 0, content.length, 0);
    const drive: StubDrive = {
      uuid,
      size,
      path,
      fd,
      fields: { name: fields.name ?? uuid, "claim:type": "exclusive", "encryption:cipher": "aes-xts-plain", ...fields },
    };
    this.drives.set(uuid, drive);
    return drive;
  }

  /** Bytes of a drive (for test assertions). */
  readDrive(uuid: string, offset = 0, length?: number): Uint8Array {
    const drive = this.drives.get(uuid);
    if (!drive) throw new Error(`no drive ${uuid}`);
    const size = Math.max(0, Math.min(length ?? drive.size, drive.size - offset));
    const buffer = new Uint8Array(size);
    let done = 0;
    while (done < size) {
      const n = readSync(drive.fd, buffer, done, size - done, offset + done);
      if (n === 0) break;
      done += n;
    }
    return buffer;
  }

  writeDrive(uuid: string, offset: number, bytes: Uint8Array): void {
    const drive = this.drives.get(uuid);
    if (!drive) throw new Error(`no drive ${uuid}`);
    writeSync(drive.fd, bytes, 0, bytes.length, offset);
  }

  info(drive: StubDrive, full: boolean): KvRecord {
    const record: KvRecord = {
      ...drive.fields,
      drive: drive.uuid,
      size: String(drive.size),
      status: "active",
      user: this.user,
      "read:bytes": drive.fields["read:bytes"] ?? "0",
      "write:bytes": drive.fields["write:bytes"] ?? "0",
    };
    if (drive.imaging) {
      const percent = Math.floor((drive.imaging.done / Math.max(1, drive.imaging.total)) * 100);
      record.imaging = drive.imaging.queued ? "queued" : full ? `${percent}%` : "true";
    }
    return record;
  }

  // ---- plumbing: faults, counting (the link's latency and bandwidth: emulator/transport.ts) ----

  /** Read a request body; at most `limit` bytes, else undefined. */
  async readBody(request: Request, limit = 2 ** 31): Promise<Uint8Array | undefined> {
    const body = new Uint8Array(await request.arrayBuffer());
    return body.length > limit ? undefined : body;
  }

  /**
   * Answer a request through the first fault that matches it, if any: an error answer (made by
   * `error`), a drop or a stall before or mid-body; `answer` makes the usual answer.
   */
  async withFaults(
    request: Request,
    path: string,
    answer: () => Promise<Response>,
    error: FaultAnswer,
  ): Promise<Response> {
    const fault = this.pickFault(request.method, path);
    if (!fault) return answer();
    if ("status" in fault) return error(fault.status, fault.kind, fault.message ?? "injected fault", fault.headers);
    const pauseMs = "delayMs" in fault ? fault.delayMs : 0;
    if (fault.afterBytes === undefined) {
      if ("reset" in fault) return dropConnection();
      await Bun.sleep(pauseMs);
      return answer();
    }
    if (carriesBody(request)) {
      await readPrefix(request, fault.afterBytes);
      if (pauseMs > 0) await Bun.sleep(pauseMs);
      return dropConnection();
    }
    // Bun.serve cannot send a body short of its Content-Length: the cut answer comes from a raw socket
    const location = await this.cuts.add(await answer(), fault.afterBytes, pauseMs, "end" in fault ? "end" : "reset");
    return new Response(null, { status: 307, headers: { location } });
  }

  private pickFault(method: string, path: string): FaultAction | undefined {
    for (const fault of this.faults) {
      if (fault.method && fault.method !== method) continue;
      if (fault.path && !fault.path.test(path)) continue;
      fault.matched = (fault.matched ?? 0) + 1;
      if (fault.times !== undefined && (fault.acted ?? 0) >= fault.times) continue;
      if (fault.every && fault.matched % fault.every !== 0) continue;
      fault.acted = (fault.acted ?? 0) + 1;
      return fault.action;
    }
    return undefined;
  }

  private authorised(request: Request): boolean {
    const header = request.headers.get("authorization") ?? "";
    const expected = `Basic ${Buffer.from(`${this.user}:${this.secret}`).toString("base64")}`;
    return header === expected;
  }

  private async answer(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const path = url.pathname;
    const record: RequestRecord = {
      method: request.method,
      path,
      status: 0,
      bytesIn: Number(request.headers.get("content-length") ?? 0),
      bytesOut: 0,
      headers: Object.fromEntries(request.headers),
    };
    if (this.requests.length < 1_000_000) this.requests.push(record);
    const api2 = path.startsWith(API2_PREFIX);
    const response = await this.withFaults(
      request,
      path,
      () => this.route(request, path),
      (status, kind, message, headers) =>
        api2
          ? jsonError(status, kind ?? "backend", message, headers)
          : elasticError(status, kind ?? "system", message, headers),
    );
    // every API 2.0 answer names its request, as CloudSigma's do (support asks for the id)
    if (api2 && !response.headers.has("x-request-id")) {
      try {
        response.headers.set("x-request-id", crypto.randomUUID().replace(/-/g, "").slice(0, 16));
      } catch {
        // a response with immutable headers (none today): answer without the id
      }
    }
    record.status = response.status;
    const length = Number(response.headers.get("content-length") ?? 0);
    record.bytesOut = length;
    return response;
  }

  private async route(request: Request, path: string): Promise<Response> {
    for (const handler of this.handlers) {
      const answer = await handler(request, path);
      if (answer) return answer;
    }
    if (!path.startsWith("/drives/")) return new Response("stub: unexpected request\n", { status: 418 });
    if (!this.authorised(request)) {
      return elasticError(401, "auth", "Authentication failed. Please check your user UUID and API key.", {
        "www-authenticate": 'Basic realm="drivekit stub"',
      });
    }
    const parts = path.slice("/drives/".length).split("/").filter(Boolean);
    const method = request.method;
    const expect = (wanted: string) =>
      method === wanted ? undefined : elasticError(405, "method", `${method} is not allowed here; use ${wanted}`);
    // the vendor's elastichosts.sh sends every call as a POST: a bodyless POST on a read-only call is answered as the GET
    const expectRead = async () => {
      if (method === "GET") return undefined;
      if (method === "POST" && (await request.arrayBuffer()).byteLength === 0) return undefined;
      return elasticError(405, "method", `${method} is not allowed here; use GET (or a POST without a body)`);
    };
    const [first, action, ...rest] = parts;
    if (first === "list" && parts.length === 1)
      return (await expectRead()) ?? new Response(`${[...this.drives.keys()].join("\n")}\n`);
    if (first === "info" && parts.length === 1)
      return (await expectRead()) ?? kvAnswer([...this.drives.values()].map((d) => this.info(d, false)));
    if (first === "create" && parts.length === 1) return expect("POST") ?? (await this.create(request));
    if (!first || !action) return new Response("stub: unexpected request\n", { status: 418 });
    const drive = UUID.test(first) ? this.drives.get(first) : undefined;
    switch (action) {
      case "info":
        if (rest.length > 1 || (rest.length === 1 && rest[0] !== "full")) break;
        return (await expectRead()) ?? (drive ? kvAnswer(this.info(drive, rest[0] === "full")) : notFound(first));
      case "set":
        if (rest.length) break;
        return expect("POST") ?? (drive ? await this.set(request, drive) : notFound(first));
      case "destroy":
        if (rest.length) break;
        return expect("POST") ?? (drive ? this.destroy(drive) : notFound(first));
      case "image":
        if (rest.length < 1 || rest.length > 2) break;
        return expect("POST") ?? (drive ? this.image(drive, rest[0] as string, rest[1]) : notFound(first));
      case "read":
        if (rest.length !== 2) break;
        return (await expectRead()) ?? (drive ? this.read(drive, rest[0], rest[1]) : notFound(first));
      case "write":
        if (rest.length > 1) break;
        return expect("POST") ?? (drive ? await this.write(request, drive, rest[0] ?? "0") : notFound(first));
    }
    return new Response("stub: unexpected request\n", { status: 418 });
  }

  // ---- the API 1.0 calls ----

  private checkFields(fields: KvRecord, allowed: Set<string>): Response | undefined {
    for (const [key, value] of Object.entries(fields)) {
      if (!allowed.has(key) && !key.startsWith("user:"))
        return elasticError(400, "usage", `Unknown or read-only field '${key}'`);
      if (key === "claim:type" && value !== "exclusive" && value !== "shared")
        return elasticError(400, "usage", `Invalid claim:type '${value}'`);
      if (key === "encryption:cipher" && value !== "none" && value !== "aes-xts-plain")
        return elasticError(400, "usage", `Invalid encryption:cipher '${value}'`);
      if ((key === "readers" || key === "avoid") && value.split(" ").some((item) => !UUID.test(item)))
        return elasticError(400, "usage", `Invalid ${key} '${value}'`);
      if (key === "tier" && !TIERS.has(value))
        return elasticError(400, "usage", `Invalid tier '${value}': expected disk or ssd`);
    }
    if (fields.size !== undefined && !parseStubSize(fields.size))
      return elasticError(400, "usage", `Invalid size '${fields.size}'`);
    return undefined;
  }

  private async create(request: Request): Promise<Response> {
    const fields = parseRecord(await request.text());
    if (!fields.name || !fields.size) return elasticError(400, "usage", "Drive name and size are required");
    const bad = this.checkFields(fields, CREATE_FIELDS);
    if (bad) return bad;
    const { size, avoid: _avoid, ...rest } = fields;
    const drive = this.addDrive(parseStubSize(size) as number, rest);
    return kvAnswer(this.info(drive, false));
  }

  private async set(request: Request, drive: StubDrive): Promise<Response> {
    const fields = parseRecord(await request.text());
    const bad = this.checkFields(fields, SET_FIELDS);
    if (bad) return bad;
    const { size, ...rest } = fields;
    if (size !== undefined) {
      drive.size = parseStubSize(size) as number;
      ftruncateSync(drive.fd, drive.size);
    }
    Object.assign(drive.fields, rest);
    return kvAnswer(this.info(drive, false));
  }

  private destroy(drive: StubDrive): Response {
    if (drive.fields.claimed) return elasticError(409, "busy", `Drive ${drive.uuid} is in use by a server`);
    if (drive.imaging) return elasticError(409, "busy", `Drive ${drive.uuid} is imaging`);
    this.removeDrive(drive);
    return new Response(null, { status: 204 });
  }

  private read(drive: StubDrive, offsetText: string | undefined, sizeText: string | undefined): Response {
    const offset = parseStubSize(offsetText);
    const size = parseStubSize(sizeText);
    if (offset === undefined || size === undefined) return elasticError(400, "usage", "Invalid offset or size");
    if (size > MAX_READ) return elasticError(400, "usage", `Size ${size} exceeds the maximum of 4M for a single read`);
    if (offset > drive.size) return elasticError(400, "usage", `Offset ${offset} is beyond the end of the drive`);
    const bytes = this.readDrive(drive.uuid, offset, size);
    drive.fields["read:bytes"] = String(Number(drive.fields["read:bytes"] ?? 0) + bytes.length);
    return new Response(bytes, {
      headers: { "content-type": "application/octet-stream", "content-length": String(bytes.length) },
    });
  }

  private async write(request: Request, drive: StubDrive, offsetText: string): Promise<Response> {
    if ((request.headers.get("transfer-encoding") ?? "").toLowerCase().includes("chunked")) {
      await request.body?.cancel();
      return elasticError(400, "usage", "Transfer-Encoding: chunked is not supported; send a Content-Length");
    }
    if (request.headers.get("content-length") === null) return elasticError(411, "usage", "Content-Length required");
    const offset = parseStubSize(offsetText);
    if (offset === undefined) return elasticError(400, "usage", `Invalid offset '${offsetText}'`);
    const raw = await this.readBody(request);
    if (!raw) return elasticError(400, "usage", "Body too large");
    const encoding = (request.headers.get("content-encoding") ?? "identity").toLowerCase();
    let bytes: Uint8Array;
    if (encoding === "gzip") {
      try {
        bytes = Bun.gunzipSync(raw as Uint8Array<ArrayBuffer>);
      } catch {
        return elasticError(400, "usage", "Body is not valid gzip");
      }
    } else if (encoding === "identity") {
      bytes = raw;
    } else {
      return elasticError(400, "usage", `Unsupported Content-Encoding '${encoding}'`);
    }
    if (offset + bytes.length > drive.size) {
      return elasticError(
        507,
        "full",
        `Write of ${bytes.length} bytes at ${offset} goes beyond the end of drive ${drive.uuid} (${drive.size} bytes)`,
      );
    }
    writeSync(drive.fd, bytes, 0, bytes.length, offset);
    drive.fields["write:bytes"] = String(Number(drive.fields["write:bytes"] ?? 0) + bytes.length);
    return new Response(null, { status: 204 });
  }

  private image(target: StubDrive, sourceId: string, conversion: string | undefined): Response {
    const source = UUID.test(sourceId) ? this.drives.get(sourceId) : undefined;
    if (!source) return notFound(sourceId);
    if (source === target) return elasticError(400, "usage", "A drive cannot be imaged from itself");
    if (conversion !== undefined && conversion !== "gzip" && conversion !== "gunzip") {
      return elasticError(400, "usage", `Unknown conversion '${conversion}'`);
    }
    if (target.imaging || target.fields.claimed) return elasticError(409, "busy", `Drive ${target.uuid} is busy`);
    target.imaging = { done: 0, total: source.size, queued: false };
    const task = this.runImaging(target, source, conversion).finally(() => {
      target.imaging = undefined;
      this.tasks.delete(task);
    });
    this.tasks.add(task);
    return new Response(null, { status: 204 });
  }

  /** Copy in steps, so progress can be watched; gzip or gunzip on the way. */
  private async runImaging(target: StubDrive, source: StubDrive, conversion: string | undefined): Promise<void> {
    // about a hundred steps whatever the size, so a large sparse drive images in seconds
    const step =
      this.options.imagingStepBytes ??
      Math.min(64 * 1024 * 1024, Math.max(4 * 1024 * 1024, Math.ceil(source.size / 100 / 4096) * 4096));
    const pause = this.options.imagingStepMs ?? 20;
    const imaging = target.imaging as NonNullable<StubDrive["imaging"]>;
    const stub = this;
    async function* sourceSteps(): AsyncGenerator<Uint8Array> {
      for (let offset = 0; offset < source.size; offset += step) {
        if (stub.stopped || !stub.drives.has(source.uuid)) return;
        yield stub.readDrive(source.uuid, offset, step);
        imaging.done = Math.min(source.size, offset + step);
        if (pause > 0) await Bun.sleep(pause);
      }
    }
    const output: AsyncIterable<Uint8Array> = conversion
      ? Readable.from(sourceSteps()).pipe(conversion === "gzip" ? zlib.createGzip({ level: 1 }) : zlib.createGunzip())
      : sourceSteps();
    let at = 0;
    try {
      for await (const chunk of output) {
        const room = target.size - at;
        if (room <= 0 || !this.drives.has(target.uuid)) break;
        const piece = chunk.length > room ? chunk.subarray(0, room) : chunk;
        writeSync(target.fd, piece, 0, piece.length, at);
        at += piece.length;
      }
    } catch {
      // a source that is not gzip stops a gunzip imaging where it fails, as a real server would leave it
    }
    // the rest of the target reads as zeros, as after a fresh copy
    if (this.drives.has(target.uuid) && at < target.size) {
      ftruncateSync(target.fd, at);
      ftruncateSync(target.fd, target.size);
    }
  }
}

export async function startStub(options: StubOptions = {}): Promise<DriveStub> {
  return new DriveStub(options).start();
}
