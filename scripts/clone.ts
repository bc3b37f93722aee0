#!/usr/bin/env bun
// Copy a drive to a new one and print the new drive's UUID. API 2.0: POST drives/SOURCE/action/?do=clone
// (--wait until the clone is unmounted). API 1.0: create a drive of SOURCE's size, then image it from
// SOURCE (--wait follows the imaging to its end, as image.ts does).
import { defineCommand } from "../lib/cli/command.ts";
import { contextOf, runMain } from "../lib/cli/runner.ts";
import { apiArgs, apiOf, connectionArgs, waitArgs, waitBounds } from "../lib/cli/args.ts";
import { connect } from "../lib/connect.ts";
import { createDrive, driveInfo, imageDrive, sizeOf } from "../lib/api1/drives.ts";
import { cloneDrive2 } from "../lib/api2/drives.ts";
import { uuidList } from "../lib/cli/fields.ts";
import { followImagingShowing, waitShowingStatus } from "../lib/cli/status.ts";
import { OperationError, UsageError } from "../lib/errors.ts";
import { checkPair } from "../lib/kv.ts";
import { checkUuid } from "../lib/uuid.ts";

const command = defineCommand({
  meta: {
    name: "clone",
    description:
      "Copy a drive to a new one on the server and print its UUID\n\n" +
      "API 2.0: the server's clone. API 1.0: a new drive of the source's size, imaged from it.",
    examples: [{ about: "a named copy, once it is ready", args: 'SOURCE --name "web-02 root" --wait' }],
  },
  args: {
    source: { type: "positional", description: "Source drive UUID" },
    name: {
      type: "string",
      group: "drive",
      description: "The new drive's name (default: the source's)",
      valueHint: "NAME",
    },
    media: {
      type: "enum",
      group: "drive",
      options: ["disk", "cdrom"],
      description: "API 2.0: the new drive's media (default: the source's)",
    },
    avoid: {
      type: "string",
      group: "drive",
      description: "Drives to keep the new one off the hardware of, space or comma separated UUIDs",
      valueHint: "UUIDS",
    },
    ...apiArgs,
    ...connectionArgs,
    ...waitArgs,
  },
  async run(context) {
    const ctx = contextOf(context);
    const { args } = context;
    const source = checkUuid(args.source, "source drive");
    if (args.name !== undefined) {
      if (args.name.trim() === "") throw new UsageError("--name must not be empty");
      checkPair("name", args.name);
    }
    const avoid = args.avoid === undefined ? undefined : uuidList(args.avoid, "--avoid");
    const bounds = waitBounds(args);
    const connectArgs = { ...args, timeout: bounds.requestTimeout };
    const quiet = Boolean(args.quiet);
    if (apiOf(args, ctx) === 2) {
      const { client } = await connect(connectArgs, ctx, 2);
      const clone = await cloneDrive2(client, source, {
        name: args.name,
        media: args.media as "disk" | "cdrom" | undefined,
        avoid,
      });
      ctx.log.info(`drive ${clone.uuid} cloned from ${source}${clone.status ? ` (${clone.status})` : ""}`);
      if (args.wait) await waitShowingStatus(ctx, client, clone.uuid, bounds, quiet);
      ctx.log.success(`drive ${clone.uuid} ${args.wait ? "ready" : "created"}, a clone of ${source}`);
      ctx.print(clone.uuid);
      return;
    }
    if (args.media !== undefined) throw new UsageError("--media is API 2.0 only (pass --api 2, or set CSURI)");
    const { client } = await connect(connectArgs, ctx, 1);
    const info = await driveInfo(client, source);
    const fields: Record<string, string> = {
      name: args.name ?? info.name ?? source,
      size: String(sizeOf(info, source)),
    };
    if (avoid) fields.avoid = avoid.join(" ");
    const created = await createDrive(client, fields);
    const drive = created.drive as string;
    try {
      await imageDrive(client, drive, source);
    } catch (error) {
      throw new OperationError(
        `created drive ${drive} but could not image it from ${source}: ${(error as Error).message} (destroy.ts ${drive} removes it)`,
      );
    }
    ctx.log.info(`imaging of drive ${drive} from ${source} started`);
    if (args.wait) {
      await followImagingShowing(ctx, client, drive, bounds, quiet);
      ctx.log.success(`drive ${drive} imaged from ${source}`);
    }
    ctx.print(drive);
  },
});

export default command;
if (import.meta.main) runMain(command);
