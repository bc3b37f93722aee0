// The resume record of a compressed FILE.part, in the file the raw download's journal would use
// (the same place, so the same run lock): a JSON header line naming the download (output, drive,
// its size, format, piece size), then one line per durable point, "DRIVE_BYTES PART_LENGTH". A
// rerun cuts the .part back to the last point and reads the drive on from there. A torn last line
// (a crash mid-write) is ignored; a raw download's journal never matches (another kind).
import { closeSync, ftruncateSync, openSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { messageOf, OperationError } from "../errors.ts";
import type { CompressedFormat } from "./output-format.ts";
import type { ResumePoint } from "./compressed-output.ts";
import { AppendLog } from "../chunks/journal.ts";

/** What a compressed .part holds: which drive, into which output, how. */
export interface CompressedDownload {
  file: string;
  drive: string;
  /** Bytes of the drive. */
  size: number;
  format: CompressedFormat;
  pieceSize: number;
}

interface Header extends CompressedDownload {
  v: 1;
  kind: "compressed-download";
}

function fileSize(path: string): number | undefined {
  try {
    const info = statSync(path);
    return info.isFile() ? info.size : undefined;
  } catch {
    return undefined;
  }
}

const wholeNumber = (value: unknown): value is number =>
  typeof value === "number" && Number.isSafeInteger(value) && value >= 0;

/**
 * Where a rerun goes on from: the last point of a journal that names this download (its drive
 * size is checked when known here; the API 2.0 download learns it from the answer), when FILE.part
 * still holds at least that many bytes. Undefined: start over.
 */
export function resumePointOf(
  journalFile: string,
  part: string,
  download: Omit<CompressedDownload, "size"> & { size?: number },
): (ResumePoint & { size: number }) | undefined {
  let lines: string[];
  try {
    lines = readFileSync(journalFile, "utf8").split("\n");
  } catch {
    return undefined;
  }
  let header: Partial<Header>;
  try {
    header = JSON.parse(lines[0] ?? "") as Partial<Header>;
  } catch {
    return undefined;
  }
  const { size } = header;
  if (
    header?.v !== 1 ||
    header.kind !== "compressed-download" ||
    header.file !== download.file ||
    header.drive !== download.drive ||
    header.format !== download.format ||
    header.pieceSize !== download.pieceSize ||
    !wholeNumber(size) ||
    (download.size !== undefined && size !== download.size)
  ) {
    return undefined;
  }
  const have = fileSize(part);
  if (have === undefined) return undefined;
  let point: ResumePoint | undefined;
  // only whole lines (a newline after them) count
  for (const line of lines.slice(1, -1)) {
    const match = /^(\d+) (\d+)$/.exec(line);
    if (!match) continue;
    const [driveBytes, partLength] = [Number(match[1]), Number(match[2])];
    const boundary = driveBytes === size || driveBytes % download.pieceSize === 0;
    if (wholeNumber(driveBytes) && wholeNumber(partLength) && driveBytes <= size && boundary && partLength <= have)
      point = { driveBytes, partLength };
  }
  return point && point.driveBytes > 0 ? { ...point, size } : undefined;
}

export class CompressedJournal {
  private readonly log: AppendLog;
  private constructor(readonly path: string) {
    this.log = new AppendLog(path);
  }

  /**
   * Open FILE.part for this run: cut back to `point` (a resume) or emptied, and a new journal
   * saying so (written atomically). Returns the .part's descriptor, open for writing.
   */
  static start(
    journalFile: string,
    part: string,
    download: CompressedDownload,
    point?: ResumePoint,
  ): { fd: number; journal: CompressedJournal } {
    let fd: number;
    try {
      fd = openSync(part, point ? "r+" : "w", 0o644);
      if (point) ftruncateSync(fd, point.partLength);
    } catch (error) {
      throw new OperationError(`cannot write ${part}: ${messageOf(error)}`);
    }
    const header: Header = { v: 1, kind: "compressed-download", ...download };
    const temporary = `${journalFile}.${process.pid}.tmp`;
    try {
      writeFileSync(
        temporary,
        `${JSON.stringify(header)}\n${point ? `${point.driveBytes} ${point.partLength}\n` : ""}`,
        { mode: 0o600 },
      );
      renameSync(temporary, journalFile);
    } catch (error) {
      rmSync(temporary, { force: true });
      closeSync(fd);
      throw new OperationError(`cannot write the resume journal ${journalFile}: ${messageOf(error)}`);
    }
    return { fd, journal: new CompressedJournal(journalFile) };
  }

  /** A durable point; synchronous, so that a crash right after cannot lose it. */
  record(point: ResumePoint): void {
    this.log.append(`${point.driveBytes} ${point.partLength}`);
  }

  close(): void {
    this.log.close();
  }

  /** The download is complete: the journal has no more use. */
  remove(): void {
    this.log.remove();
  }
}
