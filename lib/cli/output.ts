// Printing drive records on stdout: KEY VALUE lines (records split by a blank line) or JSON.
import type { RunContext } from "./runner.ts";
import { formatRecords, recordToJson, type KvRecord } from "../kv.ts";
import { flattenDrive } from "../api2/flatten.ts";

export function printRecords(ctx: RunContext, records: KvRecord[], json: boolean, single: boolean): void {
  if (json) {
    const values = records.map(recordToJson);
    ctx.print(JSON.stringify(single ? (values[0] ?? {}) : values, null, 2));
  } else if (records.length > 0) {
    ctx.print(formatRecords(records, { escape: true }));
  }
}

/** API 2.0 objects (drives, snapshots): KEY VALUE records flattened as API 1.0 prints drives, or with --json the server's objects. */
export function printObjects2(
  ctx: RunContext,
  drives: Record<string, unknown>[],
  json: boolean,
  single: boolean,
): void {
  if (json) ctx.print(JSON.stringify(single ? (drives[0] ?? {}) : drives, null, 2));
  else if (drives.length > 0) ctx.print(formatRecords(drives.map(flattenDrive), { escape: true }));
}
