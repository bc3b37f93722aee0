// A compressed image decoded as a stream: the encoded bytes (a file, or stdin) go through the
// runtime's native gzip or zstd decoder, and the decoded bytes come out as pieces, pulled by the
// reader. Nothing is held beyond the decoder's own buffers: the input is read only as fast as the
// output is taken (backpressure), so a 100 GiB image costs the same memory as a 1 GiB one.
import { createReadStream } from "node:fs";
import type { Transform } from "node:stream";
import { nodeZlib } from "../builtins.ts";
import { InputError, OperationError, UsageError } from "../errors.ts";
import { ZstdFrames } from "./zstd-frames.ts";

/** How the bytes are stored: compressed, or as they are (stdin). */
export type Encoding = "gzip" | "zstd" | "raw";

/** Bytes per read of a compressed file. */
const READ_PIECE = 1024 * 1024;
/**
 * Bytes per decoded piece: larger than the default 16 KiB decodes faster, with fewer pieces to hand
 * over (bench/RESULTS-formats.md, "Figures the code relies on").
 */
const DECODED_PIECE = 256 * 1024;
/** Decoded bytes the decoder may hold before the reader takes them: it decodes on the thread pool meanwhile. */
const READ_AHEAD = 1024 * 1024;

/** A compressed file's bytes from its start, in 1 MiB pieces. */
export function fileBytes(path: string): AsyncIterable<Uint8Array> {
  return createReadStream(path, { highWaterMark: READ_PIECE });
}

export interface Decoded {
  /** The decoded pieces in order; throws InputError when the data is damaged, OperationError when reading fails. */
  pieces: AsyncIterator<Uint8Array>;
  /** Stop reading and decoding (pending pieces are dropped). */
  close(): void;
}

/** The decoder's failure in the image's terms: where, and whether the data ended early or is damaged. */
function decodeFailure(error: unknown, encoding: Encoding, shown: string, decoded: () => number): Error {
  if (error instanceof OperationError || error instanceof UsageError) return error;
  const code = (error as { code?: string }).code;
  const detail = (error as Error).message ?? String(error);
  if (code === "Z_BUF_ERROR")
    return new InputError(
      `${shown}: the ${encoding} data ends early, after ${decoded()} bytes of the image (a truncated file?)`,
    );
  return new InputError(`${shown}: damaged ${encoding} data after ${decoded()} bytes of the image (${detail})`);
}

/**
 * Decode `input` (the encoded bytes from the start). gzip may hold several members and zstd
 * several frames (each decoded in turn, as `gzip -d` and `zstd -d` do); zstd's frame structure is
 * followed alongside, since its decoder ends a truncated stream without an error.
 */
export function decode(input: AsyncIterable<Uint8Array>, encoding: Encoding, shown: string): Decoded {
  let decoded = 0;
  const readFailure = (error: unknown) =>
    error instanceof OperationError
      ? error
      : new OperationError(`reading ${shown} failed: ${(error as Error).message ?? error}`);
  if (encoding === "raw") {
    const source = input[Symbol.asyncIterator]();
    return {
      pieces: {
        async next() {
          try {
            return await source.next();
          } catch (error) {
            throw readFailure(error);
          }
        },
      },
      close: () => void source.return?.().catch(() => undefined),
    };
  }
  // one 1 MiB POST piece decoded ahead while the socket takes the last one
  const options = { chunkSize: DECODED_PIECE, readableHighWaterMark: READ_AHEAD };
  const decoder: Transform =
    encoding === "gzip" ? nodeZlib().createGunzip(options) : nodeZlib().createZstdDecompress(options);
  const frames = encoding === "zstd" ? new ZstdFrames(shown) : undefined;
  let closed = false;
  /** Resolves when the decoder takes more input, or is gone. */
  const drained = () =>
    new Promise<void>((resolve) => {
      const done = () => {
        decoder.off("drain", done);
        decoder.off("close", done);
        resolve();
      };
      decoder.on("drain", done);
      decoder.on("close", done);
    });
  const pump = async () => {
    try {
      for await (const piece of input) {
        if (closed || decoder.destroyed) return;
        frames?.feed(piece);
        if (!decoder.write(piece)) await drained();
      }
      frames?.end();
      decoder.end();
    } catch (error) {
      decoder.destroy(error instanceof InputError || error instanceof UsageError ? error : readFailure(error));
    }
  };
  void pump();
  const output = decoder[Symbol.asyncIterator]() as AsyncIterator<Uint8Array>;
  return {
    pieces: {
      async next() {
        try {
          const step = await output.next();
          if (!step.done) decoded += step.value.length;
          return step;
        } catch (error) {
          throw decodeFailure(error, encoding, shown, () => decoded);
        }
      },
    },
    close() {
      closed = true;
      decoder.destroy();
    },
  };
}

/** Decode all of `input` once, only to count its bytes (gzip records no size it can be trusted for). */
export async function countDecoded(
  input: AsyncIterable<Uint8Array>,
  encoding: Encoding,
  shown: string,
): Promise<number> {
  const { pieces, close } = decode(input, encoding, shown);
  let total = 0;
  try {
    // bounded by the input: each step takes one decoded piece
    for (let step = await pieces.next(); !step.done; step = await pieces.next()) total += step.value.length;
  } finally {
    close();
  }
  return total;
}
