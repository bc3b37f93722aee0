#!/usr/bin/env bun
// Copy a drive to another endpoint, location, account or API generation, streamed: read over one
// API, written over the other, with no local copy; parallel on both sides, resumable by rerunning.
// --consistent copies an API 2.0 snapshot of one instant; --manifest copies a fleet, N at once,
// split over machines with --shard. Prints the destination drive's UUID (a fleet: one JSON line
// per drive).
import { defineCommand } from "../lib/cli/command.ts";
import { contextOf, runMain, type RunContext } from "../lib/cli/runner.ts";
import {
  apiArgs,
  connectionArgs,
  fleetArgs,
  jsonArgs,
  parseChunk,
  parseConcurrency,
  transferArgs,
} from "../lib/cli/args.ts";
import { connect, connectDestination } from "../lib/connect.ts";
import { UsageError } from "../lib/errors.ts";
import { shellWord } from "../lib/files.ts";
import { checkPair } from "../lib/kv.ts";
import { parseApi2Chunk } from "../lib/api2/chunked-destination.ts";
import { checkAccess } from "../lib/pairings/access.ts";
import { copyDrive, type DriveCopy } from "../lib/pairings/copy.ts";
import { parseDrives, parseShard, readManifest, runFleet, shardOf, type FleetReport } from "../lib/pairings/fleet.ts";
import { checkUuid } from "../lib/uuid.ts";

const command = defineCommand({
  meta: {
    name: "copy",
    description:
      "Copy a drive to another endpoint, location, account or API generation, streamed\n\n" +
      "The source is set up as for every script (--api, --uri, --location, --auth-file, the environment); the " +
      "destination by --to-api, --to-uri or --to-location, and --to-auth-file. Without them: the source's " +
      "endpoint and credentials for the same generation; for the other generation (--to-api), its own variables " +
      "(EHURI/EHAUTH or CSURI/CSAUTH). Both sides' credentials are checked before anything is made. The drive is " +
      "read over one API and written over the other as it is read, with no local copy, several requests in " +
      "flight on each side; zero chunks are left out only on a drive the copy created. The new drive is named " +
      "after the source (-n), of its size as the destination's API keeps it; -d DRIVE writes into an existing " +
      "drive (API 1.0: at least as large; API 2.0: a drive whose upload is open for this size).\n\n" +
      "A stopped copy (Ctrl-C, kill -9, a failure) goes on into the same destination drive when the same command " +
      "is run again in the same folder. A source whose size changes while it is read ends the copy and the drive " +
      "it made is destroyed.\n\n" +
      "--consistent (API 2.0 source): the drive, a running server's disk too, is snapshotted and the copy reads a " +
      "temporary clone of the snapshot (names starting drivekit-tmp), so it holds the bytes of one instant; both " +
      "are removed when the copy ends. A copy stopped part way keeps them, so that the rerun goes on from the same " +
      "instant and the destination never mixes two; the stop line names them and the commands that remove them. " +
      "A snapshot that is not available within --timeout is removed.\n\n" +
      "--manifest FILE copies one drive per line (DRIVE [NAME]; blank lines and # comments are skipped and not " +
      "counted), --drives N at once, printing one JSON object a line (source, destination, status done, skipped, " +
      "failed or stopped, bytes, error). --shard I/N takes lines I, I+N, I+2N... so N machines or pods split a " +
      "fleet. What finished is recorded in this folder: a rerun skips it and resumes the rest.",
    examples: [
      {
        about: "from a legacy API 1.0 cloud ($EHURI) to CloudSigma ($CSURI)",
        args: "DRIVE --api 1 --to-api 2 --verify",
      },
      { about: "to another CloudSigma location, same account", args: "DRIVE --location zrh --to-location fra" },
      {
        about: "a running server's disk as of one instant, into another account",
        args: "DRIVE --to-auth-file other-account.auth --consistent",
      },
      {
        about: "machine 2 of 4 copies its quarter of a fleet, 4 drives at once",
        args: "--manifest drives.txt --shard 2/4 --drives 4",
      },
    ],
  },
  args: {
    source: {
      type: "positional",
      description: "The drive to copy (its UUID; not with --manifest)",
      valueHint: "DRIVE",
      required: false,
    },
    "to-api": {
      type: "enum",
      group: "destination",
      options: ["1", "2"],
      description: "The destination's API generation (default: the source's; 2 with --to-location)",
    },
    "to-uri": {
      type: "string",
      group: "destination",
      description: "The destination's endpoint (default: the source's for the same generation, else EHURI or CSURI)",
      valueHint: "URL",
    },
    "to-location": {
      type: "string",
      group: "destination",
      description: "The destination's CloudSigma location, such as fra (https://LOC.cloudsigma.com/api/2.0/)",
      valueHint: "LOC",
    },
    "to-auth-file": {
      type: "string",
      group: "destination",
      description:
        "File holding one line user:secret for the destination (default: the source's credentials for the same generation, else EHAUTH or CSAUTH)",
      valueHint: "PATH",
    },
    name: {
      type: "string",
      group: "destination",
      alias: "n",
      description: "The new drive's name (default: the source drive's)",
      valueHint: "NAME",
    },
    drive: {
      type: "string",
      group: "destination",
      alias: "d",
      description: "An existing destination drive to write into (its old data is overwritten), instead of a new one",
      valueHint: "DRIVE",
    },
    consistent: {
      type: "boolean",
      group: "transfer",
      description: "API 2.0 source: copy a snapshot of one instant (through a temporary clone, removed at the end)",
    },
    verify: {
      type: "boolean",
      group: "transfer",
      description: "Read both drives back and compare them (and their sha256)",
    },
    chunk: {
      type: "string",
      group: "transfer",
      alias: "c",
      description:
        "Bytes per chunk of the destination; API 1.0: at most 4M, default 4M; API 2.0: 64k to 256M, default 8M",
      valueHint: "SIZE",
    },
    ...transferArgs,
    ...fleetArgs,
    ...apiArgs,
    ...connectionArgs,
    ...jsonArgs,
  },
  async run(context) {
    const ctx = contextOf(context);
    const { args } = context;
    const manifest = args.manifest;
    if (manifest === undefined && (args.shard !== undefined || args.drives !== undefined))
      throw new UsageError("--shard and --drives go with --manifest");
    if (manifest !== undefined) {
      if (args.source !== undefined) throw new UsageError("give a DRIVE or --manifest, not both");
      if (args.drive !== undefined || args.name !== undefined)
        throw new UsageError("-d and -n name one drive: with --manifest, each line's NAME names its new drive");
    } else if (args.source === undefined) throw new UsageError("missing DRIVE (the drive to copy), or --manifest FILE");
    const source = args.source === undefined ? undefined : checkUuid(args.source, "DRIVE");
    const into = args.drive === undefined ? undefined : checkUuid(args.drive, "-d/--drive");
    if (source !== undefined && source === into)
      throw new UsageError(`drive ${source} cannot be copied onto itself: give another -d, or none for a new drive`);
    if (args.name !== undefined) checkName(args.name);
    const concurrency = parseConcurrency(args.concurrency);
    const shard = args.shard === undefined ? undefined : parseShard(args.shard);
    const drives = parseDrives(args.drives);
    const lines = manifest === undefined ? [] : shardOf(readManifest(manifest, nameProblem), shard);
    const from = await connect(args, ctx);
    const to = await connectDestination(args, ctx, from);
    try {
      const chunkText = args.chunk;
      const chunk =
        chunkText === undefined ? undefined : to.config.api === 1 ? parseChunk(chunkText) : parseApi2Chunk(chunkText);
      const request = (drive: string, name?: string): DriveCopy => ({
        from: { connection: from, drive },
        to: { connection: to, name, drive: into },
        chunk,
        concurrency,
        quiet: Boolean(args.quiet),
        verify: Boolean(args.verify),
        consistent: Boolean(args.consistent),
        resumeCommand: (target) =>
          `copy.ts ${drive} -d ${target}${flagsAsGiven(args)}${args.consistent ? " --consistent" : ""}`,
      });
      if (source !== undefined) {
        const result = await copyDrive(ctx, request(source, args.name));
        const report: FleetReport = {
          source,
          destination: result.drive,
          status: "done",
          bytes: result.bytes,
          error: null,
        };
        if (result.sha256) report.sha256 = result.sha256;
        ctx.print(args.json ? JSON.stringify(report) : result.drive);
        return;
      }
      if (args.consistent && from.config.api !== 2)
        throw new UsageError(
          "--consistent needs an API 2.0 source (it snapshots each drive): API 1.0 has no snapshots",
        );
      await checkAccess(from, "source");
      await checkAccess(to, "destination");
      await runFleet(ctx, {
        label: "copy",
        manifest: manifest as string,
        lines,
        shard,
        drives,
        target: `api${to.config.api} ${to.config.base.href}`,
        transfer: async (line, driveCtx, stop) => {
          const result = await copyDrive(driveCtx, {
            ...request(line.drive, line.name),
            stop,
            destinationChecked: true,
          });
          return { destination: result.drive, bytes: result.bytes, sha256: result.sha256 };
        },
        report: (report) => printReport(ctx, report),
      });
    } finally {
      from.close();
      to.close();
    }
  },
});

/** A new drive's name: not empty, no newline (API 1.0 would read a second field). */
function nameProblem(name: string): string | undefined {
  if (name.trim() === "") return "the name is empty";
  return /[\r\n]/.test(name) ? "the name holds a newline" : undefined;
}

function checkName(name: string): void {
  const problem = nameProblem(name);
  if (problem) throw new UsageError(`invalid --name: ${problem}`);
  checkPair("name", name);
}

/** The flags that say where the copy reads and writes, and its chunk, as given: for a resume command. */
function flagsAsGiven(args: Record<string, unknown>): string {
  return ["api", "uri", "location", "auth-file", "to-api", "to-uri", "to-location", "to-auth-file", "chunk"]
    .filter((flag) => typeof args[flag] === "string")
    .map((flag) => ` ${flag === "chunk" ? "-c" : `--${flag}`} ${shellWord(args[flag] as string)}`)
    .join("");
}

function printReport(ctx: RunContext, report: FleetReport): void {
  ctx.print(ctx.redact(JSON.stringify(report)));
}

export default command;
if (import.meta.main) runMain(command);
