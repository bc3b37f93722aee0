#!/usr/bin/env bun
// Change a drive's size and print its info. API 2.0: POST drives/DRIVE/action/?do=resize with the
// drive's definition (--wait until it is unmounted again); API 1.0: set size.
import { defineCommand } from "../lib/cli/command.ts";
import { contextOf, runMain } from "../lib/cli/runner.ts";
import { apiArgs, apiOf, connectionArgs, jsonArgs, waitArgs, waitBounds } from "../lib/cli/args.ts";
import { connect } from "../lib/connect.ts";
import { setDrive } from "../lib/api1/drives.ts";
import { definitionOf, getDrive, resizeDrive2 } from "../lib/api2/drives.ts";
import { printObjects2, printRecords } from "../lib/cli/output.ts";
import { waitShowingStatus } from "../lib/cli/status.ts";
import { OperationError, UsageError } from "../lib/errors.ts";
import { parseSize } from "../lib/size.ts";
import { checkUuid } from "../lib/uuid.ts";

const command = defineCommand({
  meta: {
    name: "resize",
    description:
      "Change a drive's size and print its info\n\n" +
      "SIZE in bytes, or with k/M/G/T (binary). API 2.0: a mounted drive is refused.",
    examples: [{ about: "grow a drive to 20 GiB, once it is ready again", args: "DRIVE 20G --wait" }],
  },
  args: {
    drive: { type: "positional", description: "Drive UUID" },
    size: { type: "positional", description: "The new size (k/M/G/T allowed)", required: true },
    ...apiArgs,
    ...connectionArgs,
    ...waitArgs,
    ...jsonArgs,
  },
  async run(context) {
    const ctx = contextOf(context);
    const { args } = context;
    const drive = checkUuid(args.drive, "drive");
    const size = parseSize(args.size, "SIZE");
    if (size === 0) throw new UsageError("SIZE must be more than 0");
    const bounds = waitBounds(args);
    const connectArgs = { ...args, timeout: bounds.requestTimeout };
    const json = Boolean(args.json);
    if (apiOf(args, ctx) === 1) {
      // an API 1.0 resize is done when the answer comes: --wait has nothing to wait for
      const { client } = await connect(connectArgs, ctx, 1);
      printRecords(ctx, [await setDrive(client, drive, { size: String(size) })], json, true);
      return;
    }
    const { client } = await connect(connectArgs, ctx, 2);
    const current = await getDrive(client, drive);
    if (current.status === "mounted")
      throw new OperationError(
        `drive ${drive} is mounted: detach it from its server before resizing it; nothing was changed`,
      );
    let resized = await resizeDrive2(client, drive, definitionOf(current, { size }));
    ctx.log.info(
      `drive ${drive}: ${current.size ?? "?"} -> ${size} bytes${resized.status ? ` (${resized.status})` : ""}`,
    );
    if (args.wait) resized = await waitShowingStatus(ctx, client, drive, bounds, Boolean(args.quiet));
    printObjects2(ctx, [resized], json, true);
  },
});

export default command;
if (import.meta.main) runMain(command);
