#!/usr/bin/env bun
// Show one drive's info, its full info (imaging percentage), or every drive's (API 1.0).
import { defineCommand } from "citty";
import { contextOf, runMain } from "../lib/cli/runner.ts";
import { connectionArgs, jsonArgs } from "../lib/cli/args.ts";
import { connect } from "../lib/connect.ts";
import { allDrivesInfo, driveInfo } from "../lib/api1/drives.ts";
import { printRecords } from "../lib/cli/output.ts";
import { UsageError } from "../lib/errors.ts";
import { checkUuid } from "../lib/uuid.ts";

const command = defineCommand({
  meta: { name: "info", description: "Print a drive's info as KEY VALUE lines, or all drives' (records split by a blank line)" },
  args: {
    drive: { type: "positional", description: "Drive UUID; without it, every drive", required: false },
    full: { type: "boolean", description: "Full info (shows the imaging percentage)" },
    ...connectionArgs,
    ...jsonArgs,
  },
  async run(context) {
    const ctx = contextOf(context);
    const { args } = context;
    const drive = args.drive ? checkUuid(args.drive, "drive") : undefined;
    if (args.full && !drive) throw new UsageError("--full needs a DRIVE");
    const { client } = await connect(args, ctx, 1);
    if (drive) printRecords(ctx, [await driveInfo(client, drive, Boolean(args.full))], Boolean(args.json), true);
    else printRecords(ctx, await allDrivesInfo(client), Boolean(args.json), false);
  },
});

export default command;
if (import.meta.main) runMain(command);
