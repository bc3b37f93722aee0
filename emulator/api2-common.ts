// What every API 2.0 resource of the emulator shares: JSON bodies in the forms the real API takes
// (one bare definition, a bare list, or `{"objects": [...]}`), pages with `limit`/`offset`/`fields`
// and the documented filters, the errors in CloudSigma's form, and the parts of a path.
import { isUuid } from "../lib/uuid.ts";
import type { Json } from "./drive-view.ts";
import { api2Error } from "./errors.ts";

/** CloudSigma's page size when `limit` is not given (`default_limit` in every schema). */
export const DEFAULT_LIMIT = 20;

export const invalid = (message: string, point: string | null = null) =>
  api2Error(400, "validation", message, {}, point);
export const missing = (uuid: string) => api2Error(404, "notexist", `Object with uuid ${uuid} does not exist`);
/** What the object's state does not allow (a running server's drive, a drive being cloned...): 403 `permission`. */
export const refused = (message: string) => api2Error(403, "permission", message);

/** 405 unless the method is one of `wanted`. */
export function allow(method: string, wanted: string[]): Response | undefined {
  return wanted.includes(method)
    ? undefined
    : api2Error(405, "method", `${method} is not allowed here; use ${wanted.join(" or ")}`);
}

/** The parts of a path under /api/2.0/ that ends with "/" (`drives/UUID/action/` → drives, UUID, action), else undefined. */
export function partsOf(path: string): string[] | undefined {
  const parts = path.split("/");
  if (parts.at(-1) !== "") return undefined;
  parts.pop();
  return parts;
}

/** The parts of a path under `resource/` with at most `most` parts (`snapshots/UUID/action/`: 3), else undefined. */
export function partsUnder(path: string, resource: string, most: number): string[] | undefined {
  const parts = partsOf(path);
  return parts?.[0] === resource && parts.length <= most ? parts : undefined;
}

/** A JSON body (an empty one is `{}`), or the 400 for one that is not JSON. */
export async function readJson(request: Request): Promise<{ value?: unknown; error?: Response }> {
  const text = await request.text();
  if (text.trim() === "") return { value: {} };
  try {
    return { value: JSON.parse(text) };
  } catch {
    return { error: invalid("The request body is not valid JSON") };
  }
}

const isObject = (value: unknown): value is Json =>
  typeof value === "object" && value !== null && !Array.isArray(value);

/** A body's object, or undefined when it is not one. */
export function objectOf(value: unknown): Json | undefined {
  return isObject(value) ? value : undefined;
}

/**
 * The definitions a create carries, as the real API takes them: `{"objects": [def, ...]}`, a bare
 * list `[def, ...]`, or one bare definition; else the 400.
 */
export function definitionsOf(value: unknown, what: string): Json[] | Response {
  const list = Array.isArray(value)
    ? value
    : isObject(value) && Array.isArray(value.objects)
      ? value.objects
      : isObject(value) && !("objects" in value)
        ? [value]
        : undefined;
  if (!list || list.length === 0 || !list.every(isObject)) {
    return invalid(`Expected ${what} definitions: one object, a list, or {"objects": [...]}`, "objects");
  }
  return list;
}

/** The definitions of a create's body (readJson, then definitionsOf), or the 400. */
export async function readDefinitions(request: Request, what: string): Promise<Json[] | Response> {
  const { value, error } = await readJson(request);
  return error ?? definitionsOf(value, what);
}

/**
 * The objects a bulk `DELETE resource/` names (`{"objects": [{"uuid": ...}, ...]}` or a list), or
 * the 400 / 404 for one that is not there: all are checked before any goes.
 */
export async function readTargets<T>(
  request: Request,
  what: string,
  find: (uuid: string) => T | undefined,
): Promise<T[] | Response> {
  const items = await readDefinitions(request, what);
  if (items instanceof Response) return items;
  const found: T[] = [];
  for (const item of items) {
    const uuid = uuidOf(item);
    if (!uuid) return invalid(`uuid: each object needs the UUID of a ${what}`, "uuid");
    const target = find(uuid);
    if (target === undefined) return missing(uuid);
    found.push(target);
  }
  return found;
}

/** A size in bytes, as a JSON number or a string of digits (CloudSigma's own tests send "1024000000"). */
export function sizeOf(value: unknown): number | undefined {
  const size = typeof value === "string" && /^\d{1,16}$/.test(value) ? Number(value) : value;
  return typeof size === "number" && Number.isSafeInteger(size) && size >= 0 ? size : undefined;
}

/** A UUID given as itself or as a reference `{uuid: ...}` / `{resource_uri: ".../UUID/"}`. */
export function uuidOf(value: unknown): string | undefined {
  const text = isObject(value)
    ? typeof value.uuid === "string"
      ? value.uuid
      : /([0-9a-f-]{36})\/?$/i.exec(String(value.resource_uri ?? ""))?.[1]
    : value;
  return typeof text === "string" && isUuid(text) ? text.toLowerCase() : undefined;
}

/** `avoid=UUID,UUID` (create and clone), or the 400 for one that is not a list of UUIDs. */
export function avoidOf(url: URL): string[] | Response {
  const avoid = url.searchParams.get("avoid");
  if (avoid === null || avoid === "") return [];
  const list = avoid.split(",");
  return list.every(isUuid)
    ? list.map((item) => item.toLowerCase())
    : invalid(`Invalid avoid '${avoid.slice(0, 80)}'`, "avoid");
}

/** One filter value list: split at commas not escaped by a backslash (values ORed). */
function filterValues(text: string): string[] {
  const values: string[] = [];
  let current = "";
  for (let i = 0; i < text.length; i++) {
    const char = text[i] as string;
    if (char === "\\" && (text[i + 1] === "," || text[i + 1] === "\\")) {
      current += text[i + 1];
      i++;
    } else if (char === ",") {
      values.push(current);
      current = "";
    } else current += char;
  }
  values.push(current);
  return values;
}

/** How one filterable field of an object is matched: exact on `key`, or a substring (case-insensitive). */
export type Filters = Record<string, (item: Json, value: string) => boolean>;

/** The filters most resources document: `name`, `name__contains` (and `__icontains`), `uuid`, `tag`. */
export const COMMON_FILTERS: Filters = {
  name: (item, value) => item.name === value,
  name__contains: (item, value) =>
    String(item.name ?? "")
      .toLowerCase()
      .includes(value.toLowerCase()),
  name__icontains: (item, value) =>
    String(item.name ?? "")
      .toLowerCase()
      .includes(value.toLowerCase()),
  uuid: (item, value) => item.uuid === value,
  tag: (item, value) => Array.isArray(item.tags) && item.tags.includes(value),
};

/**
 * A page of objects: the filters ANDed (each one's comma-separated values ORed), then
 * `offset` and `limit` (default 20, 0 for all), each object trimmed to `fields=` when given, else
 * to `short` (a list without `detail/`).
 */
export function page(url: URL, objects: Json[], filters: Filters, short?: (full: Json) => Json): Response {
  const limitText = url.searchParams.get("limit") ?? String(DEFAULT_LIMIT);
  const offsetText = url.searchParams.get("offset") ?? "0";
  if (!/^\d+$/.test(limitText)) return invalid(`Invalid limit '${limitText.slice(0, 40)}'`, "limit");
  if (!/^\d+$/.test(offsetText)) return invalid(`Invalid offset '${offsetText.slice(0, 40)}'`, "offset");
  const limit = Number(limitText);
  const offset = Number(offsetText);
  let matching = objects;
  for (const [key, value] of url.searchParams) {
    const match = filters[key];
    if (!match) continue;
    const values = filterValues(value);
    matching = matching.filter((item) => values.some((one) => match(item, one)));
  }
  const fields = url.searchParams.get("fields")?.split(",").filter(Boolean);
  const shown = matching.slice(offset, limit === 0 ? undefined : offset + limit).map((full) => {
    if (fields) return Object.fromEntries(Object.entries(full).filter(([key]) => fields.includes(key)));
    return short ? short(full) : full;
  });
  return Response.json({ meta: { limit, offset, total_count: matching.length }, objects: shown });
}
