// The API 2.0 view of an emulated drive: the object `GET drives/{uuid}/` answers (and every create,
// clone, resize and upload answer holds). Drives live as 1.0 records (StubDrive.fields); the 2.0
// fields map onto them: `name`, `media` (default disk), `meta` = the `user:KEY` fields, `tags` = the
// space-separated `tags` field, `affinities` likewise, `allow_multimount` "true"/"false".
import type { DriveStub, StubDrive } from "./server.ts";

export type Json = Record<string, unknown>;

/** The lifecycle status a drive shows: its own, or mounted when a 1.0 server claims it, else unmounted. */
export function statusOf(drive: StubDrive): string {
  return drive.status ?? (drive.fields.claimed ? "mounted" : "unmounted");
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

/** The full 2.0 drive object. */
export function driveView(stub: DriveStub, drive: StubDrive): Json {
  const storage = drive.fields.storage_type ?? "dssd";
  return {
    affinities: splitField(drive.fields.affinities),
    allow_multimount: drive.fields.allow_multimount === "true",
    jobs: [],
    licenses: [],
    media: drive.fields.media ?? "disk",
    meta: metaOf(drive),
    mounted_on: [],
    name: drive.fields.name ?? drive.uuid,
    owner: { resource_uri: `/api/2.0/user/${stub.user}/`, uuid: stub.user },
    resource_uri: `/api/2.0/drives/${drive.uuid}/`,
    runtime: { snapshots_allocated_size: 0, storage_type: storage },
    size: drive.size,
    snapshots: [],
    status: statusOf(drive),
    storage_type: storage,
    tags: splitField(drive.fields.tags),
    uuid: drive.uuid,
  };
}
