// The frame structure of zstd data, followed without decompressing: frame headers (magic,
// descriptor, content size) and block headers (type, size). It gives the decoded size when every
// frame records one, and it catches what the runtime's decoder lets through silently: data that
// ends inside a frame (a truncated .zst decodes to a short image with no error) and bytes after
// the last frame that are not a frame.
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { InputError, UsageError } from "../errors.ts";

const FRAME_MAGIC = 0xfd2fb528;
/** Skippable frames: magic 0x184D2A50 to 0x184D2A5F, a 4-byte length, then that many bytes. */
const SKIPPABLE_MASK = 0xfffffff0;
const SKIPPABLE_MAGIC = 0x184d2a50;

type State = "magic" | "descriptor" | "frameHeader" | "skippableLength" | "block" | "checksum";

export class ZstdFrames {
  /** Decoded bytes the frames so far record; undefined once a frame records none. */
  contentSize: number | undefined = 0;
  /** Whole frames seen. */
  frames = 0;
  private state: State = "magic";
  private readonly header = new Uint8Array(16);
  private have = 0;
  private need = 4;
  /** Bytes to pass over (block contents, skippable frames) before the next header. */
  private skip = 0;
  private hasChecksum = false;
  private contentSizeBytes = 0;
  private dictionaryBytes = 0;
  /** Compressed bytes seen, for naming where the data went wrong. */
  private offset = 0;

  constructor(private readonly shown: string) {}

  /** Bytes that may be passed over without looking at them (a caller reading a file may seek past them). */
  get skippable(): number {
    return this.skip;
  }

  /** Follow `bytes`, the next compressed bytes; throws InputError where they are not zstd. */
  feed(bytes: Uint8Array): void {
    let at = 0;
    while (at < bytes.length) {
      if (this.skip > 0) {
        const step = Math.min(this.skip, bytes.length - at);
        this.skip -= step;
        at += step;
        this.offset += step;
        if (this.skip === 0) this.afterSkip();
        continue;
      }
      const step = Math.min(this.need - this.have, bytes.length - at);
      this.header.set(bytes.subarray(at, at + step), this.have);
      this.have += step;
      at += step;
      this.offset += step;
      if (this.have === this.need) this.parse();
    }
  }

  /** Pass over `count` bytes without reading them; at most `skippable`. */
  passOver(count: number): void {
    if (count > this.skip) throw new RangeError("passOver beyond the skippable bytes");
    this.skip -= count;
    this.offset += count;
    if (this.skip === 0 && count > 0) this.afterSkip();
  }

  /** True at a frame boundary (the data may end here); with no frame at all, it may not. */
  get complete(): boolean {
    return this.state === "magic" && this.have === 0 && this.skip === 0 && this.frames > 0;
  }

  /** At the end of the data: throws InputError unless it ended on a frame boundary. */
  end(): void {
    if (!this.complete)
      throw new InputError(
        `${this.shown}: the zstd data ends inside a frame at compressed byte ${this.offset} (a truncated file?)`,
      );
  }

  private expect(state: State, need: number): void {
    this.state = state;
    this.need = need;
    this.have = 0;
  }

  private afterSkip(): void {
    // a skip ends a block's content or a skippable frame
    if (this.state === "skippableLength") {
      this.frames++;
      this.expect("magic", 4);
    }
  }

  private parse(): void {
    const h = this.header;
    const u32 = () => (h[0]! | (h[1]! << 8) | (h[2]! << 16) | (h[3]! << 24)) >>> 0;
    switch (this.state) {
      case "magic": {
        const magic = u32();
        if (magic === FRAME_MAGIC) {
          this.expect("descriptor", 1);
          return;
        }
        if ((magic & SKIPPABLE_MASK) >>> 0 === SKIPPABLE_MAGIC) {
          this.expect("skippableLength", 4);
          return;
        }
        throw new InputError(
          `${this.shown}: not a zstd frame at compressed byte ${this.offset - 4} (data after the last frame, or a damaged file)`,
        );
      }
      case "skippableLength": {
        this.skip = u32();
        if (this.skip === 0) this.afterSkip();
        return;
      }
      case "descriptor": {
        const descriptor = h[0]!;
        if (descriptor & 0x08)
          throw new InputError(
            `${this.shown}: a zstd frame header at compressed byte ${this.offset - 5} sets a reserved bit`,
          );
        const sizeFlag = descriptor >> 6;
        const singleSegment = (descriptor >> 5) & 1;
        this.hasChecksum = Boolean((descriptor >> 2) & 1);
        this.dictionaryBytes = [0, 1, 2, 4][descriptor & 3]!;
        this.contentSizeBytes = sizeFlag === 0 ? singleSegment : [0, 2, 4, 8][sizeFlag]!;
        const rest = (singleSegment ? 0 : 1) + this.dictionaryBytes + this.contentSizeBytes;
        if (rest === 0) this.frameHeaderDone();
        else this.expect("frameHeader", rest);
        return;
      }
      case "frameHeader":
        this.frameHeaderDone();
        return;
      case "block": {
        const value = h[0]! | (h[1]! << 8) | (h[2]! << 16);
        const last = value & 1;
        const type = (value >> 1) & 3;
        const size = value >>> 3;
        if (type === 3)
          throw new InputError(
            `${this.shown}: a zstd block at compressed byte ${this.offset - 3} has the reserved type`,
          );
        // an RLE block is one byte repeated `size` times
        this.skip = type === 1 ? 1 : size;
        if (last) {
          this.expect(this.hasChecksum ? "checksum" : "magic", 4);
          if (!this.hasChecksum) this.frames++;
        } else {
          this.expect("block", 3);
        }
        return;
      }
      case "checksum":
        this.frames++;
        this.expect("magic", 4);
        return;
    }
  }

  private frameHeaderDone(): void {
    const h = this.header;
    const n = this.contentSizeBytes;
    // the dictionary ID sits just before the content size; 0 means none
    let dictionary = 0;
    for (let i = this.dictionaryBytes - 1; i >= 0; i--)
      dictionary = dictionary * 256 + h[this.need - n - this.dictionaryBytes + i]!;
    if (dictionary !== 0) {
      throw new UsageError(
        `${this.shown} needs zstd dictionary ${dictionary} to decompress, which upload.ts does not have: zstd -D DICTIONARY -dc ... | upload.ts - --size SIZE`,
      );
    }
    if (n === 0) {
      this.contentSize = undefined;
    } else if (this.contentSize !== undefined) {
      const at = this.need - n;
      let value = 0;
      for (let i = n - 1; i >= 0; i--) value = value * 256 + h[at + i]!;
      if (n === 2) value += 256;
      this.contentSize += value;
    }
    this.expect("block", 3);
  }
}

/** Compressed bytes read per look at a header while walking a file. */
const LOOK = 64;

/**
 * Walk a .zst file's frames, reading only their headers: the decoded size when every frame
 * records it (undefined when one does not); InputError when the file is not whole zstd frames.
 */
export function zstdContentSize(path: string, shown: string): number | undefined {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (error) {
    throw new UsageError(`cannot read ${shown}: ${(error as Error).message}`);
  }
  try {
    const size = fstatSync(fd).size;
    const frames = new ZstdFrames(shown);
    const look = new Uint8Array(LOOK);
    let position = 0;
    // bounded: every pass moves `position` forward by at least one byte
    while (position < size) {
      const skip = Math.min(frames.skippable, size - position);
      if (skip > 0) {
        frames.passOver(skip);
        position += skip;
        continue;
      }
      const n = readSync(fd, look, 0, Math.min(LOOK, size - position), position);
      if (n <= 0) break;
      frames.feed(look.subarray(0, n));
      position += n;
    }
    frames.end();
    return frames.contentSize;
  } finally {
    closeSync(fd);
  }
}
