// The API 1.0 KEY VALUE text format (its rules, from real recorded bodies: test/fixtures/README.md):
// one pair a line, the key ends at the first space, records split by a blank line,
// a newline inside a value travels as the two characters `\n`, the last line may lack its newline.
import { UsageError } from "./errors.ts";

export type KvRecord = Record<string, string>;

/** Fields whose values are space-separated lists. */
export const LIST_FIELDS: ReadonlySet<string> = new Set(["claimed", "readers", "tags", "avoid"]);

/** Fields whose values are byte or request counts. */
const NUMBER_FIELDS: ReadonlySet<string> = new Set([
  "size",
  "rawsize",
  "read:bytes",
  "read:requests",
  "write:bytes",
  "write:requests",
]);

/** `\n` (backslash, n) in a value becomes a newline; any other backslash stays as it is. */
export function unescapeValue(value: string): string {
  return value.replace(/\\n/g, "\n");
}

/** The inverse for values that should carry newlines: each newline travels as `\n`. */
export function escapeValue(value: string): string {
  return value.replace(/\r\n|\r|\n/g, "\\n");
}

/** Parse a body of one or more records. CRLF is tolerated; empty records are dropped. */
export function parseRecords(text: string): KvRecord[] {
  const records: KvRecord[] = [];
  let current: KvRecord | undefined;
  for (const rawLine of text.split("\n")) {
    const line = rawLine.endsWith("\r") ? rawLine.slice(0, -1) : rawLine;
    if (line.trim() === "") {
      current = undefined;
      continue;
    }
    if (!current) {
      current = {};
      records.push(current);
    }
    const space = line.indexOf(" ");
    const key = space === -1 ? line : line.slice(0, space);
    current[key] = space === -1 ? "" : unescapeValue(line.slice(space + 1));
  }
  return records;
}

/** Parse a body holding exactly one record (an empty body gives an empty record). */
export function parseRecord(text: string): KvRecord {
  const records = parseRecords(text);
  if (records.length > 1) throw new Error(`expected one KEY VALUE record, got ${records.length}`);
  return records[0] ?? {};
}

/** A space-separated field as a list ([] when absent or empty). */
export function listField(record: KvRecord, key: string): string[] {
  const value = record[key];
  return value ? value.split(/\s+/).filter(Boolean) : [];
}

/** Check a key and value before they are written, so no caller can inject a field. */
export function checkPair(key: string, value: string): void {
  if (key === "" || /[\s]/.test(key)) {
    throw new UsageError(`invalid field name ${JSON.stringify(key)}: it must be non-empty, without spaces or newlines`);
  }
  if (/[\r\n]/.test(value)) {
    throw new UsageError(`invalid value for '${key}': it holds a raw newline (write it as \\n)`);
  }
}

export interface FormatOptions {
  /** Turn newlines inside values into `\n` (for printing parsed records); otherwise they are refused. */
  escape?: boolean;
}

/** Write one record; refuses keys with white space and values with raw newlines (unless escaping). */
export function formatRecord(record: KvRecord, options: FormatOptions = {}): string {
  let out = "";
  for (const [key, raw] of Object.entries(record)) {
    const value = options.escape ? escapeValue(raw) : raw;
    checkPair(key, value);
    out += `${key} ${value}\n`;
  }
  return out;
}

/** Write several records, one blank line between them. */
export function formatRecords(records: KvRecord[], options: FormatOptions = {}): string {
  return records.map((record) => formatRecord(record, options)).join("\n");
}

export type JsonValue = string | number | string[];

/** A record for `--json`: list fields as arrays, counts as numbers (when exact). */
export function recordToJson(record: KvRecord): Record<string, JsonValue> {
  const out: Record<string, JsonValue> = {};
  for (const [key, value] of Object.entries(record)) {
    if (LIST_FIELDS.has(key)) out[key] = listField(record, key);
    else if (NUMBER_FIELDS.has(key) && /^\d+$/.test(value) && Number.isSafeInteger(Number(value)))
      out[key] = Number(value);
    else out[key] = value;
  }
  return out;
}
