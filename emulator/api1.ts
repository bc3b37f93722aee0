// The API 1.0 (ElasticStack KEY VALUE) drive calls of the emulator, on the core's drive map:
// list, info (one, all, full), create, set, destroy, image (asynchronous, gzip/gunzip on the way),
// read (up to 4M), write (raw or gzip, never chunked). A bodyless POST on a read-only call is
// answered as the GET (the vendor's elastichosts.sh POSTs every call). Errors are ElasticStack's:
// `errors:KIND message` with X-Elastic-Error.
import { ftruncateSync, writeSync } from "node:fs";
import { Readable } from "node:stream";
import zlib from "node:zlib";
import { formatRecord, formatRecords, parseRecord, type KvRecord } from "../lib/kv.ts";
import { isUuid } from "../lib/uuid.ts";
import { elasticError } from "./errors.ts";
import type { DriveStub, StubDrive } from "./server.ts";

const MAX_READ = 4 * 1024 * 1024;
const SIZE = /^(\d+)([kKMGT]?)$/;
const SHIFT: Record<string, number> = { "": 0, k: 10, K: 10, M: 20, G: 30, T: 40 };
// `tier` (disk or ssd): the vendor's upload tool puts `tier disk` (or `-t ssd`) in every create
const CREATE_FIELDS = new Set(["name", "size", "claim:type", "readers", "tags", "avoid", "encryption:cipher", "tier"]);
const TIERS = new Set(["disk", "ssd"]);
const SET_FIELDS = new Set(["name", "size", "claim:type", "readers", "tags"]);

function parseStubSize(text: string | undefined): number | undefined {
  const match = SIZE.exec(text ?? "");
  if (!match) return undefined;
  const value = Number(match[1]) * 2 ** (SHIFT[match[2] ?? ""] ?? 0);
  return Number.isSafeInteger(value) ? value : undefined;
}

const kvAnswer = (record: KvRecord | KvRecord[]) =>
  new Response(
    Array.isArray(record) ? formatRecords(record, { escape: true }) : formatRecord(record, { escape: true }),
    { headers: { "content-type": "text/plain" } },
  );

const notFound = (what: string) =>
  elasticError(404, "missing", `Drive ${what} could not be found. Please re-validate your entry.`);

const unexpected = () => new Response("stub: unexpected request\n", { status: 418 });

export class Api1Routes {
  constructor(readonly stub: DriveStub) {}

  /** The 1.0 KEY VALUE info of a drive (`full`: imaging as a percentage). */
  info(drive: StubDrive, full: boolean): KvRecord {
    const record: KvRecord = {
      ...drive.fields,
      drive: drive.uuid,
      size: String(drive.size),
      status: "active",
      user: this.stub.user,
      "read:bytes": drive.fields["read:bytes"] ?? "0",
      "write:bytes": drive.fields["write:bytes"] ?? "0",
    };
    if (drive.imaging) {
      const percent = Math.floor((drive.imaging.done / Math.max(1, drive.imaging.total)) * 100);
      record.imaging = drive.imaging.queued ? "queued" : full ? `${percent}%` : "true";
    }
    return record;
  }

  /** Answer a path outside /api/2.0/: the 1.0 drive calls, 418 for anything else. */
  async route(request: Request, path: string): Promise<Response> {
    if (!path.startsWith("/drives/")) return unexpected();
    if (!this.stub.authorised(request)) {
      return elasticError(401, "auth", "Authentication failed. Please check your user UUID and API key.", {
        "www-authenticate": 'Basic realm="drivekit stub"',
      });
    }
    const parts = path.slice("/drives/".length).split("/").filter(Boolean);
    const method = request.method;
    const expect = (wanted: string) =>
      method === wanted ? undefined : elasticError(405, "method", `${method} is not allowed here; use ${wanted}`);
    // the vendor's elastichosts.sh sends every call as a POST: a bodyless POST on a read-only call is answered as the GET
    const expectRead = async () => {
      if (method === "GET") return undefined;
      if (method === "POST" && (await request.arrayBuffer()).byteLength === 0) return undefined;
      return elasticError(405, "method", `${method} is not allowed here; use GET (or a POST without a body)`);
    };
    const drives = this.stub.drives;
    const [first, action, ...rest] = parts;
    if (first === "list" && parts.length === 1)
      return (await expectRead()) ?? new Response(`${[...drives.keys()].join("\n")}\n`);
    if (first === "info" && parts.length === 1)
      return (await expectRead()) ?? kvAnswer([...drives.values()].map((d) => this.info(d, false)));
    if (first === "create" && parts.length === 1) return expect("POST") ?? (await this.create(request));
    if (!first || !action) return unexpected();
    const drive = isUuid(first) ? drives.get(first) : undefined;
    switch (action) {
      case "info":
        if (rest.length > 1 || (rest.length === 1 && rest[0] !== "full")) break;
        return (await expectRead()) ?? (drive ? kvAnswer(this.info(drive, rest[0] === "full")) : notFound(first));
      case "set":
        if (rest.length) break;
        return expect("POST") ?? (drive ? await this.set(request, drive) : notFound(first));
      case "destroy":
        if (rest.length) break;
        return expect("POST") ?? (drive ? this.destroy(drive) : notFound(first));
      case "image":
        if (rest.length < 1 || rest.length > 2) break;
        return expect("POST") ?? (drive ? this.image(drive, rest[0] as string, rest[1]) : notFound(first));
      case "read":
        if (rest.length !== 2) break;
        return (await expectRead()) ?? (drive ? this.read(drive, rest[0], rest[1]) : notFound(first));
      case "write":
        if (rest.length > 1) break;
        return expect("POST") ?? (drive ? await this.write(request, drive, rest[0] ?? "0") : notFound(first));
    }
    return unexpected();
  }

  private checkFields(fields: KvRecord, allowed: Set<string>): Response | undefined {
    for (const [key, value] of Object.entries(fields)) {
      if (!allowed.has(key) && !key.startsWith("user:"))
        return elasticError(400, "usage", `Unknown or read-only field '${key}'`);
      if (key === "claim:type" && value !== "exclusive" && value !== "shared")
        return elasticError(400, "usage", `Invalid claim:type '${value}'`);
      if (key === "encryption:cipher" && value !== "none" && value !== "aes-xts-plain")
        return elasticError(400, "usage", `Invalid encryption:cipher '${value}'`);
      if ((key === "readers" || key === "avoid") && value.split(" ").some((item) => !isUuid(item)))
        return elasticError(400, "usage", `Invalid ${key} '${value}'`);
      if (key === "tier" && !TIERS.has(value))
        return elasticError(400, "usage", `Invalid tier '${value}': expected disk or ssd`);
    }
    if (fields.size !== undefined && !parseStubSize(fields.size))
      return elasticError(400, "usage", `Invalid size '${fields.size}'`);
    return undefined;
  }

  private async create(request: Request): Promise<Response> {
    const fields = parseRecord(await request.text());
    if (!fields.name || !fields.size) return elasticError(400, "usage", "Drive name and size are required");
    const bad = this.checkFields(fields, CREATE_FIELDS);
    if (bad) return bad;
    const { size, avoid: _avoid, ...rest } = fields;
    const drive = this.stub.addDrive(parseStubSize(size) as number, rest);
    return kvAnswer(this.info(drive, false));
  }

  private async set(request: Request, drive: StubDrive): Promise<Response> {
    const fields = parseRecord(await request.text());
    const bad = this.checkFields(fields, SET_FIELDS);
    if (bad) return bad;
    const { size, ...rest } = fields;
    if (size !== undefined) {
      drive.size = parseStubSize(size) as number;
      ftruncateSync(drive.fd, drive.size);
    }
    Object.assign(drive.fields, rest);
    return kvAnswer(this.info(drive, false));
  }

  private destroy(drive: StubDrive): Response {
    const running = this.stub.serversOf(drive.uuid).some((server) => server.status === "running");
    if (drive.fields.claimed || running) return elasticError(409, "busy", `Drive ${drive.uuid} is in use by a server`);
    if (drive.imaging) return elasticError(409, "busy", `Drive ${drive.uuid} is imaging`);
    this.stub.removeDrive(drive);
    return new Response(null, { status: 204 });
  }

  private read(drive: StubDrive, offsetText: string | undefined, sizeText: string | undefined): Response {
    const offset = parseStubSize(offsetText);
    const size = parseStubSize(sizeText);
    if (offset === undefined || size === undefined) return elasticError(400, "usage", "Invalid offset or size");
    if (size > MAX_READ) return elasticError(400, "usage", `Size ${size} exceeds the maximum of 4M for a single read`);
    if (offset > drive.size) return elasticError(400, "usage", `Offset ${offset} is beyond the end of the drive`);
    const length = Math.max(0, Math.min(size, drive.size - offset));
    drive.fields["read:bytes"] = String(Number(drive.fields["read:bytes"] ?? 0) + length);
    // a slice of the drive's file, as the 2.0 download serves it: Bun.serve sends it from the file
    // (sendfile over plain http) instead of from a copy read into memory for each read
    return new Response(Bun.file(drive.path).slice(offset, offset + length), {
      headers: { "content-type": "application/octet-stream", "content-length": String(length) },
    });
  }

  private async write(request: Request, drive: StubDrive, offsetText: string): Promise<Response> {
    if ((request.headers.get("transfer-encoding") ?? "").toLowerCase().includes("chunked")) {
      await request.body?.cancel();
      return elasticError(400, "usage", "Transfer-Encoding: chunked is not supported; send a Content-Length");
    }
    if (request.headers.get("content-length") === null) return elasticError(411, "usage", "Content-Length required");
    const offset = parseStubSize(offsetText);
    if (offset === undefined) return elasticError(400, "usage", `Invalid offset '${offsetText}'`);
    const raw = await this.stub.readBody(request);
    if (!raw) return elasticError(400, "usage", "Body too large");
    const encoding = (request.headers.get("content-encoding") ?? "identity").toLowerCase();
    let bytes: Uint8Array;
    if (encoding === "gzip") {
      try {
        bytes = Bun.gunzipSync(raw as Uint8Array<ArrayBuffer>);
      } catch {
        return elasticError(400, "usage", "Body is not valid gzip");
      }
    } else if (encoding === "identity") {
      bytes = raw;
    } else {
      return elasticError(400, "usage", `Unsupported Content-Encoding '${encoding}'`);
    }
    if (offset + bytes.length > drive.size) {
      return elasticError(
        507,
        "full",
        `Write of ${bytes.length} bytes at ${offset} goes beyond the end of drive ${drive.uuid} (${drive.size} bytes)`,
      );
    }
    writeSync(drive.fd, bytes, 0, bytes.length, offset);
    drive.fields["write:bytes"] = String(Number(drive.fields["write:bytes"] ?? 0) + bytes.length);
    return new Response(null, { status: 204 });
  }

  private image(target: StubDrive, sourceId: string, conversion: string | undefined): Response {
    const source = isUuid(sourceId) ? this.stub.drives.get(sourceId) : undefined;
    if (!source) return notFound(sourceId);
    if (source === target) return elasticError(400, "usage", "A drive cannot be imaged from itself");
    if (conversion !== undefined && conversion !== "gzip" && conversion !== "gunzip") {
      return elasticError(400, "usage", `Unknown conversion '${conversion}'`);
    }
    if (target.imaging || target.fields.claimed) return elasticError(409, "busy", `Drive ${target.uuid} is busy`);
    target.imaging = { done: 0, total: source.size, queued: false };
    this.stub.track(
      this.runImaging(target, source, conversion).finally(() => {
        target.imaging = undefined;
      }),
    );
    return new Response(null, { status: 204 });
  }

  /** Copy in steps, so progress can be watched; gzip or gunzip on the way. */
  private async runImaging(target: StubDrive, source: StubDrive, conversion: string | undefined): Promise<void> {
    const stub = this.stub;
    // about a hundred steps whatever the size, so a large sparse drive images in seconds
    const step =
      stub.options.imagingStepBytes ??
      Math.min(64 * 1024 * 1024, Math.max(4 * 1024 * 1024, Math.ceil(source.size / 100 / 4096) * 4096));
    const pause = stub.options.imagingStepMs ?? 20;
    const imaging = target.imaging as NonNullable<StubDrive["imaging"]>;
    async function* sourceSteps(): AsyncGenerator<Uint8Array> {
      for (let offset = 0; offset < source.size; offset += step) {
        if (stub.stopped || !stub.drives.has(source.uuid)) return;
        yield stub.readDrive(source.uuid, offset, step);
        imaging.done = Math.min(source.size, offset + step);
        if (pause > 0) await Bun.sleep(pause);
      }
    }
    const output: AsyncIterable<Uint8Array> = conversion
      ? Readable.from(sourceSteps()).pipe(conversion === "gzip" ? zlib.createGzip({ level: 1 }) : zlib.createGunzip())
      : sourceSteps();
    let at = 0;
    try {
      for await (const chunk of output) {
        const room = target.size - at;
        if (room <= 0 || !stub.drives.has(target.uuid)) break;
        const piece = chunk.length > room ? chunk.subarray(0, room) : chunk;
        writeSync(target.fd, piece, 0, piece.length, at);
        at += piece.length;
      }
    } catch {
      // a source that is not gzip stops a gunzip imaging where it fails, as a real server would leave it
    }
    // the rest of the target reads as zeros, as after a fresh copy
    if (stub.drives.has(target.uuid) && at < target.size) {
      ftruncateSync(target.fd, at);
      ftruncateSync(target.fd, target.size);
    }
  }
}
