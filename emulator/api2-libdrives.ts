// The emulator's drives library (API 2.0 `libdrives/`): a few library drives seeded at start, each
// a small sparse file with a little data in it, read only. `libdrives/` and `libdrives/detail/`
// (the same full objects, filters arch, category, distribution, image_type, name,
// name__icontains, os, uuid, version), `libdrives/{uuid}/`, `libdrives/schema/`, and
// `libdrives/{uuid}/action/?do=clone` (also `drives/{uuid}/action/?do=clone`, emulator/api2-drives.ts)
// into a drive of one's own. `drives/{uuid}/` shows a library drive too, without owner; drive lists
// do not.
import { closeSync, writeSync } from "node:fs";
import type { Api2Drives } from "./api2-drives.ts";
import { allow, COMMON_FILTERS, type Filters, missing, page, partsUnder } from "./api2-common.ts";
import { LIBDRIVE_SCHEMA } from "./api2-schemas.ts";
import { driveView, type Json, reference } from "./drive-view.ts";
import type { DriveStub, StubDrive } from "./server.ts";

const MiB = 1024 * 1024;

interface Seed {
  uuid: string;
  name: string;
  media: "disk" | "cdrom";
  size: number;
  library: Json;
}

const WINDOWS_LICENSE = {
  amount: 1,
  license: {
    burstable: true,
    long_name: "Windows Server",
    name: "msft_windows_server",
    resource_uri: "/api/2.0/licenses/12/",
    type: "instance",
    user_metric: "smp",
  },
  user: null,
};

/** The library every emulator starts with (fixed UUIDs, so a test or a user can name them). */
export const LIBRARY: readonly Seed[] = [
  {
    uuid: "6d3b2c1e-8f4a-4b5c-9d7e-1a2b3c4d5e01",
    name: "Debian 12 Server (emulated)",
    media: "disk",
    size: 32 * MiB,
    library: {
      arch: "64",
      category: ["general", "webserver"],
      description: "A small sparse image standing for Debian 12, pre-installed",
      distribution: "Debian",
      image_type: "preinst",
      install_notes: "Clone it, then attach the clone to a server",
      os: "linux",
      paid: false,
      licenses: [],
      url: "",
      version: "12",
    },
  },
  {
    uuid: "6d3b2c1e-8f4a-4b5c-9d7e-1a2b3c4d5e02",
    name: "Windows Server 2022 (emulated)",
    media: "disk",
    size: 48 * MiB,
    library: {
      arch: "64",
      category: ["general"],
      description: "A small sparse image standing for a licensed, pre-installed Windows Server",
      distribution: null,
      image_type: "preinst",
      install_notes: "Clone it; servers using it pay for its license",
      os: "windows",
      paid: true,
      licenses: [WINDOWS_LICENSE],
      url: "",
      version: "2022",
    },
  },
  {
    uuid: "6d3b2c1e-8f4a-4b5c-9d7e-1a2b3c4d5e03",
    name: "Debian 12 netinst CD (emulated)",
    media: "cdrom",
    size: 8 * MiB,
    library: {
      arch: "64",
      category: ["other"],
      description: "A small sparse image standing for an installation CD",
      distribution: "Debian",
      image_type: "install",
      install_notes: "Attach it to a server as a CD",
      os: "linux",
      paid: false,
      licenses: [],
      url: "",
      version: "12",
    },
  },
];

/** The data each library drive holds: a label at its start and a few pieces spread over it. */
export function libraryBytes(seed: Seed): { offset: number; bytes: Uint8Array }[] {
  const label = new TextEncoder().encode(`drivekit emulator library drive: ${seed.name}\n`);
  const piece = (offset: number) => {
    const bytes = new Uint8Array(4096);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (offset / 4096 + i * 31 + seed.size) & 0xff;
    return { offset, bytes };
  };
  return [{ offset: 0, bytes: label }, piece(MiB), piece(seed.size / 2), piece(seed.size - 4096)];
}

const LIBRARY_FILTERS: Filters = {
  ...COMMON_FILTERS,
  ...Object.fromEntries(
    ["arch", "distribution", "image_type", "os", "version"].map((key) => [
      key,
      (item: Json, value: string) => String(item[key]) === value,
    ]),
  ),
  category: (item, value) => Array.isArray(item.category) && item.category.includes(value),
};

export class Api2LibDrives {
  readonly drives = new Map<string, StubDrive>();

  constructor(
    readonly stub: DriveStub,
    readonly driveCalls: Api2Drives,
  ) {}

  /** Make the library's files (sparse: a few KiB of data each). */
  seed(): void {
    for (const seed of LIBRARY) {
      const { path, fd } = this.stub.createFile(seed.uuid, seed.size);
      for (const { offset, bytes } of libraryBytes(seed)) writeSync(fd, bytes, 0, bytes.length, offset);
      this.drives.set(seed.uuid, {
        uuid: seed.uuid,
        size: seed.size,
        path,
        fd,
        fields: { name: seed.name, media: seed.media },
        library: seed.library,
      });
    }
  }

  /** The library object `libdrives/` shows. */
  view(drive: StubDrive): Json {
    const common = driveView(this.stub, drive);
    return {
      affinities: common.affinities,
      allow_multimount: common.allow_multimount,
      favourite: false,
      jobs: [],
      media: common.media,
      meta: common.meta,
      mounted_on: common.mounted_on,
      name: common.name,
      owner: null,
      resource_uri: reference("libdrives", drive.uuid).resource_uri,
      size: drive.size,
      status: common.status,
      storage_type: null,
      tags: [],
      uuid: drive.uuid,
      ...drive.library,
    };
  }

  async route(request: Request, path: string): Promise<Response | undefined> {
    const parts = partsUnder(path, "libdrives", 3);
    if (!parts) return undefined;
    const method = request.method;
    const url = new URL(request.url);
    const [, id, action] = parts;
    if (parts.length === 1 || id === "detail")
      return (
        allow(method, ["GET"]) ??
        page(
          url,
          [...this.drives.values()].map((d) => this.view(d)),
          LIBRARY_FILTERS,
        )
      );
    if (id === "schema" && parts.length === 2) return allow(method, ["GET"]) ?? Response.json(LIBDRIVE_SCHEMA);
    const drive = this.drives.get((id as string).toLowerCase());
    if (parts.length === 2)
      return allow(method, ["GET"]) ?? (drive ? Response.json(this.view(drive)) : missing(id as string));
    if (action !== "action" || url.searchParams.get("do") !== "clone") return undefined;
    return allow(method, ["POST"]) ?? (drive ? this.driveCalls.clone(request, url, drive) : missing(id as string));
  }

  /** Close the library's files (they live in the emulator's folder, removed at stop). */
  close(): void {
    const drives = [...this.drives.values()];
    // gone from the map first: a clone copying from one stops before its next read
    this.drives.clear();
    for (const drive of drives) closeSync(drive.fd);
  }
}
