// The image an upload reads, as the user has it: a raw file or block device, a qcow2 file, a
// gzip or zstd file, or stdin ("-", itself raw, gzip or zstd). The format comes from the first
// bytes unless forced (--format, -z); the drive's size from --size, else from the format (qcow2's
// virtual size, zstd's frame content sizes), else gzip (and zstd without content sizes) is
// decompressed once to count it, which a log line says.
import { open, type FileHandle } from "node:fs/promises";
import { resolve } from "node:path";
import type { Context } from "../context.ts";
import { UsageError } from "../errors.ts";
import { humanBytes } from "../size.ts";
import type { UploadRequest } from "../transfer.ts";
import { openImage, statImage, type ImageFormat, type ImageSource } from "../chunks/image.ts";
import { countDecoded, fileBytes } from "./decode.ts";
import { chooseFormat, detectFormat, HEAD_BYTES } from "./detect.ts";
import { paddedTo } from "./padded.ts";
import { openQcow2 } from "./qcow2.ts";
import { openDecoded, type SizeOrigin } from "./stream.ts";
import { zstdContentSize } from "./zstd-frames.ts";

export interface InputOptions {
  /** Read the image as this format (--format, -z) instead of the one its first bytes say. */
  format?: ImageFormat;
  /** The drive's size (--size): required for stdin, which must hold exactly that; for a file, a larger one pads it with zeros. */
  size?: number;
  /** The stream behind "-". */
  stdin?: () => ReadableStream<Uint8Array>;
  log?: { info(text: string): void; warn(text: string): void };
}

const warner = (options: InputOptions) => (options.log ? (text: string) => options.log?.warn(text) : undefined);

/** The first bytes of a file or block device; UsageError when it is neither or cannot be read. */
async function headOf(path: string, shown: string): Promise<{ head: Uint8Array; mtimeMs: number }> {
  const info = await statImage(path, shown);
  if (!info.isFile() && !info.isBlockDevice()) throw new UsageError(`${shown}: not a regular file or a block device`);
  const head = new Uint8Array(HEAD_BYTES);
  let handle: FileHandle;
  try {
    handle = await open(path, "r");
  } catch (error) {
    throw new UsageError(`cannot read ${shown}: ${(error as Error).message}`);
  }
  try {
    const { bytesRead } = await handle.read(head, 0, HEAD_BYTES, 0);
    return { head: head.subarray(0, bytesRead), mtimeMs: Math.floor(info.mtimeMs) };
  } finally {
    await handle.close();
  }
}

/** A seekable image (raw, qcow2) on a drive of --size: refused when smaller, zero-padded when larger. */
async function sized(image: ImageSource, shown: string, options: InputOptions): Promise<ImageSource> {
  const size = options.size;
  if (size === undefined || size === image.size) return image;
  if (size < image.size) {
    await image.close();
    const decoded = image.format === "raw" ? "" : ` decoded (${image.format})`;
    throw new UsageError(
      `--size ${size} is smaller than ${shown} (${image.size} bytes${decoded}): the image would not fit`,
    );
  }
  options.log?.info(
    `${shown} is ${humanBytes(image.size)}: the drive is ${humanBytes(size)} (--size), the rest of it zeros`,
  );
  return paddedTo(image, size);
}

/** Read the stream's first bytes (to tell its format) and give them back in front of the rest. */
async function sniff(
  stream: ReadableStream<Uint8Array>,
): Promise<{ head: Uint8Array; input: AsyncIterable<Uint8Array> }> {
  const reader = stream.getReader();
  const taken: Uint8Array[] = [];
  let have = 0;
  // bounded by the stream: each step takes one piece
  while (have < HEAD_BYTES) {
    const { value, done } = await reader.read();
    if (done) break;
    taken.push(value);
    have += value.length;
  }
  const head = Buffer.concat(taken).subarray(0, HEAD_BYTES);
  async function* input(): AsyncGenerator<Uint8Array> {
    yield* taken;
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        yield value;
      }
    } finally {
      await reader.cancel().catch(() => undefined);
    }
  }
  return { head, input: input() };
}

async function openStdin(options: InputOptions): Promise<ImageSource> {
  if (options.size === undefined)
    throw new UsageError(
      "reading the image from stdin (-) needs --size SIZE: a stream does not tell how large its image is",
    );
  if (!options.stdin) throw new UsageError("no stdin to read the image from");
  const { head, input } = await sniff(options.stdin());
  // most likely the command feeding the pipe failed: never a drive of zeros from nothing
  if (head.length === 0)
    throw new UsageError("stdin is empty: there is nothing to upload (did the command feeding it fail?)");
  const format = chooseFormat(detectFormat(head), options.format, "-");
  if (format === "qcow2")
    throw new UsageError(
      "a qcow2 image cannot be read from stdin (its tables point anywhere in the file): give its path instead of -",
    );
  return openDecoded({
    path: "-",
    shown: "stdin",
    format,
    encoding: format,
    size: options.size,
    sizeOrigin: "stdin",
    mtimeMs: 0,
    input: () => input,
    warn: warner(options),
  });
}

/** A gzip or zstd file: its size found (--size, zstd's frame headers, or one counting pass), then decoded as read. */
async function openCompressed(
  path: string,
  shown: string,
  format: "gzip" | "zstd",
  mtimeMs: number,
  options: InputOptions,
): Promise<ImageSource> {
  // zstd's frames are walked in any case: a truncated file is refused before anything is sent
  const recorded = format === "zstd" ? zstdContentSize(path, shown) : undefined;
  let size = options.size;
  let sizeOrigin: SizeOrigin = "--size";
  if (size !== undefined && recorded !== undefined && size < recorded) {
    throw new UsageError(
      `--size ${size} is smaller than ${shown} (${recorded} bytes decoded, as its zstd frames record): the image would not fit`,
    );
  }
  if (size === undefined && recorded !== undefined) {
    size = recorded;
    sizeOrigin = "recorded";
  }
  if (size === undefined) {
    const why =
      format === "gzip"
        ? "gzip does not record the image's size (only modulo 4 GiB)"
        : "its zstd frames do not record the image's size";
    options.log?.info(`${shown}: ${why}: decompressing it once to count (--size SIZE skips this)`);
    size = await countDecoded(fileBytes(path), format, shown);
    options.log?.info(`${shown}: the image is ${size} bytes (${humanBytes(size)})`);
    sizeOrigin = "counted";
  }
  const image = { path, shown, format, encoding: format, size, sizeOrigin, mtimeMs, input: () => fileBytes(path) };
  const again = async (): Promise<ImageSource> => openDecoded({ ...image, reopen: again });
  return openDecoded({ ...image, reopen: again, warn: warner(options) });
}

/**
 * Open the image at `file` ("-": stdin) as its format says, or as `options.format` forces: a
 * UsageError (status 2, nothing sent) for what cannot be uploaded faithfully.
 */
export async function openInput(file: string, shown: string, options: InputOptions = {}): Promise<ImageSource> {
  if (file === "-") return openStdin(options);
  const { head, mtimeMs } = await headOf(file, shown);
  const format = chooseFormat(detectFormat(head), options.format, shown);
  if (format === "raw") return sized(await openImage(file, shown), shown, options);
  if (format === "qcow2") return sized(await openQcow2(file, shown), shown, options);
  return openCompressed(file, shown, format, mtimeMs, options);
}

/** The image of an upload request: FILE from the command's folder, or stdin for "-"; --verify refused where it cannot be read again. */
export async function openUploadInput(ctx: Context, request: UploadRequest): Promise<ImageSource> {
  const path = request.file === "-" ? "-" : resolve(ctx.cwd, request.file);
  const image = await openInput(path, request.file, {
    format: request.format,
    size: request.size,
    stdin: request.stdin,
    log: ctx.log,
  });
  if (request.verify && !image.reopen) {
    await image.close();
    throw new UsageError(
      "--verify needs an image it can read again: stdin (-) is read once (upload the file itself to verify)",
    );
  }
  return image;
}

/** An image's part in a resume journal's name: its path, with its format when decoded; stdin: "-" and its size. */
export function journalIdentity(image: ImageSource): string {
  const base = image.path === "-" ? `-\0${image.size}` : image.path;
  return image.format === "raw" ? base : `${base}\0${image.format}`;
}

/** Said when an upload from stdin resumes: nothing can tell whether the stream is the same image. */
export const STDIN_RESUME_WARNING =
  "resuming an upload read from stdin: the input must be the same image as in the interrupted run (a stream cannot be checked); the chunks the journal holds are decoded again and dropped, not sent";
