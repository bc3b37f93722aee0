// An ImageSource over a decoded stream (a .gz or .zst file, or stdin): reads come in ascending
// order (the engines issue each read before their first await, in chunk order) and are served one
// after the other; bytes between two reads are decoded and dropped (a resume passes over the
// chunks its journal holds this way). The stream must hold exactly `size` bytes: fewer or more is
// an InputError naming the byte, unless --size asked a file for a larger drive (the rest is zeros,
// and a warning says so). A pipe is never padded: a short stdin is what a producer that died
// mid-way leaves, and nothing else tells the two apart.
import type { ImageFormat, ImageSource } from "../chunks/image.ts";
import { InputError, OperationError } from "../errors.ts";
import { humanBytes } from "../size.ts";
import { decode, type Decoded, type Encoding } from "./decode.ts";

/** Where the image's size came from: the words an error about it uses ("stdin": --size for a pipe, which must hold exactly that). */
export type SizeOrigin = "--size" | "stdin" | "recorded" | "counted";

export interface DecodedImage {
  /** The resolved path, or "-" for stdin. */
  path: string;
  shown: string;
  format: ImageFormat;
  encoding: Encoding;
  size: number;
  sizeOrigin: SizeOrigin;
  mtimeMs: number;
  /** The encoded bytes from the start (called once). */
  input: () => AsyncIterable<Uint8Array>;
  reopen?: () => Promise<ImageSource>;
  warn?: (text: string) => void;
}

const EMPTY: Uint8Array = new Uint8Array(0);

class InOrderReader {
  private piece = EMPTY;
  private pieceAt = 0;
  /** Bytes of the image consumed so far (past the stream's end: zeros of a larger --size). */
  private position = 0;
  /** Decoded bytes in the whole stream, once it has ended. */
  private streamEnd: number | undefined;
  private failure: Error | undefined;
  private warned = false;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly image: DecodedImage,
    private readonly decoded: Decoded,
  ) {}

  read(buffer: Uint8Array, length: number, position: number): Promise<void> {
    const result = this.queue.then(() => this.serve(buffer, length, position));
    this.queue = result.catch(() => undefined);
    return result;
  }

  private async serve(buffer: Uint8Array, length: number, position: number): Promise<void> {
    if (this.failure) throw this.failure;
    if (position < this.position) {
      throw new OperationError(
        `${this.image.shown}: asked for byte ${position} after byte ${this.position}: a decoded image can only be read forwards`,
      );
    }
    try {
      await this.pass(position - this.position);
      const copied = await this.copy(buffer, length);
      if (copied < length) this.ended(buffer, copied, length);
      if (position + length === this.image.size) await this.checkEnd();
    } catch (error) {
      this.failure = error as Error;
      throw error;
    }
  }

  /** The next decoded piece; false at the stream's end. */
  private async next(): Promise<boolean> {
    if (this.streamEnd !== undefined) return false;
    // bounded by the stream: each step takes one piece
    for (;;) {
      const step = await this.decoded.pieces.next();
      if (step.done) {
        this.streamEnd = this.position;
        return false;
      }
      if (step.value.length > 0) {
        this.piece = step.value;
        this.pieceAt = 0;
        return true;
      }
    }
  }

  /** Drop `count` bytes (chunks a resume does not send). */
  private async pass(count: number): Promise<void> {
    let left = count;
    while (left > 0) {
      if (this.pieceAt === this.piece.length && !(await this.next())) {
        this.position += left;
        return;
      }
      const step = Math.min(left, this.piece.length - this.pieceAt);
      this.pieceAt += step;
      this.position += step;
      left -= step;
    }
  }

  /** Copy up to `length` bytes; fewer only at the stream's end. */
  private async copy(buffer: Uint8Array, length: number): Promise<number> {
    let done = 0;
    while (done < length) {
      if (this.pieceAt === this.piece.length && !(await this.next())) break;
      const step = Math.min(length - done, this.piece.length - this.pieceAt);
      buffer.set(this.piece.subarray(this.pieceAt, this.pieceAt + step), done);
      this.pieceAt += step;
      this.position += step;
      done += step;
    }
    return done;
  }

  /** The stream ended before the image's size: zeros for a larger --size, else the image is short. */
  private ended(buffer: Uint8Array, copied: number, length: number): void {
    const { shown, size, sizeOrigin } = this.image;
    const end = this.streamEnd ?? this.position;
    if (end === 0) throw new InputError(`${shown} decodes to nothing (0 bytes): there is no image in it`);
    if (sizeOrigin === "stdin") {
      throw new InputError(
        `${shown} ended at byte ${end}, before --size ${size}: did the command feeding it stop early? A pipe is never padded: give the image's exact size (resize.ts makes the drive larger afterwards)`,
      );
    }
    if (sizeOrigin !== "--size") {
      const expected =
        sizeOrigin === "recorded"
          ? `the ${size} bytes its zstd frame headers record (a damaged file?)`
          : `the ${size} bytes counted before the upload (did the file change?)`;
      throw new InputError(`${shown}: the image ends at byte ${end}, before ${expected}`);
    }
    if (!this.warned) {
      this.warned = true;
      this.image.warn?.(
        `${shown} ends at byte ${end} (${humanBytes(end)}): the remaining ${humanBytes(size - end)} of the drive (--size ${humanBytes(size)}) are zeros`,
      );
    }
    buffer.fill(0, copied, length);
    this.position += length - copied;
  }

  /** The last byte has been read: the stream must end there. */
  private async checkEnd(): Promise<void> {
    const more = this.pieceAt < this.piece.length || (this.streamEnd === undefined && (await this.next()));
    if (!more) return;
    const { shown, size, sizeOrigin } = this.image;
    const why =
      sizeOrigin === "--size" || sizeOrigin === "stdin"
        ? `--size ${size} is smaller than the image: give its whole size (or, for a file, leave --size out)`
        : sizeOrigin === "recorded"
          ? "its zstd frame headers record fewer bytes (a damaged file?)"
          : "it held fewer when counted before the upload (did the file change?)";
    throw new InputError(`${shown} holds more than ${size} bytes (byte ${size} is not the end): ${why}`);
  }

  close(): void {
    this.decoded.close();
  }
}

/** An image decoded as it is read; `sequential`, with no fd and no data map. */
export function openDecoded(image: DecodedImage): ImageSource {
  const reader = new InOrderReader(image, decode(image.input(), image.encoding, image.shown));
  return {
    path: image.path,
    size: image.size,
    mtimeMs: image.mtimeMs,
    isDevice: false,
    format: image.format,
    sequential: true,
    reopen: image.reopen,
    read: (buffer, length, position) => reader.read(buffer, length, position),
    close: async () => reader.close(),
  };
}
