// Drive fields as flags (create, set): each value checked before anything is sent.
import type { OptionsDef } from "./command.ts";
import { UsageError } from "../errors.ts";
import { checkPair, type KvRecord } from "../kv.ts";
import { parseSize } from "../size.ts";
import { checkUuid } from "../uuid.ts";

export const EVERYONE = "ffffffff-ffff-ffff-ffff-ffffffffffff";

export const driveFieldArgs = {
  name: { type: "string", group: "drive", description: "Drive name", valueHint: "NAME" },
  size: { type: "string", group: "drive", description: "Size in bytes, or with k/M/G/T (binary)", valueHint: "SIZE" },
  "claim-type": {
    type: "enum",
    group: "drive",
    options: ["exclusive", "shared"],
    description: "API 1.0: exclusive (the default) or shared",
  },
  readers: {
    type: "string",
    group: "drive",
    description: `API 1.0: users allowed to read, space or comma separated UUIDs, or ${EVERYONE} for all`,
    valueHint: "UUIDS",
  },
  tags: { type: "string", group: "drive", description: "Tags, space or comma separated", valueHint: "TAGS" },
  meta: {
    type: "string",
    group: "drive",
    description: "A user-defined field (API 1.0 user:KEY, API 2.0 meta KEY), as KEY=VALUE; repeat for more",
    valueHint: "KEY=VALUE",
  },
  media: {
    type: "enum",
    group: "drive",
    options: ["disk", "cdrom"],
    description: "API 2.0: disk (a new drive's default) or cdrom",
  },
} as const satisfies OptionsDef;

export const createOnlyArgs = {
  encryption: {
    type: "enum",
    group: "drive",
    options: ["none", "aes-xts-plain"],
    description: "API 1.0: encryption:cipher (aes-xts-plain is the server's default)",
  },
  avoid: {
    type: "string",
    group: "drive",
    description: "Drives to keep on other hardware, space or comma separated UUIDs",
    valueHint: "UUIDS",
  },
  tier: {
    type: "enum",
    group: "drive",
    options: ["disk", "ssd"],
    alias: "t",
    description:
      "API 1.0: the storage tier (the vendor tool's -t). Refused on API 2.0: its storage_type values (dssd...) are not the same",
  },
} as const satisfies OptionsDef;

function splitList(text: string): string[] {
  return text.split(/[\s,]+/).filter(Boolean);
}

/** A list of UUIDs given as one flag value, space or comma separated; each checked. */
export function uuidList(text: string, what: string): string[] {
  return splitList(text).map((item) => checkUuid(item, `${what} entry`));
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
  tier?: string;
  media?: string;
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
  if (flags.readers !== undefined) fields.readers = uuidList(flags.readers, "--readers").join(" ");
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
  if (flags.avoid !== undefined) fields.avoid = uuidList(flags.avoid, "--avoid").join(" ");
  if (flags.tier !== undefined) {
    if (flags.tier !== "disk" && flags.tier !== "ssd")
      throw new UsageError(`invalid --tier '${flags.tier}': expected disk or ssd`);
    fields.tier = flags.tier;
  }
  if (flags.media !== undefined) throw new UsageError("--media is API 2.0 only (pass --api 2, or set CSURI)");
  for (const [key, value] of metaPairs(rawArgs)) fields[`user:${key}`] = value;
  for (const [key, value] of Object.entries(fields)) checkPair(key, value);
  return fields;
}

/** Every --meta KEY=VALUE, checked (no raw newline in a value: the same rule for both APIs). */
function metaPairs(rawArgs: string[]): [string, string][] {
  return repeated(rawArgs, "meta").map((pair) => {
    const eq = pair.indexOf("=");
    const key = eq === -1 ? pair : pair.slice(0, eq);
    if (eq <= 0 || !/^[A-Za-z0-9_.:-]+$/.test(key)) {
      throw new UsageError(
        `invalid --meta '${pair.slice(0, 60)}': expected KEY=VALUE, KEY of letters, digits, _ . : -`,
      );
    }
    const value = pair.slice(eq + 1);
    checkPair(key, value);
    return [key, value];
  });
}

/** API 2.0 changes from the field flags: what create sends, or what set applies to the drive's definition. */
export interface DriveChanges2 {
  name?: string;
  size?: number;
  media?: "disk" | "cdrom";
  meta?: Record<string, string>;
  tags?: string[];
  avoid?: string[];
}

/** The API 2.0 reading of the field flags; API 1.0-only ones are refused (status 2, nothing sent). */
export function changesFromFlags2(flags: FieldFlags, rawArgs: string[]): DriveChanges2 {
  for (const [flag, value] of [
    ["claim-type", flags["claim-type"]],
    ["readers", flags.readers],
    ["encryption", flags.encryption],
  ] as const) {
    if (value !== undefined)
      throw new UsageError(
        `--${flag} is API 1.0 only (API 2.0 has no such drive field; pass --api 1 for an API 1.0 cloud)`,
      );
  }
  if (flags.tier !== undefined) {
    throw new UsageError(
      "--tier is API 1.0 only: API 2.0 storage types (storage_type, e.g. dssd) are not the 1.0 tiers; pass --api 1 for an API 1.0 cloud",
    );
  }
  // name, size, tags: the same checks as API 1.0
  const { "claim-type": _c, readers: _r, encryption: _e, tier: _t, media: _m, avoid: _a, ...common } = flags;
  const fields = fieldsFromFlags(common, []);
  const changes: DriveChanges2 = {};
  if (fields.name !== undefined) changes.name = fields.name;
  if (fields.size !== undefined) changes.size = Number(fields.size);
  if (fields.tags !== undefined) changes.tags = fields.tags.split(" ").filter(Boolean);
  if (flags.media !== undefined) {
    if (flags.media !== "disk" && flags.media !== "cdrom")
      throw new UsageError(`invalid --media '${flags.media}': expected disk or cdrom`);
    changes.media = flags.media;
  }
  if (flags.avoid !== undefined) changes.avoid = uuidList(flags.avoid, "--avoid");
  const meta = metaPairs(rawArgs);
  if (meta.length > 0) changes.meta = Object.fromEntries(meta);
  return changes;
}
