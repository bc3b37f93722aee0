// A minimal model of API 2.0 servers, for what they do to drives: a server holds drives (they show
// `mounted`, with the server in `mounted_on`); while it runs, its drives refuse deletion and
// resizing and ignore a size change by PUT. No CPU, network or console is emulated.
// - `servers/` (short objects), `servers/detail/`, `servers/{uuid}/`: GET;
// - create `{name, cpu, mem, vnc_password, drives?: [{drive, device, dev_channel, boot_order}], meta?,
//   tags?}` bare, listed or in `{"objects": [...]}`: 201, `stopped`; a library drive other than a
//   CD cannot be attached (clone it first);
// - PUT (on a running server only name, meta and tags change), DELETE (refused while running;
//   `?recurse=all_drives|disks|cdroms` deletes those drives too);
// - `action/?do=start|stop|shutdown`: 202 `{action, result, uuid}`; the wrong state is a 403
//   `permission` error, as CloudSigma answers it.
// Tests mount a drive without HTTP with DriveStub.mount().
import { isUuid } from "../lib/uuid.ts";
import type { Api2Drives } from "./api2-drives.ts";
import {
  allow,
  COMMON_FILTERS,
  invalid,
  missing,
  objectOf,
  page,
  partsUnder,
  readJson,
  refused,
  uuidOf,
  readDefinitions,
} from "./api2-common.ts";
import { type Json, reference } from "./drive-view.ts";
import type { DriveStub, StubServer } from "./server.ts";

const DEVICES = new Set(["virtio", "ide", "sata", "scsi"]);
const RECURSE = new Set(["all_drives", "disks", "cdroms"]);

type Attachment = StubServer["drives"][number];

export class Api2Servers {
  constructor(
    readonly stub: DriveStub,
    readonly driveCalls: Api2Drives,
  ) {}

  view(server: StubServer): Json {
    const { meta = {}, tags = [], ...rest } = server.definition;
    return {
      context: true,
      cpus_instead_of_cores: false,
      enable_numa: false,
      hypervisor: "kvm",
      jobs: [],
      nics: [],
      permissions: [],
      pubkeys: [],
      requirements: [],
      smp: 1,
      ...rest,
      drives: server.drives.map((d) => ({ ...d, drive: reference("drives", d.drive), runtime: null })),
      meta,
      name: server.name,
      owner: reference("user", this.stub.user),
      resource_uri: `/api/2.0/servers/${server.uuid}/`,
      runtime: server.status === "running" ? { status: "running" } : null,
      status: server.status,
      tags,
      uuid: server.uuid,
    };
  }

  async route(request: Request, path: string): Promise<Response | undefined> {
    const parts = partsUnder(path, "servers", 3);
    if (!parts) return undefined;
    const method = request.method;
    const url = new URL(request.url);
    const [, id, action] = parts;
    const all = () => [...this.stub.servers.values()].map((server) => this.view(server));
    if (parts.length === 1) {
      if (method === "POST") return this.create(request);
      return (
        allow(method, ["GET", "POST"]) ??
        page(url, all(), COMMON_FILTERS, (full) => ({
          name: full.name,
          owner: full.owner,
          resource_uri: full.resource_uri,
          runtime: full.runtime,
          status: full.status,
          uuid: full.uuid,
        }))
      );
    }
    if (parts.length === 2 && id === "detail") return allow(method, ["GET"]) ?? page(url, all(), COMMON_FILTERS);
    if (!id || !isUuid(id)) return undefined;
    const server = this.stub.servers.get(id.toLowerCase());
    if (parts.length === 2) {
      const wrong = allow(method, ["GET", "PUT", "DELETE"]);
      if (wrong) return wrong;
      if (!server) return missing(id);
      if (method === "GET") return Response.json(this.view(server));
      if (method === "PUT") return this.update(request, server);
      return this.remove(server, url.searchParams.get("recurse"));
    }
    const todo = url.searchParams.get("do") ?? "";
    if (action !== "action" || !["start", "stop", "shutdown"].includes(todo)) return undefined;
    const wrong = allow(method, ["POST"]);
    if (wrong) return wrong;
    if (!server) return missing(id);
    await request.arrayBuffer();
    return this.act(server, todo);
  }

  /** A server definition: `needed` fields present, drives that exist and may be attached. */
  private definition(input: Json, needed: string[]): Partial<StubServer> | Response {
    for (const key of needed) if (input[key] === undefined) return invalid(`${key}: this field is required`, key);
    const out: Partial<StubServer> & { definition: Record<string, unknown> } = { definition: {} };
    if (input.name !== undefined) {
      if (typeof input.name !== "string" || input.name.trim() === "")
        return invalid("name: a non-empty string", "name");
      out.name = input.name;
    }
    for (const key of ["cpu", "mem", "smp"]) {
      const value = input[key];
      if (value === undefined) continue;
      const number = typeof value === "string" && /^\d+$/.test(value) ? Number(value) : value;
      if (typeof number !== "number" || !Number.isSafeInteger(number) || number <= 0)
        return invalid(`${key}: a positive integer`, key);
      out.definition[key] = number;
    }
    if (input.vnc_password !== undefined) {
      if (typeof input.vnc_password !== "string") return invalid("vnc_password: a string", "vnc_password");
      out.definition.vnc_password = input.vnc_password;
    }
    if (input.meta !== undefined) {
      const meta = objectOf(input.meta);
      if (!meta || Object.values(meta).some((value) => typeof value !== "string"))
        return invalid("meta: an object of strings", "meta");
      out.definition.meta = meta;
    }
    if (input.tags !== undefined) {
      if (!Array.isArray(input.tags)) return invalid("tags: a list", "tags");
      out.definition.tags = input.tags.map((tag) => uuidOf(tag) ?? tag);
    }
    if (input.drives !== undefined) {
      const drives = this.attachments(input.drives);
      if (drives instanceof Response) return drives;
      out.drives = drives;
    }
    return out;
  }

  private attachments(value: unknown): Attachment[] | Response {
    if (!Array.isArray(value)) return invalid("drives: a list of {drive, device, dev_channel, boot_order}", "drives");
    const out: Attachment[] = [];
    for (const [index, item] of value.entries()) {
      const given = objectOf(item);
      const uuid = given ? uuidOf(given.drive) : undefined;
      if (!given || !uuid) return invalid("drives: each needs the UUID of a drive", "drives");
      const drive = this.stub.drives.get(uuid);
      const library = drive ? undefined : this.driveCalls.library(uuid);
      if (!drive && !library) return invalid(`drives: no drive ${uuid}`, "drives");
      if (library && library.fields.media !== "cdrom")
        return refused(`Drive ${uuid} belongs to the drives library: clone it before attaching it to a server`);
      const device = given.device ?? "virtio";
      if (typeof device !== "string" || !DEVICES.has(device))
        return invalid("drives: device virtio, ide, sata or scsi", "drives");
      const channel = given.dev_channel ?? `0:${index}`;
      if (typeof channel !== "string" || !/^\d+:\d+$/.test(channel))
        return invalid("drives: dev_channel N:N", "drives");
      const order = given.boot_order ?? null;
      if (order !== null && (typeof order !== "number" || !Number.isSafeInteger(order)))
        return invalid("drives: boot_order an integer or null", "drives");
      out.push({ drive: uuid, device, dev_channel: channel, boot_order: order });
    }
    return out;
  }

  private async create(request: Request): Promise<Response> {
    const items = await readDefinitions(request, "server");
    if (items instanceof Response) return items;
    const checked: Partial<StubServer>[] = [];
    for (const item of items) {
      const definition = this.definition(item, ["name", "cpu", "mem", "vnc_password"]);
      if (definition instanceof Response) return definition;
      checked.push(definition);
    }
    const made = checked.map((definition) => {
      const server: StubServer = {
        uuid: crypto.randomUUID(),
        name: definition.name as string,
        status: "stopped",
        drives: definition.drives ?? [],
        definition: { meta: {}, tags: [], ...definition.definition },
      };
      this.stub.servers.set(server.uuid, server);
      return this.view(server);
    });
    return Response.json({ objects: made }, { status: 201 });
  }

  private async update(request: Request, server: StubServer): Promise<Response> {
    const { value, error } = await readJson(request);
    if (error) return error;
    const input = objectOf(value);
    if (!input) return invalid("Expected a server definition (an object)");
    const definition = this.definition(input, ["name", "cpu", "mem"]);
    if (definition instanceof Response) return definition;
    server.name = definition.name ?? server.name;
    const given = definition.definition ?? {};
    // a running server changes only its name, meta and tags: the rest is ignored
    if (server.status === "running") {
      for (const key of ["meta", "tags"]) if (given[key] !== undefined) server.definition[key] = given[key];
    } else {
      Object.assign(server.definition, given);
      if (definition.drives) server.drives = definition.drives;
    }
    return Response.json(this.view(server));
  }

  private remove(server: StubServer, recurse: string | null): Response {
    if (server.status === "running")
      return refused(`Cannot delete guest in state "${server.status}". Guest should be in state "stopped"`);
    if (recurse !== null && !RECURSE.has(recurse)) return invalid("recurse: all_drives, disks or cdroms", "recurse");
    const doomed = server.drives
      .map((d) => this.stub.drives.get(d.drive))
      .filter((drive) => drive !== undefined)
      .filter(
        (drive) =>
          recurse === "all_drives" || (drive.fields.media ?? "disk") === (recurse === "cdroms" ? "cdrom" : "disk"),
      );
    if (recurse !== null) {
      for (const drive of doomed) {
        const busy = this.driveCalls.busy(drive, "delete");
        if (busy) return busy;
      }
    }
    this.stub.servers.delete(server.uuid);
    if (recurse !== null) for (const drive of doomed) this.stub.removeDrive(drive);
    return new Response(null, { status: 204 });
  }

  private act(server: StubServer, action: string): Response {
    const wanted = action === "start" ? "stopped" : "running";
    if (server.status !== wanted) {
      const state = server.status === "running" ? "started" : "stopped";
      return refused(`Cannot ${action} guest in state "${state}". Guest should be in state "${wanted}"`);
    }
    if (action === "start") {
      for (const { drive } of server.drives) {
        const other = this.stub.serversOf(drive).find((holder) => holder !== server && holder.status === "running");
        const held = this.stub.drives.get(drive);
        if (other && held && held.fields.allow_multimount !== "true" && held.fields.media !== "cdrom")
          return refused(`Drive ${drive} is mounted on running server ${other.uuid} and does not allow multimount`);
      }
    }
    server.status = action === "start" ? "running" : "stopped";
    return Response.json({ action, result: "success", uuid: server.uuid }, { status: 202 });
  }
}
