#!/usr/bin/env bun
// Change a drive's fields (API 1.0 POST /drives/DRIVE/set) and print its info.
import { defineCommand } from "citty";
import { contextOf, runMain } from "../lib/cli/runner.ts";
import { connectionArgs, jsonArgs } from "../lib/cli/args.ts";
import { connect } from "../lib/connect.ts";
import { setDrive } from "../lib/api1/drives.ts";
import { driveFieldArgs, fieldsFromFlags } from "../lib/cli/fields.ts";
import { printRecords } from "../lib/cli/output.ts";
import { UsageError } from "../lib/errors.ts";
import { checkUuid } from "../lib/uuid.ts";

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
