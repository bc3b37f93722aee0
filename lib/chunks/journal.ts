// The resume journal: a small file in the current directory that records which chunks of a
// transfer are done, so that rerunning the same command continues instead of starting over.
// Line 1 is a JSON header (what the transfer is); each following line is one finished chunk
// index, appended as soon as the server confirmed it. Appending one line per chunk keeps the
// record exact even after kill -9 (a torn last line is ignored), at one small write per chunk.
import { closeSync, openSync, readFileSync, renameSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { OperationError } from "../errors.ts";

export interface JournalHeader {
  v: 1;
  kind: "upload" | "download" | "copy";
  /** Upload: the image path; download: the output path (both resolved). */
  file: string;
  /** Upload: image size and mtime; download: drive size. */
  size: number;
  mtimeMs?: number;
  chunk: number;
  drive: string;
  /** Upload: this run (or the one it resumes) created the drive, so it held zeros to start with. */
  created?: boolean;
}

/** The file in `dir` that records the transfer `identity` names: `.drivekit-journal-HASH` (or another kind of record, `.drivekit-KIND-HASH`). */
export function journalPath(dir: string, identity: string, kind = "journal"): string {
  const hash = new Bun.CryptoHasher("sha256").update(identity).digest("hex").slice(0, 16);
  return join(dir, `.drivekit-${kind}-${hash}`);
}

/**
 * A record file lines are appended to, each written synchronously so that a crash right after
 * cannot lose it; opened (0600, for appending) at the first line or by open(). The resume journals
 * and a fleet's record of finished drives are kept this way.
 */
export class AppendLog {
  private fd: number | undefined;
  constructor(readonly path: string) {}

  open(): void {
    this.fd ??= openSync(this.path, "a", 0o600);
  }

  append(line: string): void {
    this.open();
    writeSync(this.fd as number, `${line}\n`);
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  /** The record has no more use. */
  remove(): void {
    this.close();
    rmSync(this.path, { force: true });
  }
}

export class Journal {
  private readonly log: AppendLog;
  private constructor(
    readonly path: string,
    readonly header: JournalHeader,
    readonly done: Set<number>,
  ) {
    this.log = new AppendLog(path);
  }

  /** The journal at `path`, or undefined when there is none or it cannot be read. */
  static load(path: string): Journal | undefined {
    let text: string;
    try {
      text = readFileSync(path, "utf8");
    } catch {
      return undefined;
    }
    const lines = text.split("\n");
    let header: JournalHeader;
    try {
      header = JSON.parse(lines[0] ?? "") as JournalHeader;
    } catch {
      return undefined;
    }
    if (header?.v !== 1 || typeof header.drive !== "string") return undefined;
    const done = new Set<number>();
    // the last line may be torn by a crash: only whole lines (followed by a newline) count
    for (const line of lines.slice(1, -1)) {
      if (/^\d+$/.test(line)) done.add(Number(line));
    }
    return new Journal(path, header, done);
  }

  /** Start a new journal (replacing any old one), written atomically. */
  static create(path: string, header: JournalHeader): Journal {
    const temporary = `${path}.${process.pid}.tmp`;
    try {
      writeFileSync(temporary, `${JSON.stringify(header)}\n`, { mode: 0o600 });
      renameSync(temporary, path);
    } catch (error) {
      rmSync(temporary, { force: true });
      throw new OperationError(`cannot write the resume journal ${path}: ${(error as Error).message}`);
    }
    return new Journal(path, header, new Set());
  }

  /** Matches a transfer described by `header` (same file, size, mtime, chunk, and drive when given). */
  matches(header: Omit<JournalHeader, "v" | "drive" | "created"> & { drive?: string }): boolean {
    const own = this.header;
    return (
      own.kind === header.kind &&
      own.file === header.file &&
      own.size === header.size &&
      own.mtimeMs === header.mtimeMs &&
      own.chunk === header.chunk &&
      (header.drive === undefined || own.drive === header.drive)
    );
  }

  /** Record a finished chunk; synchronous so that a crash right after cannot lose it. */
  markDone(index: number): void {
    if (this.done.has(index)) return;
    this.done.add(index);
    this.log.append(String(index));
  }

  close(): void {
    this.log.close();
  }

  /** The transfer is complete: the journal has no more use. */
  remove(): void {
    this.log.remove();
  }
}
