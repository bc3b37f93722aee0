#!/usr/bin/env bun
// Destroy a drive (API 1.0 POST drives/DRIVE/destroy, API 2.0 DELETE drives/DRIVE/). Asks first on a
// terminal; elsewhere needs --yes.
import { defineCommand } from "../lib/cli/command.ts";
import { contextOf, runMain } from "../lib/cli/runner.ts";
import { apiArgs, connectionArgs } from "../lib/cli/args.ts";
import { connect } from "../lib/connect.ts";
import { destroyDrive, driveInfo } from "../lib/api1/drives.ts";
import { deleteDrive2, getDrive } from "../lib/api2/drives.ts";
import { OperationError, UsageError } from "../lib/errors.ts";
import { confirm } from "../lib/cli/prompt.ts";
import { checkUuid } from "../lib/uuid.ts";

const command = defineCommand({
  meta: {
    name: "destroy",
    description:
      "Destroy a drive and its data\n\n" + "Asks first on a terminal; without one (cron, CI) it refuses unless --yes.",
    examples: [{ about: "without asking", args: "DRIVE --yes" }],
  },
  args: {
    drive: { type: "positional", description: "Drive UUID" },
    yes: { type: "boolean", alias: "y", description: "Do not ask (needed when stdin is not a terminal)" },
    ...apiArgs,
    ...connectionArgs,
  },
  async run(context) {
    const ctx = contextOf(context);
    const { args } = context;
    const drive = checkUuid(args.drive, "drive");
    if (!args.yes && !ctx.io.stdinIsTTY) {
      throw new UsageError(`refusing to destroy drive ${drive} without a terminal to ask on: pass --yes`);
    }
    const { client, config } = await connect(args, ctx);
    const api1 = config.api === 1;
    if (!args.yes) {
      const name = api1 ? (await driveInfo(client, drive)).name : (await getDrive(client, drive)).name;
      if (!(await confirm(ctx, `Destroy drive ${drive}${name ? ` '${name}'` : ""} and all its data?`))) {
        throw new OperationError(`drive ${drive} not destroyed: the answer was not yes`);
      }
    }
    if (api1) await destroyDrive(client, drive);
    else await deleteDrive2(client, drive);
    ctx.log.success(`destroyed drive ${drive}`);
  },
});

export default command;
if (import.meta.main) runMain(command);
