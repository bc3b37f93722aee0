// The API 2.0 view of an emulated drive: the object `GET drives/{uuid}/` answers (and every create,
// clone, resize and upload answer holds). Drives live as 1.0 records (StubDrive.fields); the 2.0
// fields map onto them: `name`, `media` (default disk), `meta` = the `user:KEY` fields, `tags` = the
// space-separated `tags` field, `affinities` likewise, `allow_multimount` "true"/"false",
// `storage_type` (default dssd). Its status: the operation running on it, else `mounted` when a
// server holds it, else `unmounted`.
import type { DriveStub, StubDrive } from "./server.ts";

export type Json = Record<string, unknown>;

/** Statuses of a drive an operation holds: it refuses changes (and deletion) until they end. */
export const BUSY: ReadonlySet<string> = new Set(["creating", "cloning_dst", "cloning_src", "resizing"]);

/** The lifecycle status a drive shows (`unmounted` set by an operation that ended means "settled"). */
export function statusOf(stub: DriveStub, drive: StubDrive): string {
  if (drive.status && drive.status !== "unmounted") return drive.status;
  return drive.fields.claimed || stub.serversOf(drive.uuid).length > 0 ? "mounted" : "unmounted";
}

/** True when a running server uses the drive (or a test marked it `mounted`, or a 1.0 server claims it). */
export function inUse(stub: DriveStub, drive: StubDrive): boolean {
  if (drive.status === "mounted" || drive.fields.claimed) return true;
  return stub.serversOf(drive.uuid).some((server) => server.status === "running");
}

export function splitField(value: string | undefined): string[] {
  return value ? value.split(" ").filter(Boolean) : [];
}

/** `meta` as the 1.0 `user:KEY` fields it is stored as. */
export function prefixMeta(meta: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(meta).map(([key, value]) => [`user:${key}`, value]));
}

/** The `meta` object of a drive (its `user:KEY` fields). */
export function metaOf(drive: StubDrive): Record<string, string> {
  const meta: Record<string, string> = {};
  for (const [key, value] of Object.entries(drive.fields)) if (key.startsWith("user:")) meta[key.slice(5)] = value;
  return meta;
}

/** `{resource_uri, uuid}`, how the API refers to an object inside another. */
export function reference(kind: string, uuid: string): Json {
  return { resource_uri: `/api/2.0/${kind}/${uuid}/`, uuid };
}

/** The full 2.0 drive object (a library drive's too, through `drives/{uuid}/`: no owner). */
export function driveView(stub: DriveStub, drive: StubDrive): Json {
  const storage = drive.fields.storage_type ?? "dssd";
  const snapshots = [...stub.snapshots.values()].filter((snapshot) => snapshot.drive === drive.uuid);
  return {
    affinities: splitField(drive.fields.affinities),
    allow_multimount: drive.fields.allow_multimount === "true",
    grantees: [],
    jobs: [],
    licenses: drive.library?.licenses ?? [],
    media: drive.fields.media ?? "disk",
    meta: metaOf(drive),
    mounted_on: stub.serversOf(drive.uuid).map((server) => reference("servers", server.uuid)),
    name: drive.fields.name ?? drive.uuid,
    owner: drive.library ? null : reference("user", stub.user),
    permissions: [],
    resource_uri: `/api/2.0/drives/${drive.uuid}/`,
    runtime: {
      is_downloadable: storage !== "local_nvme",
      is_ephemeral: storage === "local_nvme",
      is_snapshotable: storage !== "local_nvme",
      snapshots_allocated_size: 0,
      storage_type: storage,
    },
    size: drive.size,
    snapshots: snapshots.map((snapshot) => reference("snapshots", snapshot.uuid)),
    status: statusOf(stub, drive),
    storage_type: storage,
    tags: splitField(drive.fields.tags),
    uuid: drive.uuid,
  };
}
