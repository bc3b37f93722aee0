#!/usr/bin/env bun
// List the account's drives: one UUID a line (API 1.0 GET drives/list, API 2.0 GET drives/?limit=0, every page).
import { defineCommand } from "../lib/cli/command.ts";
import { contextOf, runMain } from "../lib/cli/runner.ts";
import { apiArgs, connectionArgs, jsonArgs } from "../lib/cli/args.ts";
import { connect } from "../lib/connect.ts";
import { listDrives } from "../lib/api1/drives.ts";
import { listDrives2 } from "../lib/api2/drives.ts";

const command = defineCommand({
  meta: {
    name: "list",
    description: "List the UUIDs of your drives, one a line",
    examples: [
      { about: "every drive of the account in $EHURI (API 1.0), or $CSURI when set (API 2.0)", args: "" },
      { about: "as a JSON array, from the API 2.0 cloud in $CSURI", args: "--api 2 --json" },
    ],
  },
  args: { ...apiArgs, ...connectionArgs, ...jsonArgs },
  async run(context) {
    const ctx = contextOf(context);
    const { client, config } = await connect(context.args, ctx);
    const drives = config.api === 1 ? await listDrives(client) : (await listDrives2(client)).map((drive) => drive.uuid);
    if (context.args.json) ctx.print(JSON.stringify(drives));
    else if (drives.length > 0) ctx.print(drives.join("\n"));
  },
});

export default command;
if (import.meta.main) runMain(command);
