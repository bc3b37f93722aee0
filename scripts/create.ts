#!/usr/bin/env bun
// Create a drive and print its info: API 1.0 POST drives/create, API 2.0 POST drives/ (--wait until it is unmounted).
import { defineCommand } from "../lib/cli/command.ts";
import { contextOf, runMain } from "../lib/cli/runner.ts";
import { apiArgs, apiOf, connectionArgs, jsonArgs, waitArgs, waitBounds } from "../lib/cli/args.ts";
import { connect } from "../lib/connect.ts";
import { createDrive } from "../lib/api1/drives.ts";
import { createDrive2 } from "../lib/api2/drives.ts";
import { changesFromFlags2, createOnlyArgs, driveFieldArgs, fieldsFromFlags } from "../lib/cli/fields.ts";
import { printObjects2, printRecords } from "../lib/cli/output.ts";
import { waitShowingStatus } from "../lib/cli/status.ts";
import { UsageError } from "../lib/errors.ts";

const command = defineCommand({
  meta: {
    name: "create",
    description:
      "Create a drive and print its info\n\n" + "Its new UUID is the 'drive' field on API 1.0, 'uuid' on API 2.0.",
    examples: [
      { about: "a 10 GiB drive, once it is ready (API 2.0)", args: "--name web-01 --size 10G --wait" },
      { about: "tagged, with a meta field", args: '--name scratch --size 512M --tags "tmp ci" --meta owner=ops' },
    ],
  },
  args: { ...driveFieldArgs, ...createOnlyArgs, ...apiArgs, ...connectionArgs, ...waitArgs, ...jsonArgs },
  async run(context) {
    const ctx = contextOf(context);
    const { args } = context;
    if (args.name === undefined) throw new UsageError("missing --name");
    if (args.size === undefined) throw new UsageError("missing --size");
    const bounds = waitBounds(args);
    const connectArgs = { ...args, timeout: bounds.requestTimeout };
    if (apiOf(args, ctx) === 1) {
      // an API 1.0 drive is ready at once: --wait has nothing to wait for
      const fields = fieldsFromFlags(args, context.rawArgs);
      const { client } = await connect(connectArgs, ctx, 1);
      const record = await createDrive(client, fields);
      ctx.log.success(`created drive ${record.drive}`);
      printRecords(ctx, [record], Boolean(args.json), true);
      return;
    }
    const { name, size, media, meta, tags, avoid } = changesFromFlags2(args, context.rawArgs);
    const { client } = await connect(connectArgs, ctx, 2);
    let drive = await createDrive2(client, {
      name: name as string,
      size: size as number,
      media: media ?? "disk",
      meta,
      tags,
      avoid,
    });
    ctx.log.success(`created drive ${drive.uuid}${drive.status ? ` (${drive.status})` : ""}`);
    if (args.wait) drive = await waitShowingStatus(ctx, client, drive.uuid, bounds, Boolean(args.quiet));
    printObjects2(ctx, [drive], Boolean(args.json), true);
  },
});

export default command;
if (import.meta.main) runMain(command);
