// The API 2.0 drive calls of the emulator, on the same drive map as the 1.0 side (DriveStub.drives):
// list (pages of 20 by default, `limit=0` for all, `offset`, `fields=`), `drives/detail/`, get,
// create (`{"objects": [...]}`, `?avoid=`), update (PUT), delete, `action/?do=clone` and
// `action/?do=resize`, `capabilities/`. Lifecycle statuses as CloudSigma's: a new drive is
// `creating`, a clone `cloning` (its bytes are copied, holes skipped), a resize `resizing`, each
// `unmounted` after `statusDelayMs`. Errors are JSON lists; the 1.0 fields map as StubDrive says:
// `meta` = the `user:KEY` fields, `tags` = the space-separated `tags` field, `media` = `media`.
// Paths it does not own (`initupload/`, `action/?do=upload_chunk`, upload, download) return
// undefined so the next handler answers them.
import { ftruncateSync, writeSync } from "node:fs";
import { isAllZero } from "../lib/bytes.ts";
import { dataMapOf } from "../lib/chunks/holes.ts";
import { isUuid } from "../lib/uuid.ts";
import { driveView, type Json, prefixMeta, statusOf } from "./drive-view.ts";
import { api2Error } from "./errors.ts";
import type { DriveStub, StubDrive } from "./server.ts";

const DEFAULT_LIMIT = 20;
/** Statuses during which a drive refuses changes (409), as a real server does. */
const BUSY = new Set(["creating", "cloning", "resizing", "uploading"]);
const META_KEY = /^[A-Za-z0-9_.:-]{1,64}$/;
const COPY_STEP = 4 * 1024 * 1024;

export interface Api2DrivesOptions {
  /** Milliseconds a drive stays `creating`, `cloning` (after its copy) or `resizing` (default 0: the next tick). */
  statusDelayMs?: number;
  /** `capabilities/`: the smallest and largest drive sizes accepted (default 1 MiB and 1 TiB). */
  minSize?: number;
  maxSize?: number;
}

const answer = (body: unknown, status = 200) => Response.json(body, { status });
const missing = (uuid: string) => api2Error(404, "notexist", `Object with uuid ${uuid} does not exist`);
const invalid = (message: string, point?: string) => api2Error(400, "validation", message, {}, point ?? null);

export class Api2Drives {
  statusDelayMs: number;
  readonly minSize: number;
  readonly maxSize: number;
  private readonly timers = new Set<ReturnType<typeof setTimeout>>();

  constructor(
    readonly stub: DriveStub,
    options: Api2DrivesOptions = {},
  ) {
    this.statusDelayMs = options.statusDelayMs ?? 0;
    this.minSize = options.minSize ?? 1024 * 1024;
    this.maxSize = options.maxSize ?? 2 ** 40;
  }

  stop(): void {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
  }

  /** Answer a path under /api/2.0/ (without the prefix), or undefined when it is not a drive call. */
  async route(request: Request, path: string): Promise<Response | undefined> {
    const url = new URL(request.url);
    const method = request.method;
    const parts = path.split("/");
    // every API 2.0 path ends with "/": ["drives", ""], ["drives", UUID, ""], ["drives", UUID, "action", ""]
    if (parts.at(-1) !== "") return undefined;
    parts.pop();
    const allow = (wanted: string[]) =>
      wanted.includes(method)
        ? undefined
        : api2Error(405, "method", `${method} is not allowed here; use ${wanted.join(" or ")}`);
    if (parts.length === 1 && parts[0] === "capabilities") {
      return allow(["GET"]) ?? answer({ drives: { dssd: { max_size: this.maxSize, min_size: this.minSize } } });
    }
    if (parts[0] !== "drives") return undefined;
    if (parts.length === 1) {
      if (method === "POST") return this.create(request, url);
      return allow(["GET", "POST"]) ?? this.list(url, false);
    }
    if (parts.length === 2 && parts[1] === "detail") return allow(["GET"]) ?? this.list(url, true);
    const id = parts[1] as string;
    if (!isUuid(id)) return undefined;
    const drive = this.stub.drives.get(id);
    if (parts.length === 2) {
      const wrong = allow(["GET", "PUT", "DELETE"]);
      if (wrong) return wrong;
      if (!drive) return missing(id);
      if (method === "GET") return answer(this.view(drive));
      if (method === "PUT") return this.update(request, drive);
      return this.remove(drive);
    }
    if (parts.length === 3 && parts[2] === "action") {
      const action = url.searchParams.get("do");
      // upload_chunk and anything else belong to other handlers (or the 418 at the end)
      if (action !== "clone" && action !== "resize") return undefined;
      const wrong = allow(["POST"]);
      if (wrong) return wrong;
      if (!drive) return missing(id);
      return action === "clone" ? this.clone(request, url, drive) : this.resize(request, drive);
    }
    return undefined;
  }

  /** The 2.0 view of a drive (the full object `drives/UUID/` and `drives/detail/` answer). */
  view(drive: StubDrive): Json {
    return driveView(this.stub, drive);
  }

  private list(url: URL, detail: boolean): Response {
    const limitText = url.searchParams.get("limit") ?? String(DEFAULT_LIMIT);
    const offsetText = url.searchParams.get("offset") ?? "0";
    if (!/^\d+$/.test(limitText)) return invalid(`Invalid limit '${limitText}'`, "limit");
    if (!/^\d+$/.test(offsetText)) return invalid(`Invalid offset '${offsetText}'`, "offset");
    const limit = Number(limitText);
    const offset = Number(offsetText);
    const drives = [...this.stub.drives.values()];
    const page = drives.slice(offset, limit === 0 ? undefined : offset + limit);
    const fields = url.searchParams.get("fields")?.split(",").filter(Boolean);
    const objects = page.map((drive) => {
      const full = this.view(drive);
      const shown = detail
        ? full
        : { name: full.name, owner: full.owner, resource_uri: full.resource_uri, status: full.status, uuid: full.uuid };
      return fields ? Object.fromEntries(Object.entries(full).filter(([key]) => fields.includes(key))) : shown;
    });
    return answer({ meta: { limit, offset, total_count: drives.length }, objects });
  }

  private async body(request: Request): Promise<{ value?: unknown; error?: Response }> {
    const text = await request.text();
    if (text.trim() === "") return { value: {} };
    try {
      return { value: JSON.parse(text) };
    } catch {
      return { error: invalid("The request body is not valid JSON") };
    }
  }

  /** Check the definition fields a create, update or resize carries; the 1.0 fields they map to. */
  private definition(
    input: Json,
    needed: boolean,
  ): { fields?: Record<string, string>; size?: number; meta?: Record<string, string>; error?: Response } {
    const fields: Record<string, string> = {};
    if (needed) {
      for (const key of ["name", "size", "media"])
        if (input[key] === undefined) return { error: invalid(`${key} is required`, key) };
    }
    if (input.name !== undefined) {
      if (typeof input.name !== "string" || input.name.trim() === "" || /[\r\n]/.test(input.name))
        return { error: invalid("Invalid name", "name") };
      fields.name = input.name;
    }
    let size: number | undefined;
    if (input.size !== undefined) {
      if (
        typeof input.size !== "number" ||
        !Number.isSafeInteger(input.size) ||
        input.size < this.minSize ||
        input.size > this.maxSize
      ) {
        return { error: invalid(`Invalid size: expected ${this.minSize} to ${this.maxSize} bytes`, "size") };
      }
      size = input.size;
    }
    if (input.media !== undefined) {
      if (input.media !== "disk" && input.media !== "cdrom")
        return { error: invalid("media must be disk or cdrom", "media") };
      fields.media = input.media;
    }
    if (input.tags !== undefined) {
      const tags = input.tags;
      if (
        !Array.isArray(tags) ||
        tags.some((tag) => typeof tag !== "string" || !/^[\x21-\x7e\u00a0-\uffff]+$/.test(tag))
      ) {
        return { error: invalid("tags must be a list of names without spaces", "tags") };
      }
      fields.tags = tags.join(" ");
    }
    if (input.allow_multimount !== undefined) {
      if (typeof input.allow_multimount !== "boolean")
        return { error: invalid("allow_multimount must be true or false", "allow_multimount") };
      fields.allow_multimount = String(input.allow_multimount);
    }
    if (input.affinities !== undefined) {
      if (
        !Array.isArray(input.affinities) ||
        input.affinities.some((item) => typeof item !== "string" || /\s/.test(item))
      ) {
        return { error: invalid("affinities must be a list of names", "affinities") };
      }
      fields.affinities = input.affinities.join(" ");
    }
    let meta: Record<string, string> | undefined;
    if (input.meta !== undefined) {
      if (typeof input.meta !== "object" || input.meta === null || Array.isArray(input.meta))
        return { error: invalid("meta must be an object", "meta") };
      meta = {};
      for (const [key, value] of Object.entries(input.meta)) {
        if (!META_KEY.test(key) || typeof value !== "string")
          return { error: invalid(`Invalid meta field '${key.slice(0, 40)}'`, "meta") };
        meta[key] = value;
      }
    }
    return { fields, size, meta };
  }

  private avoidError(url: URL): Response | undefined {
    const avoid = url.searchParams.get("avoid");
    if (avoid === null) return undefined;
    return avoid.split(",").every((item) => isUuid(item))
      ? undefined
      : invalid(`Invalid avoid '${avoid.slice(0, 80)}'`, "avoid");
  }

  private async create(request: Request, url: URL): Promise<Response> {
    const { value, error } = await this.body(request);
    if (error) return error;
    const bad = this.avoidError(url);
    if (bad) return bad;
    const objects = (value as Json).objects;
    if (
      !Array.isArray(objects) ||
      objects.length === 0 ||
      objects.some((item) => typeof item !== "object" || item === null)
    ) {
      return invalid('Expected {"objects": [drive definitions]}', "objects");
    }
    const checked = [];
    for (const item of objects as Json[]) {
      const definition = this.definition(item, true);
      if (definition.error) return definition.error;
      checked.push(definition);
    }
    const created = checked.map(({ fields, size, meta }) => {
      const drive = this.stub.addDrive(size as number, { ...fields, ...prefixMeta(meta ?? {}) });
      this.transition(drive, "creating");
      return this.view(drive);
    });
    return answer({ objects: created }, 201);
  }

  private async update(request: Request, drive: StubDrive): Promise<Response> {
    const { value, error } = await this.body(request);
    if (error) return error;
    if (typeof value !== "object" || value === null || Array.isArray(value))
      return invalid("Expected a drive definition");
    const definition = this.definition(value as Json, true);
    if (definition.error) return definition.error;
    const busy = this.busy(drive);
    if (busy) return busy;
    const resizing = definition.size !== undefined && definition.size !== drive.size;
    if (resizing && statusOf(drive) === "mounted")
      return api2Error(409, "permission", `Cannot change the size of drive ${drive.uuid} while it is mounted`);
    Object.assign(drive.fields, definition.fields);
    if (definition.meta) {
      for (const key of Object.keys(drive.fields)) if (key.startsWith("user:")) delete drive.fields[key];
      Object.assign(drive.fields, prefixMeta(definition.meta));
    }
    if (resizing) this.setSize(drive, definition.size as number);
    return answer(this.view(drive));
  }

  private remove(drive: StubDrive): Response {
    if (statusOf(drive) === "mounted")
      return api2Error(409, "permission", `Drive ${drive.uuid} is mounted on a server; detach it first`);
    const busy = this.busy(drive);
    if (busy) return busy;
    this.stub.removeDrive(drive);
    return new Response(null, { status: 204 });
  }

  private async clone(request: Request, url: URL, source: StubDrive): Promise<Response> {
    const { value, error } = await this.body(request);
    if (error) return error;
    const bad = this.avoidError(url);
    if (bad) return bad;
    const input = (typeof value === "object" && value !== null ? value : {}) as Json;
    const definition = this.definition({ name: input.name, media: input.media, affinities: input.affinities }, false);
    if (definition.error) return definition.error;
    const busy = this.busy(source);
    if (busy) return busy;
    const inherited: Record<string, string> = {};
    for (const [key, field] of Object.entries(source.fields))
      if (key.startsWith("user:") || key === "tags" || key === "media") inherited[key] = field;
    const copy = this.stub.addDrive(source.size, {
      ...inherited,
      name: source.fields.name ?? source.uuid,
      ...definition.fields,
    });
    copy.status = "cloning";
    void this.copyBytes(source, copy).then(
      () => this.transition(copy, "cloning"),
      () => undefined,
    );
    return answer({ objects: [this.view(copy)] }, 202);
  }

  private async resize(request: Request, drive: StubDrive): Promise<Response> {
    const { value, error } = await this.body(request);
    if (error) return error;
    const definition = this.definition((typeof value === "object" && value !== null ? value : {}) as Json, false);
    if (definition.error) return definition.error;
    if (definition.size === undefined) return invalid("size is required", "size");
    const busy = this.busy(drive);
    if (busy) return busy;
    if (statusOf(drive) === "mounted")
      return api2Error(409, "permission", `Cannot resize drive ${drive.uuid} while it is mounted`);
    this.setSize(drive, definition.size);
    return answer({ objects: [this.view(drive)] }, 202);
  }

  private busy(drive: StubDrive): Response | undefined {
    const status = statusOf(drive);
    if (BUSY.has(status) || drive.imaging)
      return api2Error(409, "permission", `Drive ${drive.uuid} is busy (${drive.imaging ? "imaging" : status})`);
    return undefined;
  }

  private setSize(drive: StubDrive, size: number): void {
    drive.size = size;
    ftruncateSync(drive.fd, size);
    this.transition(drive, "resizing");
  }

  /** Put the drive in `status`, then `unmounted` after the delay (if nothing else changed it meanwhile). */
  private transition(drive: StubDrive, status: string): void {
    drive.status = status;
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (drive.status === status && this.stub.drives.get(drive.uuid) === drive) drive.status = "unmounted";
    }, this.statusDelayMs);
    (timer as { unref?: () => void }).unref?.();
    this.timers.add(timer);
  }

  /** Copy a drive's bytes into a new one, skipping holes and zeros (the new drive is all zeros already). */
  private async copyBytes(source: StubDrive, target: StubDrive): Promise<void> {
    const map = await dataMapOf(source.fd, source.size);
    let at = 0;
    // bounded: `at` only grows, by at least one byte a step
    while (at < source.size) {
      const next = map ? map.nextData(at) : at;
      if (next >= source.size) break;
      if (!this.stub.drives.has(source.uuid) || !this.stub.drives.has(target.uuid)) return;
      const bytes = this.stub.readDrive(source.uuid, next, COPY_STEP);
      if (bytes.length === 0) break;
      if (!isAllZero(bytes)) writeSync(target.fd, bytes, 0, bytes.length, next);
      at = next + bytes.length;
      await Bun.sleep(0);
    }
  }
}
