#!/usr/bin/env bun
// Show one drive's info, its full info (API 1.0: the imaging percentage), or every drive's.
// API 2.0: GET drives/{uuid}/ or drives/detail/?limit=0, flattened to the same KEY VALUE lines.
import { defineCommand } from "../lib/cli/command.ts";
import { contextOf, runMain } from "../lib/cli/runner.ts";
import { apiArgs, connectionArgs, jsonArgs } from "../lib/cli/args.ts";
import { connect } from "../lib/connect.ts";
import { allDrivesInfo, driveInfo } from "../lib/api1/drives.ts";
import { getDrive, listDriveDetails } from "../lib/api2/drives.ts";
import { printObjects2, printRecords } from "../lib/cli/output.ts";
import { UsageError } from "../lib/errors.ts";
import { checkUuid } from "../lib/uuid.ts";

const command = defineCommand({
  meta: {
    name: "info",
    description:
      "Print a drive's info, or every drive's, as KEY VALUE lines\n\n" +
      "Records are split by a blank line; API 2.0 objects are flattened the same way (meta:KEY, lists space " +
      "separated), or printed as the server sent them with --json.",
    examples: [
      { about: "one drive; API 1.0 --full adds the imaging percentage", args: "DRIVE --full" },
      { about: "every drive, as JSON", args: "--json" },
    ],
  },
  args: {
    drive: { type: "positional", description: "Drive UUID; without it, every drive", required: false },
    full: {
      type: "boolean",
      description: "API 1.0: full info (shows the imaging percentage); API 2.0 info is always full",
    },
    ...apiArgs,
    ...connectionArgs,
    ...jsonArgs,
  },
  async run(context) {
    const ctx = contextOf(context);
    const { args } = context;
    const drive = args.drive ? checkUuid(args.drive, "drive") : undefined;
    if (args.full && !drive) throw new UsageError("--full needs a DRIVE");
    const { client, config } = await connect(args, ctx);
    const json = Boolean(args.json);
    if (config.api === 2)
      printObjects2(
        ctx,
        drive ? [await getDrive(client, drive)] : await listDriveDetails(client),
        json,
        Boolean(drive),
      );
    else if (drive) printRecords(ctx, [await driveInfo(client, drive, Boolean(args.full))], json, true);
    else printRecords(ctx, await allDrivesInfo(client), json, false);
  },
});

export default command;
if (import.meta.main) runMain(command);
