// The `schema/` answers of the emulated API 2.0 resources (`drives/schema/`, `libdrives/schema/`,
// `snapshots/schema/`): each field's type, whether it is required or read-only, its choices, the
// page size and the filters, in the shape CloudSigma's schemas have. They describe what this
// emulator checks and shows.
import type { Json } from "./drive-view.ts";
import { DEFAULT_LIMIT } from "./api2-common.ts";

type FieldType = "string" | "integer" | "boolean" | "list" | "dict" | "related" | "datetime";

interface Field {
  type: FieldType;
  help: string;
  required?: boolean;
  readonly?: boolean;
  choices?: string[];
  default?: unknown;
}

const STORAGE_TYPES = ["magnetic", "ssd", "dssd", "zadara", "nvme", "local_nvme"];

function schema(fields: Record<string, Field>, filtering: Record<string, string>, readOnly: boolean): Json {
  const methods = readOnly ? ["get"] : ["get", "put", "delete", "post"];
  return {
    allowed_detail_http_methods: readOnly ? ["get"] : ["get", "put", "delete"],
    allowed_list_http_methods: methods,
    default_format: "application/json",
    default_limit: DEFAULT_LIMIT,
    fields: Object.fromEntries(
      Object.entries(fields).map(([name, field]) => [
        name,
        {
          ...(field.choices ? { choices: field.choices } : {}),
          default: field.default ?? "No default provided.",
          help_text: field.help,
          readonly: field.readonly ?? false,
          required: field.required ?? false,
          type: field.type,
        },
      ]),
    ),
    filtering,
    ordering: ["uuid", "name"],
  };
}

const DRIVE_FIELDS: Record<string, Field> = {
  affinities: { type: "list", help: "Affinities of the drive's storage", default: [] },
  allow_multimount: { type: "boolean", help: "Whether several servers may mount it", default: false },
  jobs: { type: "related", help: "Background jobs of the drive", readonly: true, required: true },
  licenses: { type: "related", help: "Licenses the drive carries", default: [] },
  media: { type: "string", help: "disk or cdrom", required: true, choices: ["cdrom", "disk"], default: null },
  meta: { type: "dict", help: "Key-value pairs the user attaches", default: {} },
  mounted_on: { type: "related", help: "Servers that mount the drive", readonly: true },
  name: { type: "string", help: "The drive's name", required: true, default: null },
  owner: { type: "related", help: "The drive's owner", readonly: true, default: null },
  resource_uri: { type: "string", help: "The drive's path", readonly: true, required: true },
  runtime: { type: "related", help: "Runtime information (storage, snapshots)", readonly: true },
  size: { type: "integer", help: "Size in bytes", required: true, default: null },
  snapshots: { type: "related", help: "Snapshots of the drive", readonly: true },
  status: { type: "string", help: "Lifecycle status", readonly: true, required: true },
  storage_type: { type: "string", help: "Storage the drive lives on, fixed at creation", choices: STORAGE_TYPES },
  tags: { type: "related", help: "Tags of the drive" },
  uuid: { type: "string", help: "The drive's UUID", readonly: true, required: true, default: null },
};

const NAME_FILTERS = { name: "exact", name__contains: "exact", tag: "exact", uuid: "exact" };

export const DRIVE_SCHEMA = schema(DRIVE_FIELDS, NAME_FILTERS, false);

export const LIBDRIVE_SCHEMA = schema(
  {
    ...DRIVE_FIELDS,
    arch: { type: "string", help: "32 or 64", required: true },
    category: { type: "list", help: "What the image is for" },
    description: { type: "string", help: "What the image holds" },
    distribution: { type: "string", help: "The operating system's distribution" },
    favourite: { type: "boolean", help: "Whether it is a favourite", required: true },
    image_type: { type: "string", help: "preinst (installed system) or install (installation CD)", required: true },
    install_notes: { type: "string", help: "How to use the image" },
    os: { type: "string", help: "linux, windows, other", required: true },
    paid: { type: "boolean", help: "Whether it carries licenses to pay for", required: true },
    url: { type: "string", help: "Where the image comes from" },
    version: { type: "string", help: "The system's version" },
  },
  {
    arch: "exact",
    category: "exact",
    distribution: "exact",
    image_type: "exact",
    name: "exact",
    name__icontains: "exact",
    os: "exact",
    uuid: "exact",
    version: "exact",
  },
  true,
);

export const SNAPSHOT_SCHEMA = schema(
  {
    allocated_size: { type: "integer", help: "Bytes the snapshot occupies (null while it is made)", readonly: true },
    drive: { type: "related", help: "The drive it was taken of", required: true },
    meta: { type: "dict", help: "Key-value pairs the user attaches", default: {} },
    name: { type: "string", help: "The snapshot's name (default: DRIVE__YYYY-MM-DD__HH_MM_SS)" },
    owner: { type: "related", help: "The snapshot's owner", readonly: true },
    resource_uri: { type: "string", help: "The snapshot's path", readonly: true, required: true },
    status: { type: "string", help: "creating, then available", readonly: true, required: true },
    tags: { type: "related", help: "Tags of the snapshot" },
    timestamp: { type: "string", help: "When it was taken", readonly: true, required: true },
    uuid: { type: "string", help: "The snapshot's UUID", readonly: true, required: true },
  },
  { ...NAME_FILTERS, drive: "exact" },
  false,
);
