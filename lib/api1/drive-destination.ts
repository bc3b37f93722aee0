// An API 1.0 drive as a destination: writes of one chunk each at any offset, gzipped when that pays
// (compression.ts), all-zero chunks left out on a drive this run created (a cached gzip of zeros on
// any other), into the drive of an interrupted run, the drive given (-d), or a new one.
import { basename } from "node:path";
import type { Chunk, Destination, Opened, RunStats } from "../chunks/endpoints.ts";
import { evenGrid, type Grid } from "../chunks/grid.ts";
import { journalOpened, resolveDriveTarget, type DriveTransfer } from "../chunks/drive-target.ts";
import type { Journal } from "../chunks/journal.ts";
import type { ReadBack } from "../chunks/verify.ts";
import { startWithin, windowFor, type WindowPolicy } from "../chunks/window.ts";
import { ApiError, messageOf, OperationError } from "../errors.ts";
import type { HttpClient } from "../http.ts";
import { humanBytes } from "../size.ts";
import type { CompressMode } from "../transfer.ts";
import { CompressionPlan } from "./compression.ts";
import { createDrive, destroyDrive, driveInfo, MAX_PIECE, sizeOf, writePiece } from "./drives.ts";
import { api1DriveSource } from "./drive-source.ts";
import { probeLink } from "./probe.ts";
import { writePieceOnSocket } from "./socket-write.ts";
import type { OwnSockets } from "../socket-pool.ts";

/**
 * Writes in flight at the start, where memory holds them (an upload's 16 of 4 MiB): a far link is
 * filled in the fewest waves (at 100 ms a round trip, 256 MiB: 0.74 s against 0.77 s for 12 growing
 * to 16), and the window may shrink from there (bench/RESULTS-speed.md, "Figures the code relies on").
 */
export const API1_WRITES_IN_FLIGHT = 16;

/**
 * What writes in flight may hold, more than WINDOW_MEMORY: a raw write holds its chunk and nothing
 * more (its socket sends from it), so an upload's window holds 16 of 4 MiB, and the upload stays
 * under 128 MiB of peak RSS (bench/RESULTS-speed.md, "Figures the code relies on").
 */
export const API1_WRITES_MEMORY = 16 * MAX_PIECE;

/**
 * The writes' window when each holds `perWrite` bytes (its chunk; gzipped, its gzip too): from
 * API1_WRITES_IN_FLIGHT, or fewer where `memory` holds fewer, up to what `memory` holds
 * (API1_WRITES_MEMORY: an upload's writes; a copy's, WINDOW_MEMORY); `concurrency` fixes it.
 */
export function api1WriteWindow(perWrite: number, concurrency?: number, memory = API1_WRITES_MEMORY): WindowPolicy {
  return windowFor(startWithin(API1_WRITES_IN_FLIGHT, perWrite, memory), perWrite, concurrency, memory);
}

/** Writes in flight once `--compress auto` has chosen gzip (a slow link). */
const GZIP_LANES = 4;

/** The writes in flight while gzipping: GZIP_LANES within the window (`--concurrency`: its number). */
function gzipLanes(window: WindowPolicy): number {
  return window.fixed ? window.initial : Math.min(window.max, GZIP_LANES);
}

/**
 * Writes in flight for a decoded image (qcow2, gzip, zstd) over a near link: reading the image is
 * the work there, and 8 writes in flight only hold more chunks: 4 move a qcow2 as fast in less
 * memory (bench/RESULTS-formats.md, "Figures the code relies on").
 */
const DECODED_LANES = 4;
/** Below this many ms per request, 4 writes of 4 MiB outrun any decoder (16 MiB a request time: 840 MB/s at 20 ms). */
const NEAR_LINK_MS = 20;

export interface Api1DriveOptions extends DriveTransfer {
  client: HttpClient;
  /** The writes go through the run's sockets (socket-write.ts: a write holds its chunk once); else through fetch. */
  socketWrites?: OwnSockets;
  /** Reading the source is work of its own (qcow2, gzip, zstd): fewer writes in flight on a near link. */
  decoded: boolean;
  chunk: number;
  /** Start at this byte of the source and the drive (the vendor tool's -o). */
  offset: number;
  compress: CompressMode;
  /** The run's window (--concurrency fixes it: the writes in flight stay at it). */
  window: WindowPolicy;
  /** The new drive's storage tier (the vendor tool's -t). */
  tier?: string;
  /** The command that resumes at a byte of a drive, for the stop line. */
  resumeCommand(drive: string, offset: number): string;
}

/** The gzip of `length` zero bytes (and the zeros themselves, for --compress never), made once per length. */
function zeroBodies(): (length: number, gzipped: boolean) => Uint8Array {
  const cache = new Map<string, Uint8Array>();
  return (length, gzipped) => {
    const key = `${length}/${gzipped}`;
    let body = cache.get(key);
    if (!body) {
      body = gzipped ? Bun.gzipSync(new Uint8Array(length), { level: 1 }) : new Uint8Array(length);
      cache.set(key, body);
    }
    return body;
  };
}

/** Drive `drive` can take `size` bytes (those of `shown`): its size, else the refusal. */
export async function checkRoom(client: HttpClient, drive: string, size: number, shown: string): Promise<number> {
  const driveSize = sizeOf(await driveInfo(client, drive), drive);
  if (driveSize < size)
    throw new OperationError(`drive ${drive} is ${driveSize} bytes, smaller than ${shown} (${size} bytes)`);
  return driveSize;
}

export class Api1DriveDestination implements Destination {
  readonly grid: Grid;
  readonly scansZeros = true;
  readonly plan: CompressionPlan;
  private drive = "";
  private created = false;
  private driveSize = 0;
  private journal?: Journal;
  private opened?: Opened;
  private wireBytes = 0;
  private readonly zeroBody = zeroBodies();

  constructor(private readonly options: Api1DriveOptions) {
    this.grid = evenGrid(options.source.size, options.chunk, options.offset);
    this.plan = new CompressionPlan(
      options.compress,
      options.window.initial,
      (text) => options.ctx.log.debug(text),
      gzipLanes(options.window),
    );
  }

  /** A request without a body (info, create) times the link's fixed cost per request. */
  private async timed<T>(call: () => Promise<T>): Promise<T> {
    const started = performance.now();
    const result = await call();
    this.plan.noteLatency(performance.now() - started);
    return result;
  }

  private async sizeOfDrive(drive: string): Promise<number> {
    const { client, source, shown } = this.options;
    this.driveSize = await this.timed(() => checkRoom(client, drive, source.size, shown));
    return this.driveSize;
  }

  async open(journalFile: string): Promise<Opened> {
    const { ctx, client, source } = this.options;
    const target = await resolveDriveTarget(this.options, journalFile, {
      resume: async (drive) => {
        await this.sizeOfDrive(drive);
        return undefined;
      },
      gone: (error) => error instanceof ApiError && error.kind === "missing",
      checkGiven: async (drive) => void (await this.sizeOfDrive(drive)),
      create: async () => {
        const fields: Record<string, string> = { name: this.options.name, size: String(source.size) };
        if (this.options.tier) fields.tier = this.options.tier;
        const drive = (await this.timed(() => createDrive(client, fields))).drive as string;
        ctx.log.info(`created drive ${drive} (${humanBytes(source.size)})`);
        this.driveSize = source.size;
        return drive;
      },
    });
    this.drive = target.drive;
    this.created = target.created;
    this.journal = target.journal;
    // a drive this run created holds zeros: its zero chunks need not be written
    this.opened = journalOpened(target.journal, target.created);
    return this.opened;
  }

  async prepare(signal: AbortSignal): Promise<void> {
    const { compress, source } = this.options;
    // the probe reads ahead of the chunks, which a decoded image cannot go back for: it sends
    // zeros instead, harmless only on a drive that holds zeros (one this run created)
    if (compress !== "auto" || (source.sequential && !this.created)) return;
    this.wireBytes += await probeLink(
      source,
      this.grid,
      this.opened?.done ?? new Set(),
      (start, body) => writePiece(this.options.client, this.drive, start, body, { signal }),
      this.plan,
    );
  }

  async write(chunk: Chunk, signal: AbortSignal): Promise<void> {
    const { body, gzipped } = chunk.zero
      ? {
          body: this.zeroBody(chunk.length, this.options.compress !== "never"),
          gzipped: this.options.compress !== "never",
        }
      : await this.plan.encode(chunk.bytes as Uint8Array);
    const begun = performance.now();
    this.plan.requestStarted();
    let ok = false;
    try {
      const { client, socketWrites } = this.options;
      if (socketWrites) {
        await writePieceOnSocket(client, socketWrites, this.drive, chunk.start, body, { gzipped, signal });
      } else {
        await writePiece(client, this.drive, chunk.start, body, { gzipped, signal });
      }
      ok = true;
    } finally {
      this.plan.requestFinished(body.length, performance.now() - begun, ok);
    }
    this.wireBytes += body.length;
  }

  retryName(chunk: Chunk): string {
    return `write at ${chunk.start}`;
  }

  /**
   * Once auto settles on gzip the link is the bottleneck: fewer writes in flight move as much and
   * hold fewer raw and compressed chunks (bench/RESULTS.md, "Four writes in flight once auto picks gzip").
   * A decoded image on a near link: the decoder is the bottleneck, the same holds.
   */
  lanes(): number {
    const { window, compress, decoded } = this.options;
    if (window.fixed) return window.initial;
    let wanted = compress === "auto" && this.plan.level !== 0 ? gzipLanes(window) : window.max;
    if (decoded && this.plan.latency < NEAR_LINK_MS) wanted = Math.min(wanted, DECODED_LANES);
    return wanted;
  }

  what(): string {
    return `${this.options.label} to drive ${this.drive}`;
  }

  resumeHint(): string {
    const { grid } = this;
    let resumeAt = this.options.source.size;
    for (let index = grid.first; index < grid.count; index++) {
      if (!this.opened?.done.has(index)) {
        resumeAt = grid.rangeOf(index)[0];
        break;
      }
    }
    const journal = basename(this.journal?.path ?? "");
    return `to resume, rerun the same command in ${this.options.ctx.cwd} (journal ${journal}), or run: ${this.options.resumeCommand(this.drive, resumeAt)}`;
  }

  /**
   * The source broke mid-way (damaged, truncated, longer than its size): a rerun would fail the
   * same way, so a drive this run created is destroyed rather than left holding part of it.
   */
  async abandon(failure: Error): Promise<Error> {
    const { drive } = this;
    if (!this.created)
      return new OperationError(
        `${failure.message}; drive ${drive} (given with -d) now holds part of the image: ${this.options.label} a whole image into it`,
      );
    try {
      await destroyDrive(this.options.client, drive);
      return new OperationError(
        `${failure.message}; drive ${drive}, which this ${this.options.label} created, is destroyed`,
      );
    } catch (error) {
      return new OperationError(
        `${failure.message}; drive ${drive}, which this ${this.options.label} created, holds part of the image and could not be destroyed (${messageOf(error)}): destroy.ts ${drive}`,
      );
    }
  }

  note(stats: RunStats): string | undefined {
    return (
      [stats.skipped ? `${stats.skipped} zero chunks skipped` : "", stats.retries ? `${stats.retries} retries` : ""]
        .filter(Boolean)
        .join(", ") || undefined
    );
  }

  async finish(): Promise<string> {
    return this.drive;
  }

  summary(stats: RunStats): string {
    const { plan } = this;
    const { source, offset, compress, done } = this.options;
    return (
      `${done} ${humanBytes(source.size - offset)} to drive ${this.drive} in ${stats.seconds.toFixed(1)} s, ${humanBytes(this.wireBytes)} sent` +
      `${stats.skipped ? `, ${stats.skipped} zero chunks skipped` : ""}${stats.retries ? `, ${stats.retries} retries` : ""}` +
      `${plan.switches.length ? ` (${plan.switches.join(", ")})` : compress === "auto" ? ` (${plan.describe()})` : ""}`
    );
  }

  /** The drive, to be read back by --verify. */
  async readBack(): Promise<ReadBack> {
    return {
      source: api1DriveSource(this.options.client, this.drive, this.driveSize),
      shown: `drive ${this.drive}`,
      against: this.options.shown,
      zerosPast: false,
      kept: `the ${this.options.label} itself finished; the drive is kept`,
    };
  }
}
