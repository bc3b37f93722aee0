// The emulator's API 2.0 snapshots. A snapshot holds its drive's bytes as of the instant it was
// made: they are copied then, sparse (only the drive's data ranges, all in one synchronous run, so
// no write lands half way), and later writes to the drive never reach it. A mounted drive (a
// running server's) can be snapshotted.
// - `POST snapshots/` `{drive, name?, meta?, tags?}` bare, listed or in `{"objects": [...]}`:
//   201 `{"objects": [...]}`, status `creating` (`allocated_size` null), `available` after
//   `creatingMs` (Infinity: never); the name defaults to `DRIVE__YYYY-MM-DD__HH_MM_SS` (UTC).
// - `snapshots/`, `snapshots/detail/` (full objects; filters drive, name, name__contains, tag, uuid),
//   `snapshots/schema/`, GET/PUT (name, meta, tags)/DELETE `snapshots/{uuid}/`, DELETE
//   `snapshots/` with a list.
// - `snapshots/{uuid}/action/?do=clone` `{name?, media?, affinities?}` (`&avoid=`): 202 with the
//   bare new drive, `cloning_dst` (the size of the drive when the snapshot was taken), then settled.
// Deleting a drive deletes its snapshots (DriveStub.removeDrive). Allocated sizes are not modelled:
// 0 once available.
import { type DataMap, dataMapOf } from "../lib/chunks/holes.ts";
import { isUuid } from "../lib/uuid.ts";
import type { Api2Drives } from "./api2-drives.ts";
import {
  allow,
  avoidOf,
  COMMON_FILTERS,
  type Filters,
  invalid,
  missing,
  objectOf,
  page,
  partsUnder,
  readJson,
  refused,
  uuidOf,
  readDefinitions,
  readTargets,
} from "./api2-common.ts";
import { SNAPSHOT_SCHEMA } from "./api2-schemas.ts";
import { type Json, reference, statusOf } from "./drive-view.ts";
import type { DriveStub, StubSnapshot } from "./server.ts";
import { copyData } from "./sparse-copy.ts";

const META_KEY = /^[A-Za-z0-9_.:-]{1,64}$/;
/** Drive statuses a snapshot can be taken in. */
const SNAPSHOTABLE = new Set(["unmounted", "mounted"]);

export interface Api2SnapshotsOptions {
  /** Milliseconds a new snapshot stays `creating` (default 0: the next tick; Infinity: it never becomes available). */
  creatingMs?: number;
}

const SNAPSHOT_FILTERS: Filters = {
  ...COMMON_FILTERS,
  drive: (item, value) => (item.drive as Json).uuid === value.toLowerCase(),
};

/** `2014-06-05 09:52:53.896622+00:00` and `2014-06-05__09_52_53`, from one instant. */
function stamps(now: Date): { timestamp: string; suffix: string } {
  const iso = now.toISOString(); // 2014-06-05T09:52:53.896Z
  const [date, time] = iso.slice(0, 19).split("T") as [string, string];
  return {
    timestamp: `${date} ${time}.${iso.slice(20, 23)}000+00:00`,
    suffix: `${date}__${time.replaceAll(":", "_")}`,
  };
}

interface SnapshotDefinition {
  drive: string;
  name?: string;
  meta?: Record<string, string>;
  tags?: string[];
}

export class Api2Snapshots {
  creatingMs: number;
  private readonly timers = new Map<string, ReturnType<typeof setTimeout>>();

  constructor(
    readonly stub: DriveStub,
    readonly driveCalls: Api2Drives,
    options: Api2SnapshotsOptions = {},
  ) {
    this.creatingMs = options.creatingMs ?? 0;
  }

  stop(): void {
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
  }

  view(snapshot: StubSnapshot): Json {
    return {
      allocated_size: snapshot.status === "creating" ? null : 0,
      drive: reference("drives", snapshot.drive),
      grantees: [],
      meta: snapshot.meta,
      name: snapshot.name,
      owner: reference("user", this.stub.user),
      permissions: [],
      resource_uri: `/api/2.0/snapshots/${snapshot.uuid}/`,
      status: snapshot.status,
      tags: snapshot.tags,
      timestamp: snapshot.timestamp,
      uuid: snapshot.uuid,
    };
  }

  /**
   * Take a snapshot of a drive now (what `POST snapshots/` does for each definition): its bytes are
   * copied before this returns. The drive must exist.
   */
  async take(
    drive: string,
    name?: string,
    meta: Record<string, string> = {},
    tags: string[] = [],
  ): Promise<StubSnapshot> {
    const source = this.stub.drives.get(drive);
    if (!source) throw new Error(`no drive ${drive}`);
    const map = await dataMapOf(source.fd, source.size);
    return this.copyNow({ drive, name, meta, tags }, map);
  }

  /** Make a `creating` snapshot available now (tests: the end of its creation, without waiting). */
  finish(uuid: string): void {
    const snapshot = this.stub.snapshots.get(uuid);
    if (!snapshot) throw new Error(`no snapshot ${uuid}`);
    clearTimeout(this.timers.get(uuid));
    this.timers.delete(uuid);
    snapshot.status = "available";
  }

  async route(request: Request, path: string): Promise<Response | undefined> {
    const parts = partsUnder(path, "snapshots", 3);
    if (!parts) return undefined;
    const method = request.method;
    const url = new URL(request.url);
    const [, id, action] = parts;
    if (parts.length === 1) {
      if (method === "POST") return this.create(request);
      if (method === "DELETE") return this.removeMany(request);
      return allow(method, ["GET", "POST", "DELETE"]) ?? this.list(url);
    }
    if (parts.length === 2 && id === "detail") return allow(method, ["GET"]) ?? this.list(url);
    if (parts.length === 2 && id === "schema") return allow(method, ["GET"]) ?? Response.json(SNAPSHOT_SCHEMA);
    if (!id || !isUuid(id)) return undefined;
    const snapshot = this.stub.snapshots.get(id.toLowerCase());
    if (parts.length === 2) {
      const wrong = allow(method, ["GET", "PUT", "DELETE"]);
      if (wrong) return wrong;
      if (!snapshot) return missing(id);
      if (method === "GET") return Response.json(this.view(snapshot));
      if (method === "PUT") return this.update(request, snapshot);
      this.stub.removeSnapshot(snapshot);
      return new Response(null, { status: 204 });
    }
    if (action !== "action" || url.searchParams.get("do") !== "clone") return undefined;
    return allow(method, ["POST"]) ?? (snapshot ? this.clone(request, url, snapshot) : missing(id));
  }

  private list(url: URL): Response {
    return page(
      url,
      [...this.stub.snapshots.values()].map((snapshot) => this.view(snapshot)),
      SNAPSHOT_FILTERS,
    );
  }

  /** Name, meta and tags as given (each optional), or the 400. */
  private fields(input: Json): Omit<SnapshotDefinition, "drive"> | Response {
    const out: Omit<SnapshotDefinition, "drive"> = {};
    if (input.name !== undefined && input.name !== null) {
      if (typeof input.name !== "string" || input.name.trim() === "")
        return invalid("name: a non-empty string", "name");
      out.name = input.name;
    }
    if (input.meta !== undefined) {
      const meta = objectOf(input.meta);
      if (!meta || Object.entries(meta).some(([key, value]) => !META_KEY.test(key) || typeof value !== "string"))
        return invalid("meta: an object of string values", "meta");
      out.meta = meta as Record<string, string>;
    }
    if (input.tags !== undefined) {
      const tags = Array.isArray(input.tags) ? input.tags.map((tag) => uuidOf(tag) ?? tag) : undefined;
      if (!tags || tags.some((tag) => typeof tag !== "string" || /\s/.test(tag)))
        return invalid("tags: a list of names", "tags");
      out.tags = tags as string[];
    }
    return out;
  }

  private async create(request: Request): Promise<Response> {
    const items = await readDefinitions(request, "snapshot");
    if (items instanceof Response) return items;
    const definitions: SnapshotDefinition[] = [];
    for (const item of items) {
      const drive = uuidOf(item.drive);
      if (!drive) return invalid("drive: the UUID of a drive is required", "drive");
      const fields = this.fields(item);
      if (fields instanceof Response) return fields;
      definitions.push({ drive, ...fields });
    }
    const maps: (DataMap | undefined)[] = [];
    for (const definition of definitions) {
      const wrong = this.snapshotable(definition.drive);
      if (wrong) return wrong;
      const drive = this.stub.drives.get(definition.drive);
      maps.push(await dataMapOf(drive!.fd, drive!.size));
    }
    // no await from here: every snapshot is copied in one synchronous run, as of one instant
    for (const definition of definitions) {
      const wrong = this.snapshotable(definition.drive);
      if (wrong) return wrong;
    }
    const made = definitions.map((definition, index) => this.copyNow(definition, maps[index]));
    return Response.json({ objects: made.map((snapshot) => this.view(snapshot)) }, { status: 201 });
  }

  /** The answer refusing a snapshot of `uuid`, or undefined when it can be taken. */
  private snapshotable(uuid: string): Response | undefined {
    const drive = this.stub.drives.get(uuid);
    if (!drive) return invalid(`drive: no drive ${uuid}`, "drive");
    const status = statusOf(this.stub, drive);
    if (!SNAPSHOTABLE.has(status) || drive.imaging)
      return refused(`Cannot snapshot drive ${uuid} in status ${drive.imaging ? "imaging" : status}`);
    if (drive.fields.storage_type === "local_nvme")
      return refused(`Drive ${uuid} is ephemeral: it cannot be snapshotted`);
    return undefined;
  }

  /** The snapshot's file, filled now with the drive's data (synchronously: nothing else runs meanwhile). */
  private copyNow(definition: SnapshotDefinition, map: DataMap | undefined): StubSnapshot {
    const drive = this.stub.drives.get(definition.drive)!;
    const uuid = crypto.randomUUID();
    const { path, fd } = this.stub.createFile(uuid, drive.size);
    for (const _ of copyData(drive.fd, fd, drive.size, map));
    const { timestamp, suffix } = stamps(new Date());
    const snapshot: StubSnapshot = {
      uuid,
      drive: drive.uuid,
      name: definition.name ?? `${drive.uuid}__${suffix}`,
      meta: definition.meta ?? {},
      tags: definition.tags ?? [],
      timestamp,
      status: "creating",
      size: drive.size,
      media: drive.fields.media ?? "disk",
      path,
      fd,
    };
    this.stub.snapshots.set(uuid, snapshot);
    if (Number.isFinite(this.creatingMs)) {
      const timer = setTimeout(
        () => {
          this.timers.delete(uuid);
          if (this.stub.snapshots.get(uuid) === snapshot) snapshot.status = "available";
        },
        Math.max(0, this.creatingMs),
      );
      (timer as { unref?: () => void }).unref?.();
      this.timers.set(uuid, timer);
    }
    return snapshot;
  }

  private async update(request: Request, snapshot: StubSnapshot): Promise<Response> {
    const { value, error } = await readJson(request);
    if (error) return error;
    const input = objectOf(value);
    if (!input) return invalid("Expected a snapshot definition (an object)");
    const fields = this.fields(input);
    if (fields instanceof Response) return fields;
    if (fields.name !== undefined) snapshot.name = fields.name;
    if (fields.meta !== undefined) snapshot.meta = fields.meta;
    if (fields.tags !== undefined) snapshot.tags = fields.tags;
    return Response.json(this.view(snapshot));
  }

  private async removeMany(request: Request): Promise<Response> {
    const snapshots = await readTargets(request, "snapshot", (uuid) => this.stub.snapshots.get(uuid));
    if (snapshots instanceof Response) return snapshots;
    for (const snapshot of snapshots) this.stub.removeSnapshot(snapshot);
    return new Response(null, { status: 204 });
  }

  private async clone(request: Request, url: URL, snapshot: StubSnapshot): Promise<Response> {
    const { value, error } = await readJson(request);
    if (error) return error;
    const avoid = avoidOf(url);
    if (avoid instanceof Response) return avoid;
    const input = objectOf(value) ?? {};
    const definition = this.driveCalls.definition(
      { name: input.name, media: input.media, affinities: input.affinities },
      [],
    );
    if (definition instanceof Response) return definition;
    if (snapshot.status !== "available")
      return refused(`Cannot clone snapshot ${snapshot.uuid} in status ${snapshot.status}; wait until it is available`);
    const alive = () => this.stub.snapshots.get(snapshot.uuid) === snapshot;
    const drive = this.driveCalls.cloneOf(
      undefined,
      { fd: snapshot.fd, size: snapshot.size, alive },
      snapshot.size,
      { name: snapshot.name, media: snapshot.media, ...definition.fields },
      avoid,
    );
    return Response.json(this.driveCalls.view(drive), { status: 202 });
  }
}
