// One piece for write.ts: read it (a file, or stdin for `-`) bounded by the API's 4M per write,
// and send it gzipped with a Content-Length (API 1.0 POST drives/DRIVE/write/OFFSET).
import { UsageError } from "../errors.ts";
import { readBounded } from "../files.ts";
import type { HttpClient } from "../http.ts";
import { MAX_PIECE, writePiece } from "./drives.ts";

/** The bytes of FILE, or of stdin for `-`: at most 4M, not empty (a UsageError otherwise, nothing sent). */
export async function readPieceInput(
  input: string,
  stdin: () => ReadableStream<Uint8Array>,
  drive: string,
): Promise<Uint8Array<ArrayBuffer>> {
  let data: Uint8Array<ArrayBuffer> | undefined;
  if (input === "-") {
    data = await readBounded(stdin(), MAX_PIECE);
    if (!data)
      throw new UsageError(
        `stdin holds more than 4M (${MAX_PIECE} bytes): write.ts sends one piece; use upload.ts for more`,
      );
  } else {
    const file = Bun.file(input);
    if (!(await file.exists())) throw new UsageError(`${input} does not exist`);
    if (file.size > MAX_PIECE)
      throw new UsageError(`${input} holds ${file.size} bytes, over 4M (${MAX_PIECE}): use upload.ts -d ${drive}`);
    data = new Uint8Array(await file.arrayBuffer());
  }
  if (data.length === 0) throw new UsageError("nothing to write: the input is empty");
  return data;
}

/** gzip level 1-9, from the flag's text. */
export function parseLevel(text: string): 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 {
  if (!/^[1-9]$/.test(text)) throw new UsageError(`invalid --level '${text}': expected 1 to 9`);
  return Number(text) as 1;
}

/** Gzip the piece and write it at OFFSET. */
export async function writeGzippedPiece(
  client: HttpClient,
  drive: string,
  offset: number,
  data: Uint8Array<ArrayBuffer>,
  level: number,
): Promise<void> {
  const gzipped = Bun.gzipSync(data, { level: level as 1 });
  await writePiece(client, drive, offset, gzipped, { gzipped: true });
}
