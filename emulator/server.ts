// The emulator's core, for tests, benchmarks and trying the scripts without a cloud account: one
// Bun.serve on 127.0.0.1 holding the drives (sparse temporary files) both API generations share,
// the request log, the faults a test injects (error answers, connections dropped or stalled before
// or mid-body, slow answers), added latency and a shared bandwidth limit, and restart with the
// drives gone. Each test can add its own handlers; the API 1.0 calls are emulator/api1.ts, the
// API 2.0 side is installed by emulator/api2.ts. Anything it does not expect gets 418.
import { closeSync, ftruncateSync, openSync, readSync, writeSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Server } from "bun";
import type { KvRecord } from "../lib/kv.ts";
import { Api1Routes } from "./api1.ts";
import { CutServer } from "./cut.ts";
import { api2Error, elasticError, requestId } from "./errors.ts";

export interface StubOptions {
  /** 0 (the default) picks a free port; tests always use 0. */
  port?: number;
  user?: string;
  secret?: string;
  /** Added delay before each answer, in milliseconds (a far-away server). */
  latencyMs?: number;
  /** One bandwidth limit in bytes per second, shared by all request and answer bodies (a WAN link). */
  bandwidth?: number;
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

export class DriveStub {
  readonly user: string;
  readonly secret: string;
  readonly drives = new Map<string, StubDrive>();
  readonly requests: RequestRecord[] = [];
  readonly faults: Fault[] = [];
  /** Handlers each test can set; the first that answers wins. */
  readonly handlers: Handler[] = [];
  options: StubOptions;
  private server!: Server<undefined>;
  private dir!: string;
  private linkFreeAt = 0;
  private stopping = false;
  /** Drives a restart dropped: their files are gone, their descriptors closed only at stop (requests in flight may still hold them). */
  private readonly retired: StubDrive[] = [];
  /** Answers cut or stalled mid-body. */
  private readonly cuts = new CutServer();
  /** Run on restart, after the drives are gone (the API 2.0 side forgets its links and restarts its origin). */
  readonly restartListeners: Array<() => void> = [];
  private readonly tasks = new Set<Promise<void>>();
  /** The API 1.0 drive calls: what no handler answers goes there. */
  private readonly api1 = new Api1Routes(this);

  constructor(options: StubOptions = {}) {
    this.options = options;
    this.user = options.user ?? crypto.randomUUID();
    this.secret = options.secret ?? Buffer.from(crypto.getRandomValues(new Uint8Array(18))).toString("base64url");
  }

  /** True once stop() began: background work (imaging, copies) ends early. */
  get stopped(): boolean {
    return this.stopping;
  }

  /** Keep a background task (an imaging, a copy) so stop() waits for it. */
  track(task: Promise<unknown>): void {
    const kept: Promise<void> = task.then(
      () => undefined,
      () => undefined,
    );
    this.tasks.add(kept);
    void kept.finally(() => this.tasks.delete(kept));
  }

  get url(): string {
    return `http://127.0.0.1:${this.server.port}/`;
  }

  get port(): number {
    return this.server.port as number;
  }

  /** The environment a script needs to talk to this stub over API 1.0. */
  get env(): Record<string, string> {
    return { EHURI: this.url, EHAUTH: `${this.user}:${this.secret}` };
  }

  async start(): Promise<this> {
    this.dir = await mkdtemp(join(tmpdir(), "drivekit-stub-"));
    this.serve(this.options.port ?? 0);
    return this;
  }

  private serve(port: number): void {
    this.server = Bun.serve({
      hostname: "127.0.0.1",
      port,
      maxRequestBodySize: 2 ** 40,
      idleTimeout: 120,
      fetch: (request) => this.answer(request),
      error: (error) => elasticError(500, "system", `stub failure: ${error.message}`),
    });
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.server?.stop(true);
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
    this.server.stop(true);
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

  // ---- plumbing: latency, one shared link, faults, counting ----

  /** Wait until `bytes` may cross the shared link (a simple serialising bandwidth model). */
  async throttle(bytes: number): Promise<void> {
    const bandwidth = this.options.bandwidth;
    if (!bandwidth || bytes <= 0) return;
    const now = performance.now();
    const start = Math.max(now, this.linkFreeAt);
    this.linkFreeAt = start + (bytes / bandwidth) * 1000;
    const wait = this.linkFreeAt - now;
    if (wait > 1) await Bun.sleep(wait);
  }

  /** Read a request body through the link model; at most `limit` bytes, else undefined. */
  async readBody(request: Request, limit = 2 ** 31): Promise<Uint8Array | undefined> {
    const body = new Uint8Array(await request.arrayBuffer());
    await this.throttle(body.length);
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

  /** True when the request carries this emulator's credentials (HTTP Basic). */
  authorised(request: Request): boolean {
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
    if (this.options.latencyMs) await Bun.sleep(this.options.latencyMs);
    const api2 = path.startsWith(API2_PREFIX);
    const response = await this.withFaults(
      request,
      path,
      () => this.route(request, path),
      (status, kind, message, headers) =>
        api2
          ? api2Error(status, kind ?? "backend", message, headers)
          : elasticError(status, kind ?? "system", message, headers),
    );
    // every API 2.0 answer names its request, as CloudSigma's do (support asks for the id)
    if (api2 && !response.headers.has("x-request-id")) {
      try {
        response.headers.set("x-request-id", requestId());
      } catch {
        // a response with immutable headers (none today): answer without the id
      }
    }
    record.status = response.status;
    const length = Number(response.headers.get("content-length") ?? 0);
    record.bytesOut = length;
    if (length > 0 && response.status < 300) await this.throttle(length);
    return response;
  }

  private async route(request: Request, path: string): Promise<Response> {
    for (const handler of this.handlers) {
      const answer = await handler(request, path);
      if (answer) return answer;
    }
    return this.api1.route(request, path);
  }
}

export async function startStub(options: StubOptions = {}): Promise<DriveStub> {
  return new DriveStub(options).start();
}
