// API 2.0 drive calls (CloudSigma): one function per call, arguments already checked, every answer
// checked before use (UUIDs, sizes as safe integers, shapes). Lists come in pages
// (`{"meta": {"limit", "offset", "total_count"}, "objects": [...]}`): every page is fetched.
import { OperationError } from "../errors.ts";
import type { HttpClient, RequestOptions } from "../http.ts";
import { isUuid } from "../uuid.ts";

/** A drive as the server sent it (checked: `uuid` is a UUID, `size` a safe integer when present, `status` and `name` strings). */
export type Drive2 = Record<string, unknown> & { uuid: string; status?: string; name?: string; size?: number };

/** The fields a drive's definition holds: what PUT and `do=resize` need besides the changes. */
export interface DriveDefinition {
  name: string;
  size: number;
  media: string;
  meta?: Record<string, string>;
  tags?: string[];
  allow_multimount?: boolean;
}

export type Media = "disk" | "cdrom";

const jsonHeaders = { "content-type": "application/json", accept: "application/json" };
/** Pages followed at most (a server that never stops paging is an error, not a loop). */
const MAX_PAGES = 10_000;

export function where(method: string, path: string): string {
  return `${method} /${path}`;
}

export async function json(
  client: HttpClient,
  method: string,
  path: string,
  options: RequestOptions = {},
): Promise<unknown> {
  const response = await client.request(method, path, { ...options, headers: { ...jsonHeaders, ...options.headers } });
  const text = await response.text();
  try {
    return JSON.parse(text);
  } catch {
    throw new OperationError(
      `${where(method, path)}: the answer is not JSON ('${text.slice(0, 60).replace(/[\x00-\x1f]/g, " ")}')`,
    );
  }
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Check one drive object from an answer. */
export function checkDrive(value: unknown, context: string): Drive2 {
  if (!isObject(value)) throw new OperationError(`${context}: the answer holds no drive object`);
  const uuid = value.uuid;
  if (typeof uuid !== "string" || !isUuid(uuid))
    throw new OperationError(`${context}: the answer holds no drive UUID ('${String(uuid).slice(0, 60)}')`);
  if (
    value.size !== undefined &&
    (typeof value.size !== "number" || !Number.isSafeInteger(value.size) || value.size < 0)
  ) {
    throw new OperationError(`${context}: drive ${uuid} has no usable size ('${String(value.size).slice(0, 40)}')`);
  }
  for (const key of ["status", "name", "media"]) {
    if (value[key] !== undefined && value[key] !== null && typeof value[key] !== "string") {
      throw new OperationError(`${context}: drive ${uuid} has a ${key} that is not a string`);
    }
  }
  return value as Drive2;
}

/** `{"objects": [drive, ...]}` (create, clone, resize): the drives, checked. */
function objectsOf(value: unknown, context: string): Drive2[] {
  if (!isObject(value) || !Array.isArray(value.objects))
    throw new OperationError(`${context}: expected {"objects": [...]} in the answer`);
  return value.objects.map((item) => checkDrive(item, context));
}

function firstObject(value: unknown, context: string): Drive2 {
  const objects = objectsOf(value, context);
  if (objects.length !== 1)
    throw new OperationError(`${context}: expected one drive in the answer, got ${objects.length}`);
  return objects[0] as Drive2;
}

/**
 * Every object of a paged list: `limit=0` asks for all; when the server still pages, `offset`
 * follows. Each object is checked by `check` (default: a drive).
 */
export async function allPages<T extends { uuid: string } = Drive2>(
  client: HttpClient,
  path: string,
  query: Record<string, string> = {},
  check: (value: unknown, context: string) => T = checkDrive as unknown as (value: unknown, context: string) => T,
): Promise<T[]> {
  const drives: T[] = [];
  for (let page = 0; page < MAX_PAGES; page++) {
    const params = new URLSearchParams({ ...query, limit: "0" });
    if (drives.length > 0) params.set("offset", String(drives.length));
    const target = `${path}?${params}`;
    const answer = await json(client, "GET", target);
    const context = where("GET", target);
    if (!isObject(answer) || !Array.isArray(answer.objects))
      throw new OperationError(`${context}: expected {"meta": ..., "objects": [...]} in the answer`);
    const objects = answer.objects.map((item) => check(item, context));
    drives.push(...objects);
    const meta = isObject(answer.meta) ? answer.meta : {};
    const total = meta.total_count;
    if (total === undefined || total === null) return drives;
    if (typeof total !== "number" || !Number.isSafeInteger(total) || total < 0)
      throw new OperationError(`${context}: meta.total_count is not a count`);
    if (drives.length >= total || objects.length === 0) {
      if (drives.length < total)
        throw new OperationError(
          `${context}: the server listed ${drives.length} of ${total} objects, then an empty page`,
        );
      return drives;
    }
  }
  throw new OperationError(`GET /${path}: more than ${MAX_PAGES} pages`);
}

/** `GET drives/?limit=0`, every page: `{uuid, resource_uri, owner, status, name?}` for each drive. */
export function listDrives2(client: HttpClient): Promise<Drive2[]> {
  return allPages(client, "drives/");
}

/** `GET drives/?limit=1`: one cheap authenticated call (a check of the credentials before anything is made). */
export async function probeDrives(client: HttpClient): Promise<void> {
  await json(client, "GET", "drives/?limit=1");
}

/** `GET drives/detail/?limit=0`, every page: the full objects. */
export function listDriveDetails(client: HttpClient): Promise<Drive2[]> {
  return allPages(client, "drives/detail/");
}

/** `GET drives/{uuid}/`: the bare drive object. */
export async function getDrive(client: HttpClient, drive: string, options?: RequestOptions): Promise<Drive2> {
  const path = `drives/${drive}/`;
  const found = checkDrive(await json(client, "GET", path, options), where("GET", path));
  if (found.uuid.toLowerCase() !== drive.toLowerCase())
    throw new OperationError(`GET /${path}: the server answered drive ${found.uuid}`);
  return found;
}

export interface CreateDrive2 {
  name: string;
  size: number;
  media: Media;
  meta?: Record<string, string>;
  tags?: string[];
  /** Drives the new one should not share hardware with (`?avoid=`). */
  avoid?: string[];
}

/** `POST drives/` with `{"objects": [definition]}`: the new drive (status `creating`). */
export async function createDrive2(client: HttpClient, request: CreateDrive2): Promise<Drive2> {
  const { avoid, ...definition } = request;
  const path = `drives/${avoid?.length ? `?avoid=${avoid.join(",")}` : ""}`;
  const body = JSON.stringify({ objects: [definition] });
  return firstObject(await json(client, "POST", path, { body }), where("POST", path));
}

/** `POST initupload/` with `{name, size, media}`: the drive a chunked upload fills (status `uploading`). */
export async function initUpload(
  client: HttpClient,
  request: { name: string; size: number; media: Media },
): Promise<Drive2> {
  const answer = await json(client, "POST", "initupload/", { body: JSON.stringify(request) });
  // `{"objects": [drive]}` as create answers, or (some servers) the bare object
  return isObject(answer) && Array.isArray(answer.objects)
    ? firstObject(answer, where("POST", "initupload/"))
    : checkDrive(answer, where("POST", "initupload/"));
}

/** The definition PUT and resize send: name, size and media from the drive, then the changes. */
export function definitionOf(drive: Drive2, changes: Partial<DriveDefinition> = {}): DriveDefinition {
  const { name, size, media } = drive;
  if (typeof name !== "string" || typeof size !== "number" || typeof media !== "string") {
    throw new OperationError(`drive ${drive.uuid}: the server's answer lacks its name, size or media`);
  }
  const definition: DriveDefinition = { name, size, media };
  const meta = drive.meta;
  if (isObject(meta))
    definition.meta = Object.fromEntries(Object.entries(meta).map(([key, value]) => [key, String(value)]));
  if (typeof drive.allow_multimount === "boolean") definition.allow_multimount = drive.allow_multimount;
  // tags are kept as they are (names, or the UUIDs of tag objects), so a PUT never drops them
  if (Array.isArray(drive.tags)) {
    definition.tags = drive.tags.map((tag) => (isObject(tag) && typeof tag.uuid === "string" ? tag.uuid : String(tag)));
  }
  return { ...definition, ...changes };
}

/** `PUT drives/{uuid}/` with the whole definition: the drive as the server now has it. */
export async function updateDrive2(client: HttpClient, drive: string, definition: DriveDefinition): Promise<Drive2> {
  const path = `drives/${drive}/`;
  const answer = await json(client, "PUT", path, { body: JSON.stringify(definition) });
  // the bare object, or (some servers) wrapped in objects
  return isObject(answer) && Array.isArray(answer.objects)
    ? firstObject(answer, where("PUT", path))
    : checkDrive(answer, where("PUT", path));
}

/** `DELETE drives/{uuid}/` (204). */
export async function deleteDrive2(client: HttpClient, drive: string): Promise<void> {
  const response = await client.request("DELETE", `drives/${drive}/`, { headers: jsonHeaders });
  await response.body?.cancel();
}

export interface CloneDrive2 {
  name?: string;
  media?: Media;
  affinities?: string[];
  avoid?: string[];
}

/** `POST drives/{uuid}/action/?do=clone`: the new drive (status `creating` or `cloning`). */
export async function cloneDrive2(client: HttpClient, source: string, request: CloneDrive2 = {}): Promise<Drive2> {
  const { avoid, ...body } = request;
  const path = `drives/${source}/action/?do=clone${avoid?.length ? `&avoid=${avoid.join(",")}` : ""}`;
  const clone = firstObject(await json(client, "POST", path, { body: JSON.stringify(body) }), where("POST", path));
  if (clone.uuid.toLowerCase() === source.toLowerCase())
    throw new OperationError(`POST /${path}: the server answered the source drive, not a new one`);
  return clone;
}

/** `POST drives/{uuid}/action/?do=resize` with the definition and its new size: the drive (status `resizing`). */
export async function resizeDrive2(client: HttpClient, drive: string, definition: DriveDefinition): Promise<Drive2> {
  const path = `drives/${drive}/action/?do=resize`;
  return firstObject(await json(client, "POST", path, { body: JSON.stringify(definition) }), where("POST", path));
}

export interface SizeLimits {
  min: number;
  max: number;
}

/** `GET capabilities/`: the drive sizes the cloud accepts, per storage type (`dssd`...). */
export async function driveSizeLimits(client: HttpClient): Promise<Record<string, SizeLimits>> {
  const answer = await json(client, "GET", "capabilities/");
  const drives = isObject(answer) && isObject(answer.drives) ? answer.drives : undefined;
  if (!drives) throw new OperationError("GET /capabilities/: the answer holds no drive limits");
  const limits: Record<string, SizeLimits> = {};
  for (const [type, value] of Object.entries(drives)) {
    if (!isObject(value)) continue;
    const { min_size: min, max_size: max } = value;
    if (
      typeof min !== "number" ||
      typeof max !== "number" ||
      !Number.isSafeInteger(min) ||
      !Number.isSafeInteger(max)
    ) {
      throw new OperationError(`GET /capabilities/: drives.${type} has no usable min_size/max_size`);
    }
    limits[type] = { min, max };
  }
  return limits;
}
