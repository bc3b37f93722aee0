#!/usr/bin/env bun
// Create a drive (API 1.0 POST /drives/create) and print its info.
import { defineCommand } from "citty";
import { contextOf, runMain } from "../lib/cli/runner.ts";
import { connectionArgs, jsonArgs } from "../lib/cli/args.ts";
import { connect } from "../lib/connect.ts";
import { createDrive } from "../lib/api1/drives.ts";
import { createOnlyArgs, driveFieldArgs, fieldsFromFlags } from "../lib/cli/fields.ts";
import { printRecords } from "../lib/cli/output.ts";
import { UsageError } from "../lib/errors.ts";

const command = defineCommand({
  meta: { name: "create", description: "Create a drive and print its info (the new UUID is the 'drive' field)" },
  args: { ...driveFieldArgs, ...createOnlyArgs, ...connectionArgs, ...jsonArgs },
  async run(context) {
    const ctx = contextOf(context);
    const { args } = context;
    if (args.name === undefined) throw new UsageError("missing --name");
    if (args.size === undefined) throw new UsageError("missing --size");
    const fields = fieldsFromFlags(args, context.rawArgs);
    const { client } = await connect(args, ctx, 1);
    const record = await createDrive(client, fields);
    ctx.log.success(`created drive ${record.drive}`);
    printRecords(ctx, [record], Boolean(args.json), true);
  },
});

export default command;
if (import.meta.main) runMain(command);
