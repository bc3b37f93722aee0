#!/usr/bin/env bun
// Download a whole drive to a file: API 1.0 in parallel reads, or API 2.0 in one direct GET, into a
// sparse FILE.part or, for FILE.gz / FILE.zst (--format), a compressed one. Never overwrites FILE
// without --force. --consistent downloads an API 2.0 snapshot of one instant; --manifest downloads a
// fleet into --dir, N at once, split over machines with --shard. Prints the file's path on stdout
// (a fleet: one JSON line per drive).
import { defineCommand } from "../lib/cli/command.ts";
import { contextOf, runMain } from "../lib/cli/runner.ts";
import { stat } from "node:fs/promises";
import { resolve } from "node:path";
import {
  apiArgs,
  connectionArgs,
  fleetArgs,
  jsonArgs,
  parseChunk,
  parseConcurrency,
  transferArgs,
} from "../lib/cli/args.ts";
import { connect } from "../lib/connect.ts";
import { UsageError } from "../lib/errors.ts";
import { parseSize } from "../lib/size.ts";
import type { DownloadRequest, OutputFormat } from "../lib/transfer.ts";
import { withSuffix } from "../lib/formats/output-format.ts";
import { checkAccess, describeDrive } from "../lib/pairings/access.ts";
import { downloadConsistent, downloadDrive } from "../lib/pairings/download.ts";
import { parseDrives, parseShard, readManifest, runFleet, shardOf } from "../lib/pairings/fleet.ts";
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
      "the last whole piece recorded, about once a second).\n\n" +
      "--consistent (API 2.0): the drive, a running server's disk too, is snapshotted and a temporary clone of " +
      "the snapshot (names starting drivekit-tmp) is downloaded, so FILE holds the bytes of one instant; both are " +
      "removed when the download ends; a download stopped part way keeps them, so that the rerun goes on from the " +
      "same instant (the stop line names them). FILE then defaults to the drive's UUID.\n\n" +
      "--manifest FILE downloads one drive per line (DRIVE [NAME], NAME a file name in --dir, default the UUID " +
      "with --format's suffix; blank lines and # comments skipped and not counted), --drives N at once, one JSON " +
      "object a line on stdout (source, destination, status, bytes, error); --shard I/N takes lines I, I+N... " +
      "What finished is recorded in this folder: a rerun skips it and resumes the rest.",
    examples: [
      { about: "a drive to a sparse raw file", args: "DRIVE disk.img" },
      { about: "a backup compressed with zstd as it arrives", args: "DRIVE backup.img.zst" },
      { about: "a running server's disk as of one instant", args: "DRIVE web-01.img.zst --consistent" },
      {
        about: "nightly backups of a fleet, 4 at once, as of one instant each",
        args: "--manifest drives.txt --dir /backup/today --format zstd --drives 4 --consistent",
      },
    ],
  },
  args: {
    drive: { type: "positional", description: "Drive UUID (not with --manifest)", required: false },
    file: { type: "positional", description: "Output file", required: false },
    chunk: {
      type: "string",
      group: "transfer",
      alias: "c",
      description:
        "Bytes per read, at most 4M (API 2.0: per ranged GET); default 4M, 512k for an API 2.0 drive read in one stream",
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
    consistent: {
      type: "boolean",
      group: "transfer",
      description: "API 2.0: download a snapshot of one instant (through a temporary clone, removed at the end)",
    },
    ...transferArgs,
    ...fleetArgs,
    dir: {
      type: "string",
      group: "fleet",
      description: "With --manifest: the folder the files go to [default: the current one]",
      valueHint: "DIR",
    },
    ...apiArgs,
    ...connectionArgs,
    ...jsonArgs,
  },
  async run(context) {
    const ctx = contextOf(context);
    const { args } = context;
    const chunk = args.chunk === undefined ? undefined : parseChunk(args.chunk);
    const concurrency = parseConcurrency(args.concurrency);
    const manifest = args.manifest;
    if (manifest === undefined && (args.shard !== undefined || args.drives !== undefined || args.dir !== undefined))
      throw new UsageError("--shard, --drives and --dir go with --manifest");
    if (manifest !== undefined && (args.drive !== undefined || args.file !== undefined))
      throw new UsageError("give DRIVE [FILE] or --manifest, not both");
    if (manifest !== undefined && args.offset !== undefined) throw new UsageError("-o/--offset goes with one drive");
    const request: DownloadRequest = {
      drive: manifest === undefined ? checkUuid(args.drive, "drive") : "",
      file: args.file,
      format: args.format as OutputFormat | undefined,
      chunk,
      offset: args.offset === undefined ? undefined : parseSize(args.offset, "--offset"),
      concurrency,
      force: Boolean(args.force),
      quiet: Boolean(args.quiet),
    };
    const consistent = Boolean(args.consistent);
    const shard = args.shard === undefined ? undefined : parseShard(args.shard);
    const drives = parseDrives(args.drives);
    const lines = manifest === undefined ? [] : shardOf(readManifest(manifest, fileNameProblem), shard);
    const connection = await connect(args, ctx);
    if (manifest === undefined) {
      const path = consistent
        ? await downloadConsistent(ctx, connection, request)
        : await downloadDrive(ctx, connection, request);
      ctx.print(args.json ? JSON.stringify({ path }) : path);
      return;
    }
    if (consistent && connection.config.api !== 2)
      throw new UsageError("--consistent needs API 2.0 (it snapshots each drive): API 1.0 has no snapshots");
    const dir = resolve(ctx.cwd, args.dir ?? ".");
    if (!(await isFolder(dir))) throw new UsageError(`--dir ${args.dir}: no such folder (make it first)`);
    await checkAccess(connection, "source");
    await runFleet(ctx, {
      label: "download",
      manifest,
      lines,
      shard,
      drives,
      target: dir,
      transfer: async (line, driveCtx, stop) => {
        const { size } = await describeDrive({ connection, drive: line.drive });
        const one = {
          ...request,
          drive: line.drive,
          file: resolve(dir, line.name ?? withSuffix(line.drive, request.format)),
        };
        const path = consistent
          ? await downloadConsistent(driveCtx, connection, one, stop)
          : await downloadDrive(driveCtx, connection, one);
        return { destination: path, bytes: size };
      },
      report: (report) => ctx.print(ctx.redact(JSON.stringify(report))),
    });
  },
});

async function isFolder(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

/** A manifest's NAME for download: a plain file name in --dir (no folder, not . or ..). */
function fileNameProblem(name: string): string | undefined {
  if (/[/\\]/.test(name) || /^\.+$/.test(name) || Buffer.byteLength(name) > 255)
    return `'${name.slice(0, 60)}' is not a plain file name (it goes in --dir)`;
  return undefined;
}

export default command;
if (import.meta.main) runMain(command);
