#!/usr/bin/env bun
// Download a whole drive to a file: API 1.0 in parallel reads, or API 2.0 in one direct GET, into a
// sparse FILE.part or, for FILE.gz / FILE.zst (--format), a compressed one. Never overwrites FILE
// without --force. Prints the file's path on stdout.
import { defineCommand } from "../lib/cli/command.ts";
import { contextOf, runMain } from "../lib/cli/runner.ts";
import { apiArgs, connectionArgs, jsonArgs, parseChunk, parseConcurrency, transferArgs } from "../lib/cli/args.ts";
import { connect } from "../lib/connect.ts";
import { parseSize } from "../lib/size.ts";
import type { DownloadRequest, OutputFormat } from "../lib/transfer.ts";
import { downloadDrive } from "../lib/pairings/download.ts";
import { checkUuid } from "../lib/uuid.ts";

const command = defineCommand({
  meta: {
    name: "download",
    description:
      "Download a whole drive to a file\n\n" +
      "FILE defaults to the drive's UUID (API 1.0) or the server's name for it (API 2.0). Raw: the drive's " +
      "bytes, its zero blocks left as holes. FILE.gz / FILE.zst: compressed as it arrives, no raw copy on " +
      "disk. Written to FILE.part, renamed to FILE when complete; passing failures are retried within the run, " +
      "and a rerun of a stopped download resumes (raw: from the chunks FILE.part holds; gz/zst: from " +
      "the last whole piece recorded, about once a second).",
    examples: [
      { about: "a drive to a sparse raw file", args: "DRIVE disk.img" },
      { about: "a backup compressed with zstd as it arrives", args: "DRIVE backup.img.zst" },
    ],
  },
  args: {
    drive: { type: "positional", description: "Drive UUID" },
    file: { type: "positional", description: "Output file", required: false },
    chunk: {
      type: "string",
      group: "transfer",
      alias: "c",
      description: "Bytes per read (at most 4M; API 2.0: per ranged GET)",
      default: "4M",
      valueHint: "SIZE",
    },
    offset: {
      type: "string",
      group: "transfer",
      alias: "o",
      description: "API 1.0, raw: start at this byte of FILE.part",
      valueHint: "OFFSET",
    },
    format: {
      type: "enum",
      group: "image",
      options: ["raw", "gzip", "zstd"],
      description:
        "raw (sparse), gzip (.gz: gunzip, zcat read it) or zstd (.zst: zstd -d reads it, faster and smaller); " +
        "default: from FILE's suffix, else raw; without FILE, adds the suffix to the default name",
    },
    force: { type: "boolean", group: "image", alias: "f", description: "Overwrite FILE if it exists" },
    ...transferArgs,
    ...apiArgs,
    ...connectionArgs,
    ...jsonArgs,
  },
  async run(context) {
    const ctx = contextOf(context);
    const { args } = context;
    const chunk = parseChunk(args.chunk);
    const concurrency = parseConcurrency(args.concurrency);
    const request: DownloadRequest = {
      drive: checkUuid(args.drive, "drive"),
      file: args.file,
      format: args.format as OutputFormat | undefined,
      chunk,
      offset: args.offset === undefined ? undefined : parseSize(args.offset, "--offset"),
      concurrency,
      force: Boolean(args.force),
      quiet: Boolean(args.quiet),
    };
    const connection = await connect(args, ctx);
    const path = await downloadDrive(ctx, connection, request);
    ctx.print(args.json ? JSON.stringify({ path }) : path);
  },
});

export default command;
if (import.meta.main) runMain(command);
