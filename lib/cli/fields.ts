// Drive fields as flags (create, set): each value checked before anything is sent.
import type { ArgsDef } from "citty";
import { UsageError } from "../errors.ts";
import { checkPair, type KvRecord } from "../kv.ts";
import { parseSize } from "../size.ts";
import { checkUuid } from "../uuid.ts";

export const EVERYONE = "ffffffff-ffff-ffff-ffff-ffffffffffff";

export const driveFieldArgs = {
  name: { type: "string", description: "Drive name", valueHint: "NAME" },
  size: { type: "string", description: "Size in bytes, or with k/M/G/T (binary)", valueHint: "SIZE" },
  "claim-type": { type: "string", description: "exclusive (the default) or shared", valueHint: "exclusive|shared" },
  readers: { type: "string", description: `Users allowed to read, space or comma separated UUIDs, or ${EVERYONE} for all`, valueHint: "UUIDS" },
  tags: { type: "string", description: "Tags, space or comma separated", valueHint: "TAGS" },
  meta: { type: "string", description: "A user-defined field user:KEY, as KEY=VALUE; repeat for more", valueHint: "KEY=VALUE" },
} as const satisfies ArgsDef;

export const createOnlyArgs = {
  encryption: { type: "string", description: "encryption:cipher, none or aes-xts-plain (the server's default)", valueHint: "none|aes-xts-plain" },
  avoid: { type: "string", description: "Drives to keep on other hardware, space or comma separated UUIDs", valueHint: "UUIDS" },
} as const satisfies ArgsDef;

function splitList(text: string): string[] {
  return text.split(/[\s,]+/).filter(Boolean);
}

function uuidList(text: string, what: string): string {
  const items = splitList(text);
  return items.map((item) => checkUuid(item, `${what} entry`)).join(" ");
}

/** Every value of a repeatable flag, in order (citty keeps only the last). */
export function repeated(rawArgs: string[], flag: string): string[] {
  const values: string[] = [];
  for (let i = 0; i < rawArgs.length; i++) {
    const arg = rawArgs[i] as string;
    if (arg === "--") break;
    if (arg === `--${flag}`) {
      const next = rawArgs[i + 1];
      if (next !== undefined) values.push(next);
      i++;
    } else if (arg.startsWith(`--${flag}=`)) {
      values.push(arg.slice(flag.length + 3));
    }
  }
  return values;
}

export interface FieldFlags {
  name?: string;
  size?: string;
  "claim-type"?: string;
  readers?: string;
  tags?: string;
  encryption?: string;
  avoid?: string;
}

/** Build the KEY VALUE body from flags; refuses bad values with a UsageError. */
export function fieldsFromFlags(flags: FieldFlags, rawArgs: string[]): KvRecord {
  const fields: KvRecord = {};
  if (flags.name !== undefined) {
    if (flags.name.trim() === "") throw new UsageError("--name must not be empty");
    fields.name = flags.name;
  }
  if (flags.size !== undefined) {
    const size = parseSize(flags.size, "--size");
    if (size === 0) throw new UsageError("--size must be more than 0");
    fields.size = String(size);
  }
  if (flags["claim-type"] !== undefined) {
    if (flags["claim-type"] !== "exclusive" && flags["claim-type"] !== "shared") {
      throw new UsageError(`invalid --claim-type '${flags["claim-type"]}': expected exclusive or shared`);
    }
    fields["claim:type"] = flags["claim-type"];
  }
  if (flags.readers !== undefined) fields.readers = uuidList(flags.readers, "--readers");
  if (flags.tags !== undefined) {
    const tags = splitList(flags.tags);
    for (const tag of tags) if (/[^\x21-\x7e\u00a0-\uffff]/.test(tag)) throw new UsageError(`invalid tag '${tag}'`);
    fields.tags = tags.join(" ");
  }
  if (flags.encryption !== undefined) {
    if (flags.encryption !== "none" && flags.encryption !== "aes-xts-plain") {
      throw new UsageError(`invalid --encryption '${flags.encryption}': expected none or aes-xts-plain`);
    }
    fields["encryption:cipher"] = flags.encryption;
  }
  if (flags.avoid !== undefined) fields.avoid = uuidList(flags.avoid, "--avoid");
  for (const pair of repeated(rawArgs, "meta")) {
    const eq = pair.indexOf("=");
    const key = eq === -1 ? pair : pair.slice(0, eq);
    if (eq <= 0 || !/^[A-Za-z0-9_.:-]+$/.test(key)) {
      throw new UsageError(`invalid --meta '${pair.slice(0, 60)}': expected KEY=VALUE, KEY of letters, digits, _ . : -`);
    }
    fields[`user:${key}`] = pair.slice(eq + 1);
  }
  for (const [key, value] of Object.entries(fields)) checkPair(key, value);
  return fields;
}
