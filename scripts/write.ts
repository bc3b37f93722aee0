#!/usr/bin/env bun
// Write one piece (at most 4M) to a drive at OFFSET (API 1.0 POST /drives/DRIVE/write/OFFSET), gzipped.
import { defineCommand } from "citty";
import { contextOf, runMain } from "../lib/cli/runner.ts";
import { connectionArgs } from "../lib/cli/args.ts";
import { connect } from "../lib/connect.ts";
import { MAX_PIECE, writePiece } from "../lib/api1/drives.ts";
import { UsageError } from "../lib/errors.ts";
import { parseSize } from "../lib/size.ts";
import { readBounded } from "../lib/files.ts";
import { checkUuid } from "../lib/uuid.ts";

const SIZE_SYNTAX = /^\d+[a-zA-Z]?$/;

/** `DRIVE [OFFSET] [FILE|-]`: with two arguments the second is an OFFSET when it reads as a size, else a FILE. */
export function splitWriteArgs(second: string | undefined, third: string | undefined): { offset: string; input: string } {
  if (third !== undefined) return { offset: second ?? "0", input: third };
  if (second === undefined) return { offset: "0", input: "-" };
  return SIZE_SYNTAX.test(second) ? { offset: second, input: "-" } : { offset: "0", input: second };
}

const command = defineCommand({
  meta: {
    name: "write",
    description: "Write one piece of at most 4M from FILE or stdin to a drive at OFFSET, sent gzipped (upload.ts moves whole images)",
  },
  args: {
    drive: { type: "positional", description: "Drive UUID" },
    offset: { type: "positional", description: "Byte offset on the drive (default 0; k/M/G/T allowed)", required: false },
    file: { type: "positional", description: "File to send, or - for stdin (the default)", required: false },
    level: { type: "string", description: "gzip level 1-9", default: "6", valueHint: "N" },
    ...connectionArgs,
  },
  async run(context) {
    const ctx = contextOf(context);
    const { args } = context;
    const drive = checkUuid(args.drive, "drive");
    const split = splitWriteArgs(args.offset, args.file);
    const offset = parseSize(split.offset, "OFFSET");
    const level = Number(args.level);
    if (!/^[1-9]$/.test(args.level)) throw new UsageError(`invalid --level '${args.level}': expected 1 to 9`);
    let data: Uint8Array<ArrayBuffer> | undefined;
    if (split.input === "-") {
      data = await readBounded(ctx.io.stdin(), MAX_PIECE);
      if (!data) throw new UsageError(`stdin holds more than 4M (${MAX_PIECE} bytes): write.ts sends one piece; use upload.ts for more`);
    } else {
      const file = Bun.file(split.input);
      if (!(await file.exists())) throw new UsageError(`${split.input} does not exist`);
      if (file.size > MAX_PIECE) throw new UsageError(`${split.input} holds ${file.size} bytes, over 4M (${MAX_PIECE}): use upload.ts -d ${drive}`);
      data = new Uint8Array(await file.arrayBuffer());
    }
    if (data.length === 0) throw new UsageError("nothing to write: the input is empty");
    const { client } = await connect(args, ctx, 1);
    const gzipped = Bun.gzipSync(data, { level: level as 1 });
    await writePiece(client, drive, offset, gzipped, { gzipped: true });
    ctx.log.success(`wrote ${data.length} bytes at offset ${offset} of drive ${drive}`);
  },
});

export default command;
if (import.meta.main) runMain(command);
