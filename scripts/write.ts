#!/usr/bin/env bun
// Write one piece (at most 4M) to a drive at OFFSET (API 1.0 POST drives/DRIVE/write/OFFSET), gzipped.
// API 2.0 has no piece writes: upload.ts moves whole images there.
import { defineCommand } from "../lib/cli/command.ts";
import { contextOf, runMain } from "../lib/cli/runner.ts";
import { apiArgs, apiOf, connectionArgs } from "../lib/cli/args.ts";
import { connect } from "../lib/connect.ts";
import { parseLevel, readPieceInput, writeGzippedPiece } from "../lib/api1/piece.ts";
import { UsageError } from "../lib/errors.ts";
import { parseSize } from "../lib/size.ts";
import { checkUuid } from "../lib/uuid.ts";

const SIZE_SYNTAX = /^\d+[a-zA-Z]?$/;

/** `DRIVE [OFFSET] [FILE|-]`: with two arguments the second is an OFFSET when it reads as a size, else a FILE. */
export function splitWriteArgs(
  second: string | undefined,
  third: string | undefined,
): { offset: string; input: string } {
  if (third !== undefined) return { offset: second ?? "0", input: third };
  if (second === undefined) return { offset: "0", input: "-" };
  return SIZE_SYNTAX.test(second) ? { offset: second, input: "-" } : { offset: "0", input: second };
}

const command = defineCommand({
  meta: {
    name: "write",
    description:
      "API 1.0: write up to 4M to a drive\n\n" +
      "One piece from FILE or stdin at OFFSET, sent gzipped. upload.ts moves whole images, on either API.",
    examples: [
      { about: "a file at the drive's start", args: "DRIVE 0 mbr.bin" },
      { about: "from stdin at 1 MiB", args: "DRIVE 1M", pipe: "head -c 4096 piece.bin" },
    ],
  },
  args: {
    drive: { type: "positional", description: "Drive UUID" },
    offset: {
      type: "positional",
      description: "Byte offset on the drive (default 0; k/M/G/T allowed)",
      required: false,
    },
    file: { type: "positional", description: "File to send, or - for stdin (the default)", required: false },
    level: { type: "string", description: "gzip level 1-9", default: "6", valueHint: "N" },
    ...apiArgs,
    ...connectionArgs,
  },
  async run(context) {
    const ctx = contextOf(context);
    const { args } = context;
    if (apiOf(args, ctx) === 2)
      throw new UsageError("write.ts is API 1.0 only: on API 2.0 send a whole image with upload.ts (or pass --api 1)");
    const drive = checkUuid(args.drive, "drive");
    const split = splitWriteArgs(args.offset, args.file);
    const offset = parseSize(split.offset, "OFFSET");
    const level = parseLevel(args.level);
    const data = await readPieceInput(split.input, ctx.io.stdin, drive);
    const { client } = await connect(args, ctx, 1);
    await writeGzippedPiece(client, drive, offset, data, level);
    ctx.log.success(`wrote ${data.length} bytes at offset ${offset} of drive ${drive}`);
  },
});

export default command;
if (import.meta.main) runMain(command);
