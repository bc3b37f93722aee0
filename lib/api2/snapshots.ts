// API 2.0 snapshot calls (CloudSigma `snapshots/`): a snapshot holds a drive's bytes as of the
// instant it was taken (a mounted, running drive too); it is `creating`, then `available`, and is
// not downloadable itself: a clone of it (`snapshots/UUID/action/?do=clone`) is a drive. Every
// answer is checked before use; lists come in pages, every page fetched.
import { OperationError } from "../errors.ts";
import type { HttpClient } from "../http.ts";
import { sleep } from "../retry.ts";
import { isUuid } from "../uuid.ts";
import { allPages, checkDrive, type Drive2, isObject, json, where } from "./drives.ts";
import { nextInterval } from "./wait.ts";

/** A snapshot as the server sent it (checked: `uuid` a UUID, `drive` its drive's UUID when present, `status` and `name` strings). */
export type Snapshot2 = Record<string, unknown> & { uuid: string; status?: string; name?: string; drive?: string };

/** Check one snapshot object from an answer; `drive` becomes the drive's UUID (the server sends `{uuid, resource_uri}`). */
export function checkSnapshot(value: unknown, context: string): Snapshot2 {
  if (!isObject(value)) throw new OperationError(`${context}: the answer holds no snapshot object`);
  const uuid = value.uuid;
  if (typeof uuid !== "string" || !isUuid(uuid))
    throw new OperationError(`${context}: the answer holds no snapshot UUID ('${String(uuid).slice(0, 60)}')`);
  for (const key of ["status", "name"]) {
    if (value[key] !== undefined && value[key] !== null && typeof value[key] !== "string")
      throw new OperationError(`${context}: snapshot ${uuid} has a ${key} that is not a string`);
  }
  const drive = isObject(value.drive) ? value.drive.uuid : value.drive;
  if (drive !== undefined && drive !== null && (typeof drive !== "string" || !isUuid(drive)))
    throw new OperationError(`${context}: snapshot ${uuid} names no drive UUID`);
  return value as Snapshot2;
}

/** The UUID of the drive a snapshot was taken of. */
export function snapshotDrive(snapshot: Snapshot2): string | undefined {
  const drive = snapshot.drive as unknown;
  const uuid = isObject(drive) ? drive.uuid : drive;
  return typeof uuid === "string" ? uuid.toLowerCase() : undefined;
}

export interface CreateSnapshot {
  drive: string;
  name?: string;
  meta?: Record<string, string>;
}

/** `POST snapshots/` with `{"objects": [definition]}`: the new snapshot (status `creating`). */
export async function createSnapshot(client: HttpClient, request: CreateSnapshot): Promise<Snapshot2> {
  const context = where("POST", "snapshots/");
  const answer = await json(client, "POST", "snapshots/", { body: JSON.stringify({ objects: [request] }) });
  if (!isObject(answer) || !Array.isArray(answer.objects) || answer.objects.length !== 1)
    throw new OperationError(`${context}: expected {"objects": [one snapshot]} in the answer`);
  const snapshot = checkSnapshot(answer.objects[0], context);
  if (snapshotDrive(snapshot) !== undefined && snapshotDrive(snapshot) !== request.drive.toLowerCase())
    throw new OperationError(`${context}: the server answered a snapshot of drive ${snapshotDrive(snapshot)}`);
  return snapshot;
}

/** `GET snapshots/detail/?limit=0` (`&drive=UUID`: one drive's), every page. */
export function listSnapshots(client: HttpClient, drive?: string): Promise<Snapshot2[]> {
  return allPages(client, "snapshots/detail/", drive ? { drive } : {}, checkSnapshot);
}

/** `GET snapshots/{uuid}/`. */
export async function getSnapshot(client: HttpClient, uuid: string, signal?: AbortSignal): Promise<Snapshot2> {
  const path = `snapshots/${uuid}/`;
  const found = checkSnapshot(await json(client, "GET", path, { signal }), where("GET", path));
  if (found.uuid.toLowerCase() !== uuid.toLowerCase())
    throw new OperationError(`GET /${path}: the server answered snapshot ${found.uuid}`);
  return found;
}

/** `DELETE snapshots/{uuid}/` (204). */
export async function deleteSnapshot(client: HttpClient, uuid: string): Promise<void> {
  const response = await client.request("DELETE", `snapshots/${uuid}/`, { headers: { accept: "application/json" } });
  await response.body?.cancel();
}

/** `POST snapshots/{uuid}/action/?do=clone`: the new drive (`cloning_dst`), as a bare object or in `objects`. */
export async function cloneSnapshot(
  client: HttpClient,
  uuid: string,
  request: { name?: string; media?: "disk" | "cdrom" } = {},
  signal?: AbortSignal,
): Promise<Drive2> {
  const path = `snapshots/${uuid}/action/?do=clone`;
  const context = where("POST", path);
  const answer = await json(client, "POST", path, { body: JSON.stringify(request), signal });
  if (isObject(answer) && Array.isArray(answer.objects)) {
    if (answer.objects.length !== 1) throw new OperationError(`${context}: expected one drive in the answer`);
    return checkDrive(answer.objects[0], context);
  }
  return checkDrive(answer, context);
}

/** Poll a snapshot until it is `available`, bounded by `limitMs`; the error names it and its last status. */
export async function waitForSnapshot(
  client: HttpClient,
  uuid: string,
  options: {
    limitMs: number;
    intervalMs: number;
    growTo?: number;
    signal?: AbortSignal;
    onStatus?: (status: string) => void;
  },
): Promise<Snapshot2> {
  const started = performance.now();
  let interval = options.intervalMs;
  // bounded: every turn sleeps, and the loop ends at the time limit at the latest
  for (;;) {
    const snapshot = await getSnapshot(client, uuid, options.signal);
    const status = snapshot.status ?? "";
    if (status === "available") return snapshot;
    options.onStatus?.(status || "(no status)");
    const waited = performance.now() - started;
    if (waited >= options.limitMs)
      throw new OperationError(
        `snapshot ${uuid} is still ${status || "without a status"} after ${Math.round(waited / 1000)} s (--timeout)`,
      );
    await sleep(Math.max(0, Math.min(interval, options.limitMs - waited)), options.signal);
    interval = nextInterval(interval, options);
  }
}
