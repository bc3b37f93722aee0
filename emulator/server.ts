// The emulator's core, for tests, benchmarks and trying the scripts without a cloud account: one
// Bun.serve on 127.0.0.1 holding the drives (sparse temporary files) both API generations share,
// the request log, the faults a test injects (error answers, connections dropped or stalled before
// or mid-body, slow answers), and restart with the drives gone; https and the WAN model (round
// trips, connect cost, bandwidths) are how it listens (emulator/transport.ts). Each test can add its own handlers; the API 1.0 calls are emulator/api1.ts, the
// API 2.0 side is installed by emulator/api2.ts. Anything it does not expect gets 418.
import { closeSync, ftruncateSync, openSync, readSync, writeSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { KvRecord } from "../lib/kv.ts";
import { Api1Routes } from "./api1.ts";
import { CutServer } from "./cut.ts";
import { api2Error, elasticError, requestId } from "./errors.ts";
import { Transport, type Listener, type TransportOptions } from "./transport.ts";

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
   * API 2.0 lifecycle status while an operation runs (creating, uploading, cloning_dst,
   * cloning_src, resizing), or one a test sets (`mounted` counts as mounted on a running server).
   * Unset, the drive is `mounted` when a server holds it (or a 1.0 claim), else `unmounted`.
   * The 2.0 view of a drive maps the 1.0 fields: emulator/drive-view.ts.
   */
  status?: string;
  /** The storage host it lives on (API 2.0 `avoid` and `availability_groups`). */
  host?: number;
  /** A library drive's own fields (arch, os, image_type, paid, licenses...): emulator/api2-libdrives.ts. */
  library?: Record<string, unknown>;
}

/** An API 2.0 server (emulator/api2-servers.ts): only what mounting drives needs. */
export interface StubServer {
  uuid: string;
  name: string;
  status: "stopped" | "running";
  /** The drives it holds, in order, with how they are attached. */
  drives: { drive: string; device: string; dev_channel: string; boot_order: number | null }[];
  /** The rest of its definition (cpu, mem, vnc_password, meta, tags), shown as given. */
  definition: Record<string, unknown>;
}

/** An API 2.0 snapshot (emulator/api2-snapshots.ts): the drive's bytes as of the instant it was made. */
export interface StubSnapshot {
  uuid: string;
  /** The drive it was taken of. */
  drive: string;
  name: string;
  meta: Record<string, string>;
  tags: string[];
  /** `2014-06-05 09:52:53.896622+00:00`, as CloudSigma shows it. */
  timestamp: string;
  status: "creating" | "available";
  /** The drive's size and media when it was taken. */
  size: number;
  media: string;
  path: string;
  fd: number;
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

/** `length` bytes (default: to the end) of an emulator file from `offset`. */
function readFile(file: { fd: number; size: number }, offset: number, length?: number): Uint8Array {
  const size = Math.max(0, Math.min(length ?? file.size, file.size - offset));
  const buffer = new Uint8Array(size);
  let done = 0;
  while (done < size) {
    const n = readSync(file.fd, buffer, done, size - done, offset + done);
    if (n === 0) break;
    done += n;
  }
  return buffer;
}

export class DriveStub {
  readonly user: string;
  readonly secret: string;
  readonly drives = new Map<string, StubDrive>();
  /** API 2.0 servers (what mounts a drive) and snapshots; deleting a drive deletes its snapshots. */
  readonly servers = new Map<string, StubServer>();
  readonly snapshots = new Map<string, StubSnapshot>();
  readonly requests: RequestRecord[] = [];
  readonly faults: Fault[] = [];
  /** Handlers each test can set; the first that answers wins. */
  readonly handlers: Handler[] = [];
  options: StubOptions;
  /** https and the WAN model, for every origin of this emulator. */
  transport!: Transport;
  private server!: Listener;
  private dir!: string;
  private stopping = false;
  /** Drives a restart dropped: their files are gone, their descriptors closed only at stop (requests in flight may still hold them). */
  private readonly retired: { fd: number }[] = [];
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
    this.stopping = true;
    this.server?.stop();
    this.cuts.stop();
    await Promise.allSettled([...this.tasks]);
    for (const file of [...this.drives.values(), ...this.snapshots.values(), ...this.retired]) closeSync(file.fd);
    this.drives.clear();
    this.snapshots.clear();
    this.servers.clear();
    this.retired.length = 0;
    await rm(this.dir, { recursive: true, force: true });
  }

  /**
   * A server restarted with its storage wiped: every connection dropped, every drive gone, the
   * same port and credentials. Requests during the restart find nobody listening.
   */
  async restart(): Promise<void> {
    const port = this.port;
    const gone = [...this.drives.values(), ...this.snapshots.values()];
    // no await until it listens again: a client in this process never finds the port closed
    this.server.stop();
    this.cuts.stop();
    this.retired.push(...gone);
    this.drives.clear();
    this.snapshots.clear();
    this.servers.clear();
    for (const listener of this.restartListeners) listener();
    this.serve(port);
    await Promise.all(gone.map((drive) => rm(drive.path, { force: true })));
  }

  /**
   * Destroy a drive (its file and descriptor), its snapshots and its place on servers; nothing to
   * do for one a restart already dropped.
   */
  removeDrive(drive: StubDrive): void {
    if (this.drives.get(drive.uuid) !== drive) return;
    closeSync(drive.fd);
    this.drives.delete(drive.uuid);
    void rm(drive.path, { force: true });
    for (const snapshot of [...this.snapshots.values()])
      if (snapshot.drive === drive.uuid) this.removeSnapshot(snapshot);
    for (const server of this.servers.values()) server.drives = server.drives.filter((d) => d.drive !== drive.uuid);
  }

  removeSnapshot(snapshot: StubSnapshot): void {
    if (this.snapshots.get(snapshot.uuid) !== snapshot) return;
    closeSync(snapshot.fd);
    this.snapshots.delete(snapshot.uuid);
    void rm(snapshot.path, { force: true });
  }

  /** A new sparse file of `size` bytes in the emulator's folder (a drive's or a snapshot's). */
  createFile(uuid: string, size: number): { path: string; fd: number } {
    const path = join(this.dir, uuid);
    const fd = openSync(path, "w+");
    ftruncateSync(fd, size);
    return { path, fd };
  }

  /**
   * Mount a drive, as a server using it does: a server (named after the drive, running unless
   * `running` is false) that holds it, listed under API 2.0 `servers/`. A drive mounted on a running
   * server refuses deletion and resizing, ignores a size change by PUT, can be snapshotted, and
   * tests may go on reading and writing it (writeDrive: the server's own writes).
   */
  mount(uuid: string, options: { running?: boolean } = {}): StubServer {
    if (!this.drives.has(uuid)) throw new Error(`no drive ${uuid}`);
    const server: StubServer = {
      uuid: crypto.randomUUID(),
      name: `server of ${uuid}`,
      status: options.running === false ? "stopped" : "running",
      drives: [{ drive: uuid, device: "virtio", dev_channel: "0:0", boot_order: 1 }],
      definition: { cpu: 1000, mem: 536870912, vnc_password: "emulated", meta: {}, tags: [] },
    };
    this.servers.set(server.uuid, server);
    return server;
  }

  /** Detach a drive from every server holding it (the servers stay). */
  unmount(uuid: string): void {
    for (const server of this.servers.values()) server.drives = server.drives.filter((d) => d.drive !== uuid);
  }

  /** The servers holding a drive. */
  serversOf(uuid: string): StubServer[] {
    return [...this.servers.values()].filter((server) => server.drives.some((d) => d.drive === uuid));
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
    const { path, fd } = this.createFile(uuid, size);
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
    return readFile(drive, offset, length);
  }

  /** Bytes of a snapshot: the drive as it was when the snapshot was taken (for test assertions). */
  readSnapshot(uuid: string, offset = 0, length?: number): Uint8Array {
    const snapshot = this.snapshots.get(uuid);
    if (!snapshot) throw new Error(`no snapshot ${uuid}`);
    return readFile(snapshot, offset, length);
  }

  writeDrive(uuid: string, offset: number, bytes: Uint8Array): void {
    const drive = this.drives.get(uuid);
    if (!drive) throw new Error(`no drive ${uuid}`);
    writeSync(drive.fd, bytes, 0, bytes.length, offset);
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
