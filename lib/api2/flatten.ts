// An API 2.0 drive object as a KEY VALUE record, the shape info.ts prints for API 1.0:
// `meta` becomes `meta:KEY` fields, lists are space separated, a nested object with a `uuid`
// (`owner`, each of `mounted_on`) is its uuid, other nested objects become `KEY:SUBKEY` fields
// (`runtime:storage_type`), null is an empty value. Keys lose any white space (`_`), so no key can
// split a line; values keep their newlines here and are escaped as `\n` when printed (formatRecord).
import type { KvRecord } from "../kv.ts";

function safeKey(key: string): string {
  return key.replace(/[\s\x00-\x1f\x7f]/g, "_") || "_";
}

function scalar(value: unknown): string {
  if (value === null || value === undefined) return "";
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  if (typeof value === "object" && !Array.isArray(value) && typeof (value as { uuid?: unknown }).uuid === "string") {
    return (value as { uuid: string }).uuid;
  }
  return JSON.stringify(value);
}

/** One list item: a scalar, or an object's uuid; anything else as JSON. */
function item(value: unknown): string {
  return scalar(value).replace(/\s/g, "_");
}

export function flattenDrive(drive: Record<string, unknown>): KvRecord {
  const record: KvRecord = {};
  for (const [rawKey, value] of Object.entries(drive)) {
    const key = safeKey(rawKey);
    if (Array.isArray(value)) {
      record[key] = value.map(item).join(" ");
    } else if (typeof value === "object" && value !== null && typeof (value as { uuid?: unknown }).uuid !== "string") {
      // meta and runtime: one field per entry
      for (const [subKey, subValue] of Object.entries(value)) record[`${key}:${safeKey(subKey)}`] = scalar(subValue);
    } else {
      record[key] = scalar(value);
    }
  }
  return record;
}
