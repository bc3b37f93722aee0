// Printing drive records on stdout: KEY VALUE lines (records split by a blank line) or JSON.
import type { RunContext } from "./runner.ts";
import { formatRecords, recordToJson, type KvRecord } from "../kv.ts";

export function printRecords(ctx: RunContext, records: KvRecord[], json: boolean, single: boolean): void {
  if (json) {
    const values = records.map(recordToJson);
    ctx.print(JSON.stringify(single ? (values[0] ?? {}) : values, null, 2));
  } else if (records.length > 0) {
    ctx.print(formatRecords(records, { escape: true }));
  }
}
