#!/usr/bin/env bun
// Image a drive from another (API 1.0 POST /drives/DRIVE/image/SOURCE[/CONVERSION]); --wait follows it.
import { defineCommand } from "citty";
import { contextOf, runMain } from "../lib/cli/runner.ts";
import { connectionArgs } from "../lib/cli/args.ts";
import { connect } from "../lib/connect.ts";
import { driveInfo, imageDrive, type Conversion } from "../lib/api1/drives.ts";
import { OperationError, UsageError } from "../lib/errors.ts";
import { checkUuid } from "../lib/uuid.ts";
import { parseSeconds } from "../lib/config.ts";

/** `imaging` is `true`, `queued` or a percentage such as `45%` (info/full); absent when done. */
export function imagingPercent(value: string | undefined): number | undefined {
  const match = /^(\d+(?:\.\d+)?)\s*%?$/.exec(value ?? "");
  return match ? Math.min(100, Number(match[1])) : undefined;
}

const LOG_EVERY_MS = 5000;

const command = defineCommand({
  meta: { name: "image", description: "Copy SOURCE drive onto DRIVE on the server, optionally gzipping or gunzipping it" },
  args: {
    drive: { type: "positional", description: "Destination drive UUID (it is overwritten)" },
    source: { type: "positional", description: "Source drive UUID" },
    convert: { type: "string", description: "gzip or gunzip the data on the way", valueHint: "gzip|gunzip" },
    wait: { type: "boolean", description: "Follow the imaging to its end, with progress on stderr" },
    interval: { type: "string", description: "With --wait: seconds between checks", default: "2", valueHint: "SECONDS" },
    quiet: { type: "boolean", alias: "q", description: "No progress display" },
    ...connectionArgs,
    timeout: { type: "string", description: "Seconds to wait for each answer, and with --wait for the whole imaging", default: "3600", valueHint: "SECONDS" },
  },
  async run(context) {
    const ctx = contextOf(context);
    const { args } = context;
    const drive = checkUuid(args.drive, "drive");
    const source = checkUuid(args.source, "source drive");
    if (drive === source) throw new UsageError("the drive and the source are the same drive");
    const convert = args.convert;
    if (convert !== undefined && convert !== "gzip" && convert !== "gunzip") {
      throw new UsageError(`invalid --convert '${convert}': expected gzip or gunzip`);
    }
    const limitMs = parseSeconds(args.timeout, "--timeout", 3600);
    const intervalMs = parseSeconds(args.interval, "--interval", 2);
    const { client } = await connect({ ...args, timeout: String(Math.min(limitMs, 120_000) / 1000) }, ctx, 1);
    await imageDrive(client, drive, source, convert as Conversion | undefined);
    ctx.log.info(`imaging of drive ${drive} from ${source}${convert ? ` (${convert})` : ""} started`);
    if (!args.wait) return;

    const started = performance.now();
    const live = ctx.io.stderrIsTTY && !args.quiet;
    let lastLogged = "";
    let lastLogAt = -Infinity;
    // bounded: stops at the time limit at the latest
    for (;;) {
      const info = await driveInfo(client, drive, true);
      const state = info.imaging;
      if (state === undefined || state === "" || state === "false") break;
      const percent = imagingPercent(state);
      const shown = percent === undefined ? state : `${percent}%`;
      if (live) ctx.io.stderr.write(`\r\u001b[2Kimaging ${drive}: ${shown}`);
      else if (!args.quiet && shown !== lastLogged && performance.now() - lastLogAt >= LOG_EVERY_MS) {
        // logs and CI output: a line every few seconds, not one per check
        ctx.log.info(`imaging ${drive}: ${shown}`);
        lastLogged = shown;
        lastLogAt = performance.now();
      }
      const elapsed = performance.now() - started;
      if (elapsed >= limitMs) {
        if (live) ctx.io.stderr.write("\n");
        throw new OperationError(`drive ${drive} is still imaging (${shown}) after ${Math.round(elapsed / 1000)} s; it goes on on the server (check with info.ts --full)`);
      }
      await Bun.sleep(Math.min(intervalMs, limitMs - elapsed));
    }
    if (live) ctx.io.stderr.write("\r\u001b[2K");
    ctx.log.success(`drive ${drive} imaged from ${source}`);
  },
});

export default command;
if (import.meta.main) runMain(command);
