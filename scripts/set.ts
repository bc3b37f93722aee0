#!/usr/bin/env bun
// Change a drive's fields and print its info: API 1.0 POST drives/DRIVE/set; API 2.0 reads the
// drive, applies the changes and PUTs the definition (a size change on a mounted drive is refused).
import { defineCommand } from "../lib/cli/command.ts";
import { contextOf, runMain } from "../lib/cli/runner.ts";
import { apiArgs, apiOf, connectionArgs, jsonArgs } from "../lib/cli/args.ts";
import { connect } from "../lib/connect.ts";
import { setDrive } from "../lib/api1/drives.ts";
import { definitionOf, getDrive, updateDrive2 } from "../lib/api2/drives.ts";
import { changesFromFlags2, driveFieldArgs, fieldsFromFlags } from "../lib/cli/fields.ts";
import { printObjects2, printRecords } from "../lib/cli/output.ts";
import { OperationError, UsageError } from "../lib/errors.ts";
import { checkUuid } from "../lib/uuid.ts";

const command = defineCommand({
  meta: {
    name: "set",
    description:
      "Change a drive's fields and print its info\n\n" +
      "Its name, size, tags, meta (user:*) fields and more. API 2.0: the drive's definition is read, changed " +
      "and put back; a size change on a mounted drive is refused.",
    examples: [
      { about: "rename a drive and replace its tags", args: 'DRIVE --name web-01-old --tags "old web"' },
      { about: "add a meta field, as JSON", args: "DRIVE --meta role=standby --json" },
    ],
  },
  args: {
    drive: { type: "positional", description: "Drive UUID" },
    ...driveFieldArgs,
    ...apiArgs,
    ...connectionArgs,
    ...jsonArgs,
  },
  async run(context) {
    const ctx = contextOf(context);
    const { args } = context;
    const drive = checkUuid(args.drive, "drive");
    const json = Boolean(args.json);
    if (apiOf(args, ctx) === 1) {
      const fields = fieldsFromFlags(args, context.rawArgs);
      if (Object.keys(fields).length === 0)
        throw new UsageError("nothing to set: pass at least one field flag (see --help)");
      const { client } = await connect(args, ctx, 1);
      printRecords(ctx, [await setDrive(client, drive, fields)], json, true);
      return;
    }
    const { meta, ...changes } = changesFromFlags2(args, context.rawArgs);
    if (Object.keys(changes).length === 0 && !meta)
      throw new UsageError("nothing to set: pass at least one field flag (see --help)");
    const { client } = await connect(args, ctx, 2);
    const current = await getDrive(client, drive);
    if (changes.size !== undefined && changes.size !== current.size && current.status === "mounted") {
      throw new OperationError(
        `drive ${drive} is mounted: its size cannot change (detach it from its server first); nothing was changed`,
      );
    }
    const definition = definitionOf(current, changes);
    if (meta) definition.meta = { ...definition.meta, ...meta };
    printObjects2(ctx, [await updateDrive2(client, drive, definition)], json, true);
  },
});

export default command;
if (import.meta.main) runMain(command);
