// The API 2.0 drive calls of the emulator, on the same drive map as the 1.0 side (DriveStub.drives),
// in the forms the real API takes:
// - `drives/` (pages of 20, `limit=0` for all, `offset`, `fields=`, filters name, name__contains,
//   tag, uuid), `drives/detail/`, `drives/schema/`, `drives/availability_groups/[UUID/]`,
//   `capabilities/`;
// - create: one bare definition, a list, or `{"objects": [...]}` (bulk), sizes as numbers or
//   strings, `?avoid=` (best effort: another storage host); always 201 `{"objects": [...]}`, each
//   `creating`;
// - get (a library drive's too, without owner), PUT (name, media, meta, tags, allow_multimount,
//   affinities; a size change answers `resizing`; on a drive mounted on a running server only
//   name, meta, tags, allow_multimount change, the rest is ignored), DELETE (one, or bulk on
//   `drives/`);
// - `action/?do=clone` (a library drive too; `cloning_dst`, the source `cloning_src` while its
//   bytes are copied, holes skipped) and `action/?do=resize` (refused on a running server's drive).
// Each transient status lasts `statusDelayMs`. Paths it does not own (initupload/, upload_chunk,
// upload, download) return undefined so the next handler answers them.
import { ftruncateSync } from "node:fs";
import { dataMapOf } from "../lib/chunks/holes.ts";
import { isUuid } from "../lib/uuid.ts";
import {
  allow,
  avoidOf,
  COMMON_FILTERS,
  invalid,
  missing,
  objectOf,
  page,
  partsOf,
  readJson,
  refused,
  sizeOf,
  uuidOf,
  readDefinitions,
  readTargets,
} from "./api2-common.ts";
import { DRIVE_SCHEMA } from "./api2-schemas.ts";
import { BUSY, driveView, inUse, type Json, prefixMeta, statusOf } from "./drive-view.ts";
import type { DriveStub, StubDrive } from "./server.ts";
import { copyData } from "./sparse-copy.ts";

const META_KEY = /^[A-Za-z0-9_.:-]{1,64}$/;
const STORAGE_TYPES = new Set(["magnetic", "ssd", "dssd", "zadara", "nvme", "local_nvme"]);
/** Storage hosts drives are spread over (what `avoid` and `availability_groups/` are about). */
const STORAGE_HOSTS = 3;
/** A clone's size, when given, is rounded up to this (CloudSigma's answers show 16 KiB multiples). */
const CLONE_GRANULE = 16 * 1024;

export interface Api2DrivesOptions {
  /** Milliseconds a drive stays `creating`, `cloning_dst` (after its copy) or `resizing` (default 0: the next tick). */
  statusDelayMs?: number;
  /** `capabilities/`: the smallest and largest drive sizes accepted (default 1 MiB and 1 TiB). */
  minSize?: number;
  maxSize?: number;
}

/** A drive definition, checked: the 1.0 fields it maps to, its size, meta and storage type. */
export interface Definition {
  fields: Record<string, string>;
  size?: number;
  meta?: Record<string, string>;
}

/** What a clone copies: an open file of `size` bytes, readable while `alive()`. */
export interface CopySource {
  fd: number;
  size: number;
  alive: () => boolean;
}

/** The fields a PUT may change on a drive a running server uses; the rest is ignored. */
const LIVE_FIELDS = new Set(["name", "tags", "allow_multimount"]);

export class Api2Drives {
  statusDelayMs: number;
  readonly minSize: number;
  readonly maxSize: number;
  /** Library drives by UUID (emulator/api2-libdrives.ts): `drives/{uuid}/` shows them and clones them. */
  library: (uuid: string) => StubDrive | undefined = () => undefined;
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
    const parts = partsOf(path);
    if (!parts) return undefined;
    if (parts.length === 1 && parts[0] === "capabilities") {
      return (
        allow(method, ["GET"]) ??
        Response.json({ drives: { dssd: { max_size: this.maxSize, min_size: this.minSize } } })
      );
    }
    if (parts[0] !== "drives") return undefined;
    const [, id, action] = parts;
    if (parts.length === 1) {
      if (method === "POST") return this.create(request, url);
      if (method === "DELETE") return this.removeMany(request);
      return allow(method, ["GET", "POST", "DELETE"]) ?? this.list(url, false);
    }
    if (parts.length === 2 && id === "detail") return allow(method, ["GET"]) ?? this.list(url, true);
    if (parts.length === 2 && id === "schema") return allow(method, ["GET"]) ?? Response.json(DRIVE_SCHEMA);
    if (id === "availability_groups" && parts.length <= 3) return allow(method, ["GET"]) ?? this.groups(parts[2]);
    if (!id || !isUuid(id)) return undefined;
    const drive = this.stub.drives.get(id.toLowerCase());
    const library = drive ? undefined : this.library(id.toLowerCase());
    if (parts.length === 2) {
      const wrong = allow(method, ["GET", "PUT", "DELETE"]);
      if (wrong) return wrong;
      if (library && method === "GET") return Response.json(driveView(this.stub, library));
      if (library) return refused(`Drive ${id} belongs to the drives library: clone it to change it`);
      if (!drive) return missing(id);
      if (method === "GET") return Response.json(this.view(drive));
      if (method === "PUT") return this.update(request, drive);
      return this.remove(drive);
    }
    if (parts.length === 3 && action === "action") {
      const todo = url.searchParams.get("do");
      // upload_chunk and anything else belong to other handlers (or the 418 at the end)
      if (todo !== "clone" && todo !== "resize") return undefined;
      const wrong = allow(method, ["POST"]);
      if (wrong) return wrong;
      if (todo === "clone" && (drive ?? library)) return this.clone(request, url, (drive ?? library) as StubDrive);
      if (library) return refused(`Drive ${id} belongs to the drives library: clone it to resize it`);
      if (!drive) return missing(id);
      return this.resize(request, drive);
    }
    return undefined;
  }

  /** The 2.0 view of a drive (the full object `drives/UUID/` and `drives/detail/` answer). */
  view(drive: StubDrive): Json {
    return driveView(this.stub, drive);
  }

  private list(url: URL, detail: boolean): Response {
    const objects = [...this.stub.drives.values()].map((drive) => this.view(drive));
    return page(
      url,
      objects,
      COMMON_FILTERS,
      detail
        ? undefined
        : (full) => ({
            name: full.name,
            owner: full.owner,
            resource_uri: full.resource_uri,
            status: full.status,
            uuid: full.uuid,
          }),
    );
  }

  /**
   * Check a drive definition (create, PUT, resize, clone, initupload): `needed` lists the fields
   * it must carry; read-only and unknown fields are ignored, as the real API ignores them (clients
   * PUT back the whole object they got).
   */
  definition(
    input: Json,
    needed: string[],
    sizeLimits = { min: this.minSize, max: this.maxSize },
  ): Definition | Response {
    for (const key of needed)
      if (input[key] === undefined || input[key] === null) return invalid(`${key}: this field is required`, key);
    const fields: Record<string, string> = {};
    if (input.name !== undefined) {
      if (typeof input.name !== "string" || input.name.trim() === "" || /[\r\n]/.test(input.name))
        return invalid("name: a non-empty string on one line is required", "name");
      fields.name = input.name;
    }
    let size: number | undefined;
    if (input.size !== undefined) {
      size = sizeOf(input.size);
      if (size === undefined || size < sizeLimits.min || size > sizeLimits.max)
        return invalid(`size: expected ${sizeLimits.min} to ${sizeLimits.max} bytes`, "size");
    }
    if (input.media !== undefined) {
      if (input.media !== "disk" && input.media !== "cdrom") return invalid("media: expected disk or cdrom", "media");
      fields.media = input.media;
    }
    if (input.storage_type !== undefined && input.storage_type !== null) {
      if (typeof input.storage_type !== "string" || !STORAGE_TYPES.has(input.storage_type))
        return invalid(`storage_type: expected one of ${[...STORAGE_TYPES].join(", ")}`, "storage_type");
      fields.storage_type = input.storage_type;
    }
    if (input.tags !== undefined) {
      // tags come as names or as references to tag objects
      const tags = Array.isArray(input.tags) ? input.tags.map((tag) => uuidOf(tag) ?? tag) : undefined;
      if (!tags || tags.some((tag) => typeof tag !== "string" || !/^[\x21-\x7e\u00a0-\uffff]+$/.test(tag)))
        return invalid("tags: a list of names without spaces is required", "tags");
      fields.tags = tags.join(" ");
    }
    if (input.allow_multimount !== undefined) {
      if (typeof input.allow_multimount !== "boolean")
        return invalid("allow_multimount: true or false", "allow_multimount");
      fields.allow_multimount = String(input.allow_multimount);
    }
    if (input.affinities !== undefined) {
      const list = input.affinities;
      if (!Array.isArray(list) || list.some((item) => typeof item !== "string" || /\s/.test(item)))
        return invalid("affinities: a list of names is required", "affinities");
      fields.affinities = list.join(" ");
    }
    let meta: Record<string, string> | undefined;
    if (input.meta !== undefined) {
      const given = objectOf(input.meta);
      if (!given) return invalid("meta: an object is required", "meta");
      meta = {};
      for (const [key, value] of Object.entries(given)) {
        if (!META_KEY.test(key) || typeof value !== "string")
          return invalid(`meta: invalid field '${key.slice(0, 40)}' (string values only)`, "meta");
        meta[key] = value;
      }
    }
    return { fields, size, meta };
  }

  /** A new drive on the storage host `avoid` leaves (best effort, left to right), status `status`. */
  place(size: number, fields: Record<string, string>, avoid: string[], status: string): StubDrive {
    const drive = this.stub.addDrive(size, fields);
    drive.host = this.storageHost(avoid);
    this.transition(drive, status);
    return drive;
  }

  private async create(request: Request, url: URL): Promise<Response> {
    const avoid = avoidOf(url);
    if (avoid instanceof Response) return avoid;
    const definitions = await readDefinitions(request, "drive");
    if (definitions instanceof Response) return definitions;
    const checked: Definition[] = [];
    for (const item of definitions) {
      const definition = this.definition(item, ["name", "size", "media"]);
      if (definition instanceof Response) return definition;
      checked.push(definition);
    }
    const created = checked.map(({ fields, size, meta }) =>
      this.view(this.place(size as number, { ...fields, ...prefixMeta(meta ?? {}) }, avoid, "creating")),
    );
    return Response.json({ objects: created }, { status: 201 });
  }

  private async update(request: Request, drive: StubDrive): Promise<Response> {
    const { value, error } = await readJson(request);
    if (error) return error;
    const input = objectOf(value);
    if (!input) return invalid("Expected a drive definition (an object)");
    const definition = this.definition(input, ["name", "size", "media"]);
    if (definition instanceof Response) return definition;
    const busy = this.busy(drive, "change");
    if (busy) return busy;
    const live = inUse(this.stub, drive);
    // a running server's drive keeps its size, media and affinities: those changes are ignored
    const fields = live
      ? Object.fromEntries(Object.entries(definition.fields).filter(([key]) => LIVE_FIELDS.has(key)))
      : definition.fields;
    const { storage_type: _fixed, ...changes } = fields;
    this.apply(drive, changes, definition.meta);
    if (!live && definition.size !== undefined && definition.size !== drive.size) this.setSize(drive, definition.size);
    return Response.json(this.view(drive));
  }

  private apply(drive: StubDrive, fields: Record<string, string>, meta: Record<string, string> | undefined): void {
    Object.assign(drive.fields, fields);
    if (!meta) return;
    for (const key of Object.keys(drive.fields)) if (key.startsWith("user:")) delete drive.fields[key];
    Object.assign(drive.fields, prefixMeta(meta));
  }

  private remove(drive: StubDrive): Response {
    const wrong = this.removable(drive);
    if (wrong) return wrong;
    this.stub.removeDrive(drive);
    return new Response(null, { status: 204 });
  }

  private removable(drive: StubDrive): Response | undefined {
    if (inUse(this.stub, drive))
      return refused(`Drive ${drive.uuid} is mounted on a running server: stop the server or detach the drive first`);
    return this.busy(drive, "delete");
  }

  /** `DELETE drives/` with `{"objects": [{"uuid": ...}, ...]}`: all of them, or none when one cannot go. */
  private async removeMany(request: Request): Promise<Response> {
    const drives = await readTargets(request, "drive", (uuid) => this.stub.drives.get(uuid));
    if (drives instanceof Response) return drives;
    for (const drive of drives) {
      const wrong = this.removable(drive);
      if (wrong) return wrong;
    }
    for (const drive of drives) this.stub.removeDrive(drive);
    return new Response(null, { status: 204 });
  }

  /** `action/?do=clone` of a drive or a library drive: 202 `{"objects": [the new drive]}`. */
  async clone(request: Request, url: URL, source: StubDrive): Promise<Response> {
    const { value, error } = await readJson(request);
    if (error) return error;
    const avoid = avoidOf(url);
    if (avoid instanceof Response) return avoid;
    const input = objectOf(value) ?? {};
    const definition = this.definition(
      {
        name: input.name,
        media: input.media,
        affinities: input.affinities,
        size: input.size,
        storage_type: input.storage_type,
      },
      [],
    );
    if (definition instanceof Response) return definition;
    if (definition.size !== undefined && definition.size < source.size)
      return invalid(`size: a clone is as large as its source (${source.size} bytes) or larger`, "size");
    const busy = this.busy(source, "clone");
    if (busy) return busy;
    const size =
      definition.size === undefined ? source.size : Math.ceil(definition.size / CLONE_GRANULE) * CLONE_GRANULE;
    const alive = () => this.stub.drives.get(source.uuid) === source || this.library(source.uuid) === source;
    const copy = this.cloneOf(source, { fd: source.fd, size: source.size, alive }, size, definition.fields, avoid);
    return Response.json({ objects: [this.view(copy)] }, { status: 202 });
  }

  /**
   * A new drive `cloning_dst` holding the bytes of `from` (a drive's file or a snapshot's), copied
   * in the background while `from.alive()`; it settles `statusDelayMs` after the copy. A drive
   * source that is not in use shows `cloning_src` while its bytes are read.
   */
  cloneOf(
    source: StubDrive | undefined,
    from: CopySource,
    size: number,
    fields: Record<string, string>,
    avoid: string[],
  ): StubDrive {
    const inherited: Record<string, string> = {};
    for (const [key, field] of Object.entries(source?.fields ?? {}))
      if (key.startsWith("user:") || key === "tags" || key === "media" || key === "storage_type")
        inherited[key] = field;
    const copy = this.stub.addDrive(size, { ...inherited, name: source?.fields.name ?? "clone", ...fields });
    copy.host = this.storageHost(avoid);
    copy.status = "cloning_dst";
    const marked =
      source && this.stub.drives.get(source.uuid) === source && statusOf(this.stub, source) === "unmounted";
    if (marked) source.status = "cloning_src";
    this.stub.track(
      this.copyInto(from, copy).finally(() => {
        if (marked && source.status === "cloning_src") source.status = "unmounted";
        if (this.stub.drives.get(copy.uuid) === copy) this.transition(copy, "cloning_dst");
      }),
    );
    return copy;
  }

  private async resize(request: Request, drive: StubDrive): Promise<Response> {
    const { value, error } = await readJson(request);
    if (error) return error;
    const definition = this.definition(objectOf(value) ?? {}, ["size"]);
    if (definition instanceof Response) return definition;
    const busy = this.busy(drive, "resize");
    if (busy) return busy;
    if (inUse(this.stub, drive))
      return refused(`Cannot resize drive ${drive.uuid}: it is mounted on a running server (stop the server first)`);
    const { storage_type: _fixed, ...changes } = definition.fields;
    this.apply(drive, changes, definition.meta);
    this.setSize(drive, definition.size as number);
    return Response.json({ objects: [this.view(drive)] }, { status: 202 });
  }

  /** The 403 for a drive an operation holds, naming it. */
  busy(drive: StubDrive, what: string): Response | undefined {
    const status = statusOf(this.stub, drive);
    if (drive.imaging) return refused(`Cannot ${what} drive ${drive.uuid} while it is imaging`);
    // a drive being cloned may be cloned again (CloudSigma's own stress test clones one source 20 times at once)
    if (status === "cloning_src" && what === "clone") return undefined;
    if (BUSY.has(status) || (status === "uploading" && what !== "delete"))
      return refused(`Cannot ${what} drive ${drive.uuid} in status ${status}; wait until it is unmounted`);
    return undefined;
  }

  private setSize(drive: StubDrive, size: number): void {
    drive.size = size;
    ftruncateSync(drive.fd, size);
    this.transition(drive, "resizing");
  }

  /** Put the drive in `status`, then settled after the delay (if nothing else changed it meanwhile). */
  transition(drive: StubDrive, status: string): void {
    drive.status = status;
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (drive.status === status && this.stub.drives.get(drive.uuid) === drive) drive.status = "unmounted";
    }, this.statusDelayMs);
    (timer as { unref?: () => void }).unref?.();
    this.timers.add(timer);
  }

  /** Copy a file's data into a new drive, a piece at a time, holes and zeros skipped, while both exist. */
  private async copyInto(from: CopySource, target: StubDrive): Promise<void> {
    const map = await dataMapOf(from.fd, from.size);
    // checked before each piece: a descriptor closed with its drive may be reused by another file
    const live = () => !this.stub.stopped && from.alive() && this.stub.drives.get(target.uuid) === target;
    if (!live()) return;
    for (const _ of copyData(from.fd, target.fd, Math.min(from.size, target.size), map)) {
      await Bun.sleep(0);
      if (!live()) return;
    }
  }

  /** The storage host for a new drive: the least used of those `avoid` leaves free (best effort, left to right). */
  storageHost(avoid: string[]): number {
    let candidates = Array.from({ length: STORAGE_HOSTS }, (_, index) => index);
    const avoided = avoid.flatMap((uuid) => {
      const server = this.stub.servers.get(uuid);
      return server ? server.drives.map((d) => d.drive) : [uuid];
    });
    for (const uuid of avoided) {
      const host = this.stub.drives.get(uuid)?.host;
      const rest = candidates.filter((candidate) => candidate !== host);
      if (rest.length > 0) candidates = rest;
    }
    const load = (host: number) => [...this.stub.drives.values()].filter((drive) => drive.host === host).length;
    return candidates.reduce((best, host) => (load(host) < load(best) ? host : best));
  }

  /** `drives/availability_groups/`: the drives sharing a storage host; with a UUID, that drive's group. */
  private groups(uuid: string | undefined): Response {
    const hostOf = (drive: StubDrive) => drive.host ?? 0;
    const drives = [...this.stub.drives.values()];
    if (uuid !== undefined) {
      const drive = isUuid(uuid) ? this.stub.drives.get(uuid.toLowerCase()) : undefined;
      if (!drive) return missing(uuid.slice(0, 60));
      return Response.json(drives.filter((other) => hostOf(other) === hostOf(drive)).map((other) => other.uuid));
    }
    const byHost = Map.groupBy(drives, hostOf);
    return Response.json(
      [...byHost.values()].filter((group) => group.length > 1).map((group) => group.map((d) => d.uuid)),
    );
  }
}
