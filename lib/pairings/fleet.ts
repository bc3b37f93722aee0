// Many drives: a manifest (one drive a line, `DRIVE [NAME]`) run as one transfer per line, N at
// once, one result line per drive. `--shard I/N` takes lines I, I+N, I+2N... (1-based, counting
// only the drive lines: blank lines and # comments are skipped and not counted), so N machines, or
// the N pods of a batch engine, split a fleet with no coordination between them. What finished is
// recorded in this folder (`.drivekit-fleet-HASH`, one line per drive, appended as each ends), so a
// rerun skips it and goes on with the rest, each unfinished transfer resuming from its own journal.
// The record is removed once every drive of the run is done.
import { existsSync, readFileSync, rmSync, statSync } from "node:fs";
import { resolve } from "node:path";
import type { Context } from "../context.ts";
import { InterruptedError, messageOf, OperationError, UsageError } from "../errors.ts";
import { isUuid } from "../uuid.ts";
import { abortOnInterrupt, type Interrupt } from "../chunks/engine.ts";
import { AppendLog } from "../chunks/journal.ts";
import { journalPath } from "../chunks/journal.ts";
import { RunLock } from "../chunks/lock.ts";

/** A manifest larger than this is not a list of drives. */
const MAX_MANIFEST_BYTES = 16 * 1024 * 1024;
/** --drives: transfers at once, each with its own window of chunks in memory. */
const MAX_DRIVES = 32;
const MAX_SHARDS = 100_000;

/** One drive line of a manifest. */
export interface ManifestLine {
  /** Its line number in the file (1-based), for messages. */
  line: number;
  drive: string;
  /** What follows the UUID on the line (a new drive's name, a file name), trimmed. */
  name?: string;
}

export interface Shard {
  /** 1-based. */
  index: number;
  count: number;
}

/**
 * The drive lines of a manifest: `DRIVE [NAME]` each, blank lines and lines starting with # skipped.
 * A line that is not a UUID (with an optional rest), a NAME `checkName` refuses, or a drive listed
 * twice is a wrong call naming its line.
 */
export function parseManifest(
  text: string,
  shown: string,
  checkName?: (name: string) => string | undefined,
): ManifestLine[] {
  const lines: ManifestLine[] = [];
  const seen = new Map<string, number>();
  for (const [index, raw] of text.split("\n").entries()) {
    const line = raw.replace(/\r$/, "").trim();
    if (line === "" || line.startsWith("#")) continue;
    const number = index + 1;
    const [first = "", ...rest] = line.split(/\s+/);
    if (!isUuid(first))
      throw new UsageError(
        `${shown} line ${number}: '${first.slice(0, 60)}' is not a drive UUID (each line: DRIVE [NAME]; # starts a comment)`,
      );
    const drive = first.toLowerCase();
    const earlier = seen.get(drive);
    if (earlier !== undefined)
      throw new UsageError(`${shown} line ${number}: drive ${drive} is listed already on line ${earlier}`);
    seen.set(drive, number);
    const name = rest.length > 0 ? line.slice(first.length).trim() : undefined;
    if (name !== undefined && /[\x00-\x1f\x7f]/.test(name))
      throw new UsageError(`${shown} line ${number}: the name holds a control character`);
    const wrong = name === undefined ? undefined : checkName?.(name);
    if (wrong) throw new UsageError(`${shown} line ${number}: ${wrong}`);
    lines.push({ line: number, drive, name });
  }
  if (lines.length === 0) throw new UsageError(`${shown} lists no drive (each line: DRIVE [NAME]; # starts a comment)`);
  return lines;
}

/** Read and parse a manifest file (bounded); status 2 for anything wrong with it. */
export function readManifest(path: string, checkName?: (name: string) => string | undefined): ManifestLine[] {
  let text: string;
  try {
    if (statSync(path).size > MAX_MANIFEST_BYTES)
      throw new UsageError(`manifest ${path} is over ${MAX_MANIFEST_BYTES / 2 ** 20} MiB: not a list of drives`);
    text = readFileSync(path, "utf8");
  } catch (error) {
    if (error instanceof UsageError) throw error;
    throw new UsageError(`cannot read manifest ${path}: ${messageOf(error)}`);
  }
  return parseManifest(text, `manifest ${path}`, checkName);
}

/** --shard I/N: 1 <= I <= N. */
export function parseShard(text: string): Shard {
  const match = /^(\d{1,6})\/(\d{1,6})$/.exec(text.trim());
  const index = Number(match?.[1]);
  const count = Number(match?.[2]);
  if (!match || index < 1 || count < 1 || index > count || count > MAX_SHARDS)
    throw new UsageError(`invalid --shard '${text.slice(0, 40)}': expected I/N with 1 <= I <= N, e.g. 2/8`);
  return { index, count };
}

/** --drives: transfers at once, 1 to 32. */
export function parseDrives(text: string | undefined): number {
  if (text === undefined) return 1;
  const value = Number(text);
  if (!/^\d+$/.test(text) || value < 1 || value > MAX_DRIVES)
    throw new UsageError(`invalid --drives '${text.slice(0, 40)}': expected 1 to ${MAX_DRIVES}`);
  return value;
}

/** The lines of shard I of N: the I-th drive line, then every N-th after it. */
export function shardOf(lines: readonly ManifestLine[], shard: Shard | undefined): ManifestLine[] {
  if (!shard) return [...lines];
  return lines.filter((_, at) => at % shard.count === shard.index - 1);
}

/** What one transfer of the fleet made. */
export interface FleetOutcome {
  /** The destination: a drive UUID, a file's path. */
  destination: string;
  bytes: number;
  sha256?: string;
}

/** One result line: done (this run), skipped (an earlier run's), failed, stopped (Ctrl-C, SIGTERM: resumes on rerun). */
export interface FleetReport {
  source: string;
  destination: string | null;
  status: "done" | "skipped" | "failed" | "stopped";
  bytes: number | null;
  error: string | null;
  sha256?: string;
}

export interface Fleet {
  /** "copy", "download": names the record and the messages. */
  label: string;
  /** The manifest's path as given. */
  manifest: string;
  /** This run's lines (its shard). */
  lines: readonly ManifestLine[];
  shard?: Shard;
  /** Transfers at once. */
  drives: number;
  /** Where the transfers go (an endpoint, a folder): a rerun with another one is another run. */
  target: string;
  /** One transfer, with its own context (its log lines tagged with the drive) and the fleet's stop. */
  transfer(line: ManifestLine, ctx: Context, stop: Interrupt): Promise<FleetOutcome>;
  /** One result line, as soon as the drive ends. */
  report(report: FleetReport): void;
}

interface Finished {
  source: string;
  destination: string;
  bytes: number;
  sha256?: string;
}

/** The record of what finished, one JSON line per drive appended as it ends (a torn last line is ignored). */
class FleetRecord {
  readonly done = new Map<string, Finished>();
  /** Open from start(): before it, what finishes is known in memory only. */
  private log?: AppendLog;

  constructor(readonly path: string) {
    if (!existsSync(path)) return;
    const lines = readFileSync(path, "utf8").split("\n");
    for (const line of lines.slice(0, -1)) {
      try {
        const entry = JSON.parse(line) as Finished;
        if (isUuid(entry.source) && typeof entry.destination === "string" && Number.isSafeInteger(entry.bytes))
          this.done.set(entry.source, entry);
      } catch {
        // not a whole line: ignored
      }
    }
  }

  start(): void {
    this.log = new AppendLog(this.path);
    this.log.open();
  }

  add(entry: Finished): void {
    this.done.set(entry.source, entry);
    this.log?.append(JSON.stringify(entry));
  }

  close(): void {
    this.log?.close();
  }

  remove(): void {
    this.close();
    rmSync(this.path, { force: true });
  }
}

/** A result line, its fields always in this order. */
function report(source: string, status: FleetReport["status"], outcome?: FleetOutcome, error?: string): FleetReport {
  const line: FleetReport = {
    source,
    destination: outcome?.destination ?? null,
    status,
    bytes: outcome?.bytes ?? null,
    error: error ?? null,
  };
  if (outcome?.sha256) line.sha256 = outcome.sha256;
  return line;
}

/** A drive's own context: its log lines tagged with the drive, its progress as log lines (several run at once). */
function driveContext(ctx: Context, drive: string): Context {
  return {
    ...ctx,
    log: ctx.log.withTag(drive.slice(0, 8)),
    progress: (options) => ctx.progress({ ...options, live: false, label: `${options.label} ${drive.slice(0, 8)}` }),
  };
}

/**
 * Run every line of `fleet` not recorded as finished, `fleet.drives` at once; a failure ends its
 * own drive only. Ctrl-C stops every transfer (each keeps what it needs to resume) and starts no
 * more. Ends with an error when any drive did not finish.
 */
export async function runFleet(ctx: Context, fleet: Fleet): Promise<void> {
  const identity = `fleet\0${fleet.label}\0${resolve(ctx.cwd, fleet.manifest)}\0${fleet.target}\0${fleet.shard ? `${fleet.shard.index}/${fleet.shard.count}` : "all"}`;
  const path = journalPath(ctx.cwd, identity, "fleet");
  const lock = RunLock.acquire(path, `the ${fleet.label} of manifest ${fleet.manifest}`);
  const record = new FleetRecord(path);
  const interrupt = abortOnInterrupt();
  const counts = { done: 0, skipped: 0, failed: 0, stopped: 0 };
  try {
    record.start();
    const pending = fleet.lines.filter((line) => {
      const finished = record.done.get(line.drive);
      if (!finished) return true;
      counts.skipped++;
      fleet.report(report(line.drive, "skipped", finished));
      return false;
    });
    if (counts.skipped > 0)
      ctx.log.info(`${counts.skipped} drive${counts.skipped === 1 ? "" : "s"} finished by an earlier run: skipped`);
    const queue = pending[Symbol.iterator]();
    const lane = async () => {
      // bounded: each turn takes one line off the queue
      for (let next = queue.next(); !next.done && !interrupt.interrupted(); next = queue.next()) {
        const line = next.value;
        try {
          const outcome = await fleet.transfer(line, driveContext(ctx, line.drive), interrupt);
          record.add({ source: line.drive, ...outcome });
          counts.done++;
          fleet.report(report(line.drive, "done", outcome));
        } catch (error) {
          const stopped = error instanceof InterruptedError;
          counts[stopped ? "stopped" : "failed"]++;
          const message = messageOf(error);
          if (!stopped) ctx.log.warn(`drive ${line.drive} (line ${line.line}): ${message}`);
          fleet.report(report(line.drive, stopped ? "stopped" : "failed", undefined, message));
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(fleet.drives, Math.max(1, pending.length)) }, lane));
    // every drive is done: the record has no more use (running the manifest again copies them again)
    if (counts.done + counts.skipped === fleet.lines.length) record.remove();
  } finally {
    interrupt.remove();
    record.close();
    lock.release();
  }
  const total = fleet.lines.length;
  const notStarted = total - counts.done - counts.skipped - counts.failed - counts.stopped;
  const stoppedBy = interrupt.interrupted();
  if (stoppedBy)
    throw new InterruptedError(
      `${fleet.label} of manifest ${fleet.manifest} interrupted (${stoppedBy}): ${counts.done + counts.skipped} of ${total} drives done, ${counts.stopped + notStarted} to go; rerun the same command in ${ctx.cwd} to go on`,
      stoppedBy,
    );
  if (counts.failed > 0)
    throw new OperationError(
      `${counts.failed} of ${total} drives failed (their lines on stdout say why); ${counts.done + counts.skipped} done: rerun the same command in ${ctx.cwd} to retry the others`,
    );
}
