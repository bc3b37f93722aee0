// What upload.ts and download.ts ask of a transfer engine (API 1.0 chunked, or API 2.0 direct).
import type { Api } from "./config.ts";
import { UsageError } from "./errors.ts";

export type CompressMode = "auto" | "always" | "never";

export interface UploadRequest {
  /** Image path: a regular file or a block device. */
  file: string;
  /** API 1.0: bytes per write (default 4M). */
  chunk: number;
  /** Upload into this existing drive instead of creating one. */
  drive?: string;
  /** Name of a new drive (default: the file's base name). */
  name: string;
  /** API 1.0: the new drive's storage tier (the vendor tool's -t, e.g. ssd). */
  tier?: string;
  /** Resume: start at this byte of the image (and of the drive). */
  offset?: number;
  /** Writes in flight at once (API 1.0); undefined: the engine's default. */
  concurrency?: number;
  compress: CompressMode;
  quiet: boolean;
  /** Read the drive back and compare it with the image. */
  verify: boolean;
  /** Read FILE as this format (--format, -z); undefined: what its first bytes say. */
  format?: "raw" | "gzip" | "zstd" | "qcow2";
  /** The drive's size (--size): needed for stdin (which must hold exactly that); larger than a file's image pads it with zeros. */
  size?: number;
  /** The stream FILE "-" reads. */
  stdin?: () => ReadableStream<Uint8Array>;
}

/** What download.ts writes: the drive's bytes as they are (sparse), or compressed. */
export type OutputFormat = "raw" | "gzip" | "zstd";

export interface DownloadRequest {
  drive: string;
  /** Output path; undefined: API 1.0 uses the drive UUID, API 2.0 the server's file name. */
  file?: string;
  /**
   * How to write it; undefined: from the name's suffix (.gz, .zst), else raw. When given and FILE
   * is not, the default name gets the format's suffix.
   */
  format?: OutputFormat;
  /** Bytes per read (at most 4M); undefined: 4M, or less for an API 2.0 drive read in one stream. */
  chunk?: number;
  /** Start at this byte (the vendor tool's -o). */
  offset?: number;
  concurrency?: number;
  /** Overwrite an existing output file. */
  force: boolean;
  quiet: boolean;
}

/**
 * -o/--offset, the vendor tool's way to resume, has one rule: it goes with the API 1.0 transfers
 * whose target is written at any offset (an upload into a drive, a download into a raw FILE.part).
 * API 2.0 transfers and compressed downloads resume by themselves, so any -o there (0 included) is
 * a wrong call: status 2, before anything is sent. `output`: a download's format (undefined for an upload).
 */
export function checkOffset(offset: number | undefined, api: Api, output?: OutputFormat): void {
  if (offset === undefined || (api === 1 && (output === undefined || output === "raw"))) return;
  throw new UsageError(
    "-o/--offset is API 1.0 only, into a drive or a raw FILE: API 2.0 transfers and compressed downloads resume by themselves (run the same command again)",
  );
}
