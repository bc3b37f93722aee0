#!/usr/bin/env bun
// Image a drive from another (API 1.0 POST drives/DRIVE/image/SOURCE[/CONVERSION]); --wait follows it.
// API 2.0 has no imaging: clone.ts copies a drive there.
import { defineCommand } from "../lib/cli/command.ts";
import { contextOf, runMain } from "../lib/cli/runner.ts";
import { apiArgs, apiOf, connectionArgs, waitArgs, waitBounds } from "../lib/cli/args.ts";
import { connect } from "../lib/connect.ts";
import { imageDrive, type Conversion } from "../lib/api1/drives.ts";
import { followImagingShowing } from "../lib/cli/status.ts";
import { UsageError } from "../lib/errors.ts";
import { checkUuid } from "../lib/uuid.ts";

const command = defineCommand({
  meta: {
    name: "image",
    description:
      "API 1.0: copy a drive onto another on the server\n\n" +
      "SOURCE's data overwrites DRIVE's, optionally gzipped or gunzipped on the way. API 2.0 has no imaging: " +
      "clone.ts copies drives there.",
    examples: [
      { about: "copy SOURCE onto DRIVE and follow it to the end", args: "DRIVE SOURCE --wait" },
      { about: "store a gzipped image's data decompressed", args: "DRIVE SOURCE --convert gunzip" },
    ],
  },
  args: {
    drive: { type: "positional", description: "Destination drive UUID (it is overwritten)" },
    source: { type: "positional", description: "Source drive UUID" },
    convert: { type: "enum", options: ["gzip", "gunzip"], description: "gzip or gunzip the data on the way" },
    ...apiArgs,
    ...connectionArgs,
    ...waitArgs,
    wait: { ...waitArgs.wait, description: "Follow the imaging to its end, with progress on stderr" },
  },
  async run(context) {
    const ctx = contextOf(context);
    const { args } = context;
    if (apiOf(args, ctx) === 2)
      throw new UsageError("image.ts is API 1.0 only: on API 2.0 copy a drive with clone.ts SOURCE (or pass --api 1)");
    const drive = checkUuid(args.drive, "drive");
    const source = checkUuid(args.source, "source drive");
    if (drive === source) throw new UsageError("the drive and the source are the same drive");
    const convert = args.convert as Conversion | undefined;
    if (convert !== undefined && convert !== "gzip" && convert !== "gunzip") {
      throw new UsageError(`invalid --convert '${convert}': expected gzip or gunzip`);
    }
    const bounds = waitBounds(args);
    const { client } = await connect({ ...args, timeout: bounds.requestTimeout }, ctx, 1);
    await imageDrive(client, drive, source, convert);
    ctx.log.info(`imaging of drive ${drive} from ${source}${convert ? ` (${convert})` : ""} started`);
    if (!args.wait) return;
    await followImagingShowing(ctx, client, drive, bounds, Boolean(args.quiet));
    ctx.log.success(`drive ${drive} imaged from ${source}`);
  },
});

export default command;
if (import.meta.main) runMain(command);
