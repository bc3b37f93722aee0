#!/usr/bin/env bun
// Change a drive's fields (API 1.0 POST /drives/DRIVE/set) and print its info.
import { defineCommand } from "citty";
import { contextOf, runMain } from "../lib/cli.ts";
import { checkUuid, connectionArgs, jsonArgs } from "../lib/args.ts";
import { connect } from "../lib/connect.ts";
import { setDrive } from "../lib/drives.ts";
import { driveFieldArgs, fieldsFromFlags } from "../lib/fields.ts";
import { printRecords } from "../lib/output.ts";
import { UsageError } from "../lib/errors.ts";

const command = defineCommand({
  meta: { name: "set", description: "Set a drive's name, size, claim type, readers, tags or user:* fields; print its info" },
  args: {
    drive: { type: "positional", description: "Drive UUID" },
    ...driveFieldArgs,
    ...connectionArgs,
    ...jsonArgs,
  },
  async run(context) {
    const ctx = contextOf(context);
    const { args } = context;
    const drive = checkUuid(args.drive, "drive");
    const fields = fieldsFromFlags(args, context.rawArgs);
    if (Object.keys(fields).length === 0) throw new UsageError("nothing to set: pass at least one field flag (see --help)");
    const { client } = await connect(args, ctx, 1);
    printRecords(ctx, [await setDrive(client, drive, fields)], Boolean(args.json), true);
  },
});

export default command;
if (import.meta.main) runMain(command);
