// An image's format from its first bytes (never from its name: `disk.img` is often gzip, and a
// `.gz` renamed by a tool is still gzip), and the refusals for formats upload.ts does not decode.
import { UsageError } from "../errors.ts";
import { shellWord } from "../files.ts";
import type { ImageFormat } from "../chunks/image.ts";
import { hasQcow2Magic } from "./qcow2-header.ts";

/** Bytes enough to tell every format below apart. */
export const HEAD_BYTES = 8;

/** What the first bytes say: an image format, or a compressor upload.ts refuses. */
export type Detected = ImageFormat | "xz" | "bzip2";

const startsWith = (head: Uint8Array, magic: number[]) =>
  head.length >= magic.length && magic.every((byte, at) => head[at] === byte);

export function detectFormat(head: Uint8Array): Detected {
  if (startsWith(head, [0x1f, 0x8b])) return "gzip";
  if (startsWith(head, [0x28, 0xb5, 0x2f, 0xfd])) return "zstd";
  if (hasQcow2Magic(head)) return "qcow2";
  if (startsWith(head, [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])) return "xz";
  // "BZh" and a block size digit 1-9
  if (startsWith(head, [0x42, 0x5a, 0x68]) && (head[3] ?? 0) >= 0x31 && (head[3] ?? 0) <= 0x39) return "bzip2";
  return "raw";
}

const DECOMPRESSOR: Record<string, string> = { xz: "xz -dc", bzip2: "bzip2 -dc" };

/**
 * The format to read the image as: `forced` (--format, -z) when its magic is there (raw always
 * is), else the detected one; xz and bzip2 are refused with the pipe that uploads them anyway.
 */
export function chooseFormat(detected: Detected, forced: ImageFormat | undefined, shown: string): ImageFormat {
  if (forced === "raw") return "raw";
  if (forced && forced !== detected) {
    const what = detected === "raw" ? "no known format" : detected;
    throw new UsageError(
      `${shown} is not ${forced} (its first bytes say ${what}): drop --format${forced === "gzip" ? " / -z" : ""}, or name the right one`,
    );
  }
  if (detected === "xz" || detected === "bzip2") {
    const source = shown === "-" ? `... | ${DECOMPRESSOR[detected]}` : `${DECOMPRESSOR[detected]} ${shellWord(shown)}`;
    throw new UsageError(
      `${shown} is ${detected}-compressed, which upload.ts does not decode (no ${detected} in the runtime; it cannot seek either): ` +
        `${source} | upload.ts - --size SIZE (the image's size)`,
    );
  }
  return detected;
}
