#!/usr/bin/env bun
// List the account's drives (API 1.0 GET /drives/list): one UUID a line.
import { defineCommand } from "citty";
import { contextOf, runMain } from "../lib/cli/runner.ts";
import { connectionArgs, jsonArgs } from "../lib/cli/args.ts";
import { connect } from "../lib/connect.ts";
import { listDrives } from "../lib/api1/drives.ts";

const command = defineCommand({
  meta: { name: "list", description: "List the UUIDs of your drives, one a line (API 1.0)" },
  args: { ...connectionArgs, ...jsonArgs },
  async run(context) {
    const ctx = contextOf(context);
    const { client } = await connect(context.args, ctx, 1);
    const drives = await listDrives(client);
    if (context.args.json) ctx.print(JSON.stringify(drives));
    else if (drives.length > 0) ctx.print(drives.join("\n"));
  },
});

export default command;
if (import.meta.main) runMain(command);
