#!/usr/bin/env bun
// Read up to 4M from a drive (API 1.0 GET /drives/DRIVE/read/OFFSET/SIZE) to stdout or a file.
// API 2.0 has no piece reads: download.ts fetches whole drives there.
import { defineCommand } from "../lib/cli/command.ts";
import { contextOf, runMain } from "../lib/cli/runner.ts";
import { apiArgs, apiOf, connectionArgs } from "../lib/cli/args.ts";
import { connect } from "../lib/connect.ts";
import { MAX_PIECE, readPiece } from "../lib/api1/drives.ts";
import { UsageError } from "../lib/errors.ts";
import { parseSize } from "../lib/size.ts";
import { checkOutputPath, writeFileAtomically } from "../lib/files.ts";
import { checkUuid } from "../lib/uuid.ts";

const command = defineCommand({
  meta: {
    name: "read",
    description:
      "API 1.0: read up to 4M of a drive\n\n" +
      "SIZE bytes at OFFSET, raw to stdout or to -o FILE. download.ts reads whole drives, on either API.",
    examples: [{ about: "a drive's first sector into a file", args: "DRIVE 0 512 -o mbr.bin" }],
  },
  args: {
    drive: { type: "positional", description: "Drive UUID" },
    offset: { type: "positional", description: "Byte offset on the drive (k/M/G/T allowed)", required: true },
    size: { type: "positional", description: "Bytes to read, at most 4M", required: true },
    output: {
      type: "string",
      group: "output",
      alias: "o",
      description: "Write to FILE instead of stdout",
      valueHint: "FILE",
    },
    force: { type: "boolean", group: "output", alias: "f", description: "Overwrite FILE if it exists" },
    ...apiArgs,
    ...connectionArgs,
  },
  async run(context) {
    const ctx = contextOf(context);
    const { args } = context;
    if (apiOf(args, ctx) === 2)
      throw new UsageError(
        "read.ts is API 1.0 only: on API 2.0 fetch a whole drive with download.ts (or pass --api 1)",
      );
    const drive = checkUuid(args.drive, "drive");
    const offset = parseSize(args.offset, "OFFSET");
    const size = parseSize(args.size, "SIZE");
    if (size === 0) throw new UsageError("SIZE must be more than 0");
    if (size > MAX_PIECE)
      throw new UsageError(
        `SIZE ${size} is over the API's limit of 4M (${MAX_PIECE}) for one read (download.ts reads whole drives)`,
      );
    if (args.output) await checkOutputPath(args.output, Boolean(args.force));
    const { client } = await connect(args, ctx, 1);
    const bytes = await readPiece(client, drive, offset, size);
    if (bytes.length < size) ctx.log.warn(`the drive ended after ${bytes.length} of ${size} bytes`);
    if (args.output) {
      await writeFileAtomically(args.output, bytes);
      ctx.print(args.output);
    } else {
      ctx.io.stdout.write(bytes);
    }
  },
});

export default command;
if (import.meta.main) runMain(command);
