// The emulator's API 2.0 chunked upload, as CloudSigma's own client (pycloudsigma) uses it:
// - `POST initupload/` `{"name", "size", "media"}` makes a drive in status `uploading` (its size
//   exactly as declared, as CloudSigma's own upload clients expect it back; rounded up to a KiB when
//   `roundToKiB` is set, the latitude the vendor's docstring allows ("up to a KiB"), for clients' tests).
// - `POST drives/UUID/action/?do=upload_chunk` `{"chunk_number", "chunk_size"}` answers a one-time
//   link (`{"link": "/api/2.0/upload/chunk/TOKEN/"}`) valid `linkTtlMs`, or 416 for a chunk held.
// - `POST` to the link (no credentials needed) takes the chunk's raw bytes, streamed to the drive
//   file a piece at a time, checked against the chunk grid: `n = max(1, size // chunk_size)`
//   chunks, each `chunk_size` bytes but the last, which runs to the end (up to one chunk larger).
// - When every chunk is held the drive goes `unmounted` (after `finishMs`, when set).
// Errors are JSON lists with X-REQUEST-ID; anything unexpected gets 418.
import { writeSync } from "node:fs";
import { isAllZero } from "../lib/bytes.ts";
import { isUuid } from "../lib/uuid.ts";
import { allow, avoidOf, readDefinitions } from "./api2-common.ts";
import type { Api2Drives } from "./api2-drives.ts";
import { driveView } from "./drive-view.ts";
import { api2Error } from "./errors.ts";
import type { DriveStub, StubDrive } from "./server.ts";

/** Where the one-time links point, under the API prefix. */
const LINK_PATH = "upload/chunk/";

export interface ChunkUploadOptions {
  /** Round a new drive's size up to a multiple of 1024 (default false: the exact size, which CloudSigma's upload clients check). */
  roundToKiB?: boolean;
  /** How long a link stays valid (default 5 minutes). */
  linkTtlMs?: number;
  /** Delay between the last chunk landing and the drive turning `unmounted` (default 0: at once). */
  finishMs?: number;
  /** The clock links expire by (tests move it instead of waiting). */
  now?: () => number;
}

interface UploadSession {
  /** The exact byte size the client declared: the chunk grid is cut on it. */
  size: number;
  /** Fixed by the first upload_chunk call. */
  chunkSize?: number;
  held: Set<number>;
}

interface Link {
  drive: string;
  chunk: number;
  expires: number;
}

/** What the link side received, for tests: which chunk, how many bytes, the headers, the answer. */
export interface ChunkPost {
  drive: string;
  chunk: number;
  bytes: number;
  headers: Record<string, string>;
  status: number;
}

/** The byte range [start, end) of chunk `index` of `size` bytes in chunks of `chunkSize`. */
export function chunkRange(size: number, chunkSize: number, index: number): [number, number] {
  const count = Math.max(1, Math.floor(size / chunkSize));
  return [index * chunkSize, index === count - 1 ? size : (index + 1) * chunkSize];
}

export class ChunkUploadStub {
  /** Every POST the link side received, in order. */
  readonly chunkPosts: ChunkPost[] = [];
  private readonly sessions = new Map<string, UploadSession>();
  private readonly links = new Map<string, Link>();

  constructor(
    readonly stub: DriveStub,
    /** The drive calls: how a definition is checked, where a new drive is placed. */
    readonly drives: Api2Drives,
    readonly options: ChunkUploadOptions = {},
  ) {}

  private now(): number {
    return (this.options.now ?? Date.now)();
  }

  /** Start an upload as any client would (tests: "another client"); returns the new drive. */
  begin(name: string, size: number, media = "disk"): StubDrive {
    const rounded = this.options.roundToKiB ? Math.ceil(size / 1024) * 1024 : size;
    const drive = this.stub.addDrive(rounded, { name, media });
    drive.status = "uploading";
    this.sessions.set(drive.uuid, { size, held: new Set() });
    return drive;
  }

  /** Mark chunks as held without their bytes going through HTTP (tests: "already uploaded"). */
  hold(uuid: string, chunkSize: number, chunks: number[], bytes?: Uint8Array): void {
    const session = this.sessions.get(uuid);
    if (!session) throw new Error(`no upload into drive ${uuid}`);
    session.chunkSize ??= chunkSize;
    for (const index of chunks) {
      const [start, end] = chunkRange(session.size, chunkSize, index);
      if (bytes) this.stub.writeDrive(uuid, start, bytes.subarray(start, end));
      session.held.add(index);
    }
    this.finishIfComplete(uuid, session);
  }

  /** Forget every upload and link (a restarted server). */
  forget(): void {
    this.sessions.clear();
    this.links.clear();
  }

  /** Chunks held so far for a drive's upload. */
  held(uuid: string): number[] {
    return [...(this.sessions.get(uuid)?.held ?? [])].sort((a, b) => a - b);
  }

  /** True for the link path (which needs no credentials). */
  isLinkPath(path: string): boolean {
    return path.startsWith(LINK_PATH);
  }

  /**
   * `POST initupload/` with `{name, size, media}`: bare (the upload client), listed, or wrapped in
   * `{"objects": [...]}` (the resource client); `size` a number or a string of digits; `?avoid=`.
   */
  async initUpload(request: Request, url: URL): Promise<Response> {
    const wrong = allow(request.method, ["POST"]);
    if (wrong) return wrong;
    const avoid = avoidOf(url);
    if (avoid instanceof Response) return avoid;
    const definitions = await readDefinitions(request, "drive");
    if (definitions instanceof Response) return definitions;
    const checked: { name: string; size: number; media: string }[] = [];
    for (const item of definitions) {
      const definition = this.drives.definition(item, ["name", "size"], { min: 1, max: this.drives.maxSize });
      if (definition instanceof Response) return definition;
      const { name, media = "disk" } = definition.fields;
      checked.push({ name: name as string, size: definition.size as number, media });
    }
    const drives = checked.map(({ name, size, media }) => {
      const drive = this.begin(name, size, media);
      drive.host = this.drives.storageHost(avoid);
      return driveView(this.stub, drive);
    });
    return Response.json({ objects: drives }, { status: 201 });
  }

  /** `POST drives/UUID/action/?do=upload_chunk`. */
  async uploadChunk(request: Request, uuid: string): Promise<Response> {
    if (request.method !== "POST") return api2Error(405, "method", "use POST");
    const drive = this.stub.drives.get(uuid);
    if (!drive) return api2Error(404, "notexist", `Object with uuid ${uuid} does not exist`);
    const session = this.sessions.get(uuid);
    if (!session) return api2Error(409, "permission", `Drive ${uuid} was not made for an upload (no initupload)`);
    let body: { chunk_number?: unknown; chunk_size?: unknown };
    try {
      body = (await request.json()) as typeof body;
    } catch {
      return api2Error(400, "validation", "the body must be a JSON object {chunk_number, chunk_size}");
    }
    const { chunk_number: chunk, chunk_size: chunkSize } = body ?? {};
    if (typeof chunkSize !== "number" || !Number.isSafeInteger(chunkSize) || chunkSize <= 0)
      return api2Error(400, "validation", "chunk_size: a positive integer is required");
    if (session.chunkSize !== undefined && chunkSize !== session.chunkSize) {
      return api2Error(
        400,
        "validation",
        `chunk_size ${chunkSize} differs from ${session.chunkSize}, the size this upload started with`,
      );
    }
    const count = Math.max(1, Math.floor(session.size / chunkSize));
    if (typeof chunk !== "number" || !Number.isSafeInteger(chunk) || chunk < 0 || chunk >= count) {
      return api2Error(400, "validation", `chunk_number: expected 0 to ${count - 1}`);
    }
    session.chunkSize = chunkSize;
    if (session.held.has(chunk)) return api2Error(416, "validation", `Chunk ${chunk} is already uploaded`);
    const token = `${crypto.randomUUID()}${crypto.randomUUID()}`.replace(/-/g, "");
    this.links.set(token, { drive: uuid, chunk, expires: this.now() + (this.options.linkTtlMs ?? 5 * 60_000) });
    return Response.json({ link: `/api/2.0/${LINK_PATH}${token}/` });
  }

  /** `POST` to a one-time link: the chunk's bytes. */
  async receive(request: Request, path: string): Promise<Response> {
    const token = /^upload\/chunk\/([0-9a-f]{64})\/$/.exec(path)?.[1];
    const record: ChunkPost = {
      drive: "",
      chunk: -1,
      bytes: 0,
      headers: Object.fromEntries(request.headers),
      status: 0,
    };
    this.chunkPosts.push(record);
    const answer = (response: Response) => {
      record.status = response.status;
      return response;
    };
    const cancel = () => request.body?.cancel().catch(() => undefined);
    if (request.method !== "POST") {
      await cancel();
      return answer(api2Error(405, "method", "use POST"));
    }
    const link = token ? this.links.get(token) : undefined;
    if (!token || !link) {
      await cancel();
      return answer(api2Error(404, "notexist", "No such upload link (each link serves one chunk, once)"));
    }
    this.links.delete(token); // one time, used or not
    record.drive = link.drive;
    record.chunk = link.chunk;
    if (this.now() > link.expires) {
      await cancel();
      return answer(api2Error(410, "expired", "The upload link has expired: ask for a new one"));
    }
    const drive = this.stub.drives.get(link.drive);
    const session = this.sessions.get(link.drive);
    if (!drive || !session || session.chunkSize === undefined) {
      await cancel();
      return answer(api2Error(404, "notexist", `Drive ${link.drive} is gone`));
    }
    const [start, end] = chunkRange(session.size, session.chunkSize, link.chunk);
    const expected = end - start;
    const lengthText = request.headers.get("content-length");
    if (lengthText === null || Number(lengthText) !== expected) {
      await cancel();
      return answer(
        api2Error(
          400,
          "validation",
          `chunk ${link.chunk} must be exactly ${expected} bytes with a Content-Length, not ${lengthText ?? "no length"}`,
        ),
      );
    }
    // streamed: each piece goes to the drive file as it arrives, all-zero pieces left as holes
    let received = 0;
    try {
      for await (const piece of request.body ?? new ReadableStream<Uint8Array>()) {
        if (received + piece.length > expected)
          return answer(api2Error(400, "validation", `chunk ${link.chunk} is longer than ${expected} bytes`));
        if (!isAllZero(piece)) writeSync(drive.fd, piece, 0, piece.length, start + received);
        received += piece.length;
      }
    } catch (error) {
      return answer(
        api2Error(400, "validation", `connection lost after ${received} bytes: ${(error as Error).message}`),
      );
    }
    record.bytes = received;
    if (received !== expected)
      return answer(api2Error(400, "validation", `chunk ${link.chunk}: ${received} of ${expected} bytes arrived`));
    session.held.add(link.chunk);
    this.finishIfComplete(link.drive, session);
    return answer(new Response(null, { status: 200 }));
  }

  private finishIfComplete(uuid: string, session: UploadSession): void {
    if (
      session.chunkSize === undefined ||
      session.held.size < Math.max(1, Math.floor(session.size / session.chunkSize))
    )
      return;
    const finish = () => {
      const drive = this.stub.drives.get(uuid);
      if (drive) drive.status = "unmounted";
    };
    if (this.options.finishMs) setTimeout(finish, this.options.finishMs);
    else finish();
  }

  /** Route a path under the API prefix; undefined when it is not the chunked upload's. */
  route(request: Request, path: string, search: string): Promise<Response> | undefined {
    if (path === "initupload/" || path === "initupload") return this.initUpload(request, new URL(request.url));
    const parts = path.split("/");
    if (
      parts[0] === "drives" &&
      isUuid(parts[1] ?? "") &&
      parts[2] === "action" &&
      (parts[3] ?? "") === "" &&
      parts.length <= 4
    ) {
      const action = new URLSearchParams(search).get("do");
      if (action === "upload_chunk") return this.uploadChunk(request, parts[1] as string);
    }
    if (this.isLinkPath(path)) return this.receive(request, path);
    return undefined;
  }
}
