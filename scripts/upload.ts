#!/usr/bin/env bun
// Upload a whole image to a new or existing drive: API 1.0 in parallel gzipped chunks, API 2.0 in
// parallel chunks through one-time links (or, with --direct, one POST); both retry and resume.
// The image may be raw, qcow2, gzip or zstd (told by its first bytes), or stdin (-).
// Prints the drive UUID alone on stdout.
import { basename } from "node:path";
import { defineCommand } from "../lib/cli/command.ts";
import { contextOf, runMain } from "../lib/cli/runner.ts";
import { apiArgs, connectionArgs, jsonArgs, parseChunk, parseConcurrency, transferArgs } from "../lib/cli/args.ts";
import { connect } from "../lib/connect.ts";
import { UsageError } from "../lib/errors.ts";
import { parseSize } from "../lib/size.ts";
import type { CompressMode, UploadRequest } from "../lib/transfer.ts";
import { DEFAULT_API2_CHUNK, parseApi2Chunk } from "../lib/api2/chunked-destination.ts";
import { uploadImage } from "../lib/pairings/upload.ts";
import { checkUuid } from "../lib/uuid.ts";
import { createOnlyArgs } from "../lib/cli/fields.ts";

const command = defineCommand({
  meta: {
    name: "upload",
    description:
      "Upload an image to a new drive, or to an existing one with -d\n\n" +
      "The image is raw, qcow2, gzip or zstd (told by its first bytes), or stdin (-). A rerun of a stopped " +
      "upload resumes: a seekable image (raw, qcow2) from where it stopped; a streamed one (gzip, zstd, stdin) " +
      "is decompressed again from its start, but only the chunks the journal does not hold are sent.",
    examples: [
      { about: "a raw or qcow2 image to a new drive, read back and compared", args: "disk.img --verify" },
      {
        about: "from a pipe, which needs the image's size",
        args: "- --size 20G -n web-01",
        pipe: "xz -dc disk.raw.xz",
      },
    ],
  },
  args: {
    file: {
      type: "positional",
      description:
        "Image: a raw file or block device, qcow2, gzip or zstd (told by its first bytes), or - for stdin " +
        "(raw, gzip or zstd; needs --size)",
    },
    format: {
      type: "enum",
      group: "image",
      options: ["raw", "gzip", "zstd", "qcow2"],
      description: "Read the image as this format (default: what its first bytes say; raw: its bytes as they are)",
    },
    gzipped: {
      type: "boolean",
      group: "image",
      alias: "z",
      description: "The image is gzip (the vendor tool's -z): --format gzip",
    },
    size: {
      type: "string",
      group: "image",
      description:
        "The drive's size (k/M/G/T allowed); needed for stdin, which must hold exactly that many bytes; " +
        "without it a gzip image, or zstd without recorded sizes, is decompressed once to count its size " +
        "(qcow2: its virtual size); larger than a file's image: the rest is zeros",
      valueHint: "SIZE",
    },
    chunk: {
      type: "string",
      group: "transfer",
      alias: "c",
      description: `Bytes per chunk (k/M/G/T allowed); API 1.0: at most 4M, default 4M; API 2.0: 64k to 256M, default ${DEFAULT_API2_CHUNK / 2 ** 20}M`,
      valueHint: "SIZE",
    },
    drive: {
      type: "string",
      group: "drive",
      alias: "d",
      description: "Existing drive UUID to write into (its old data is overwritten)",
      valueHint: "DRIVE",
    },
    name: {
      type: "string",
      group: "drive",
      alias: "n",
      description: "Name of the new drive (default: the file's base name)",
      valueHint: "NAME",
    },
    offset: {
      type: "string",
      group: "transfer",
      alias: "o",
      description: "API 1.0: resume from this byte of the image",
      valueHint: "OFFSET",
    },
    compress: {
      type: "enum",
      group: "transfer",
      options: ["auto", "always", "never"],
      description: "API 1.0: gzip each chunk: auto (when it pays), always, never",
      default: "auto",
    },
    tier: { ...createOnlyArgs.tier, description: "API 1.0: the new drive's storage tier (the vendor tool's -t)" },
    verify: { type: "boolean", group: "transfer", description: "Read the drive back and compare it with the image" },
    direct: {
      type: "boolean",
      group: "transfer",
      description: "API 2.0: one streamed POST to the direct host instead of chunks (not resumable)",
    },
    wait: {
      type: "boolean",
      group: "transfer",
      description: "API 2.0: wait until the drive leaves status uploading (--no-wait: do not)",
      default: true,
    },
    ...transferArgs,
    ...apiArgs,
    ...connectionArgs,
    ...jsonArgs,
  },
  async run(context) {
    const ctx = contextOf(context);
    const { args } = context;
    if (!args.file) throw new UsageError("missing FILE (the image to upload, or - for stdin)");
    if (args.gzipped && args.format !== undefined && args.format !== "gzip")
      throw new UsageError(`-z says gzip, --format says ${args.format}: give one`);
    const format = args.gzipped ? "gzip" : (args.format as UploadRequest["format"]);
    const stdin = args.file === "-";
    if (stdin && ctx.io.stdinIsTTY)
      throw new UsageError(
        "stdin (-) is a terminal: pipe the image in, e.g. xz -dc disk.raw.xz | upload.ts - --size 20G",
      );
    const compress = args.compress as CompressMode;
    const concurrency = parseConcurrency(args.concurrency);
    const request: UploadRequest = {
      file: args.file,
      chunk: 0,
      drive: args.drive === undefined ? undefined : checkUuid(args.drive, "--drive"),
      name: args.name ?? (stdin ? "stdin" : basename(args.file)),
      offset: args.offset === undefined ? undefined : parseSize(args.offset, "--offset"),
      concurrency,
      compress,
      quiet: Boolean(args.quiet),
      verify: Boolean(args.verify),
      tier: args.tier,
      format,
      size: args.size === undefined ? undefined : parseSize(args.size, "--size"),
      stdin: ctx.io.stdin,
    };
    if (request.size === 0) throw new UsageError("invalid --size 0: a drive holds at least one byte");
    if (request.name.trim() === "" || /[\r\n]/.test(request.name))
      throw new UsageError("invalid --name: empty or holding a newline");
    const connection = await connect(args, ctx);
    const chunk =
      connection.config.api === 1
        ? parseChunk(args.chunk ?? "4M")
        : parseApi2Chunk(args.chunk ?? `${DEFAULT_API2_CHUNK}`);
    let drive: string;
    try {
      drive = await uploadImage(ctx, connection, {
        ...request,
        chunk,
        direct: Boolean(args.direct),
        wait: args.wait !== false,
      });
    } finally {
      connection.close();
    }
    ctx.print(args.json ? JSON.stringify({ drive }) : drive);
  },
});

export default command;
if (import.meta.main) runMain(command);
