#!/usr/bin/env bun
// API 2.0 snapshots: create one of a drive (a mounted, running drive too: its bytes as of one
// instant), list them, show one, clone one to a new drive, destroy one. API 1.0 has no snapshots:
// status 2, saying what to use.
import { defineCommand } from "../lib/cli/command.ts";
import { contextOf, runMain, type RunContext } from "../lib/cli/runner.ts";
import { apiArgs, apiOf, connectionArgs, jsonArgs, transferArgs, waitArgs, waitBounds } from "../lib/cli/args.ts";
import { printObjects2 } from "../lib/cli/output.ts";
import { confirm } from "../lib/cli/prompt.ts";
import { statusLine, waitShowingStatus } from "../lib/cli/status.ts";
import { connect } from "../lib/connect.ts";
import { OperationError, UsageError } from "../lib/errors.ts";
import type { HttpClient } from "../lib/http.ts";
import { checkPair } from "../lib/kv.ts";
import {
  cloneSnapshot,
  createSnapshot,
  deleteSnapshot,
  getSnapshot,
  listSnapshots,
  waitForSnapshot,
} from "../lib/api2/snapshots.ts";
import { checkUuid } from "../lib/uuid.ts";

const ACTIONS = ["create", "list", "info", "clone", "destroy"] as const;
type Action = (typeof ACTIONS)[number];

const command = defineCommand({
  meta: {
    name: "snapshot",
    description:
      "API 2.0: snapshot a drive, list, show, clone or destroy snapshots\n\n" +
      "ACTION is one of: create DRIVE (prints the snapshot's UUID; a mounted, running drive too: its bytes " +
      "as of one instant), list [DRIVE] (UUIDs, a drive's only when given), info SNAP (KEY VALUE lines), " +
      "clone SNAP (a new drive holding the snapshot's bytes; prints its UUID), destroy SNAP. A snapshot " +
      "cannot be downloaded itself: clone it, or let copy.ts --consistent and download.ts --consistent do " +
      "it all. API 1.0 has no snapshots.",
    examples: [
      { about: "snapshot a running server's disk and wait until it is available", args: "create DRIVE --wait" },
      { about: "a drive's snapshots", args: "list DRIVE" },
      { about: "a new drive from a snapshot, once it is ready", args: 'clone SNAP --name "restored" --wait' },
      { about: "remove a snapshot without asking", args: "destroy SNAP --yes" },
    ],
  },
  args: {
    action: { type: "positional", description: "create, list, info, clone or destroy", valueHint: "ACTION" },
    target: {
      type: "positional",
      description: "create: the drive; list: a drive (optional); info, clone, destroy: the snapshot",
      valueHint: "UUID",
      required: false,
    },
    name: {
      type: "string",
      group: "drive",
      description: "create: the snapshot's name (default: the server's, DRIVE__DATE__TIME); clone: the new drive's",
      valueHint: "NAME",
    },
    yes: { type: "boolean", alias: "y", description: "destroy: do not ask (needed when stdin is not a terminal)" },
    ...apiArgs,
    location: transferArgs.location,
    ...connectionArgs,
    ...waitArgs,
    wait: {
      ...waitArgs.wait,
      description: "create: wait until the snapshot is available; clone: until the new drive is unmounted",
    },
    ...jsonArgs,
  },
  async run(context) {
    const ctx = contextOf(context);
    const { args } = context;
    const action = args.action as Action;
    if (!ACTIONS.includes(action))
      throw new UsageError(
        `unknown ACTION '${String(args.action).slice(0, 40)}': expected create, list, info, clone or destroy`,
      );
    if (apiOf(args, ctx) !== 2)
      throw new UsageError(
        "snapshot.ts is API 2.0 only: API 1.0 has no snapshots (clone.ts copies a drive on the server; pass --api 2, or set CSURI)",
      );
    const target =
      action === "list" && args.target === undefined
        ? undefined
        : checkUuid(args.target, action === "create" || action === "list" ? "DRIVE" : "SNAP");
    if (args.name !== undefined) {
      if (action !== "create" && action !== "clone") throw new UsageError(`--name goes with create or clone`);
      if (args.name.trim() === "") throw new UsageError("--name must not be empty");
      checkPair("name", args.name);
    }
    if (args.wait && action !== "create" && action !== "clone")
      throw new UsageError("--wait goes with create or clone");
    if (action === "destroy" && !args.yes && !ctx.io.stdinIsTTY)
      throw new UsageError(`refusing to destroy snapshot ${target} without a terminal to ask on: pass --yes`);
    const bounds = waitBounds(args);
    const { client } = await connect({ ...args, timeout: bounds.requestTimeout }, ctx, 2);
    const json = Boolean(args.json);
    const quiet = Boolean(args.quiet);
    if (action === "create") {
      const made = await createSnapshot(client, { drive: target as string, name: args.name });
      ctx.log.info(`snapshot ${made.uuid} of drive ${target} taken${made.status ? ` (${made.status})` : ""}`);
      if (args.wait) await waitAvailable(ctx, client, made.uuid, bounds, quiet);
      ctx.print(json ? JSON.stringify({ snapshot: made.uuid }) : made.uuid);
    } else if (action === "list") {
      const snapshots = await listSnapshots(client, target);
      if (json) ctx.print(JSON.stringify(snapshots, null, 2));
      else if (snapshots.length > 0) ctx.print(snapshots.map((snapshot) => snapshot.uuid).join("\n"));
    } else if (action === "info") {
      printObjects2(ctx, [await getSnapshot(client, target as string)], json, true);
    } else if (action === "clone") {
      const drive = await cloneSnapshot(client, target as string, { name: args.name });
      ctx.log.info(`drive ${drive.uuid} cloned from snapshot ${target}${drive.status ? ` (${drive.status})` : ""}`);
      if (args.wait) await waitShowingStatus(ctx, client, drive.uuid, bounds, quiet);
      ctx.print(json ? JSON.stringify({ drive: drive.uuid }) : drive.uuid);
    } else {
      await destroy(ctx, client, target as string, Boolean(args.yes));
    }
  },
});

async function waitAvailable(
  ctx: RunContext,
  client: HttpClient,
  snapshot: string,
  bounds: { limitMs: number; intervalMs: number },
  quiet: boolean,
): Promise<void> {
  const line = statusLine(ctx, quiet);
  const started = performance.now();
  try {
    await waitForSnapshot(client, snapshot, {
      ...bounds,
      onStatus: (status) =>
        line.show(`snapshot ${snapshot}: ${status} (${Math.round((performance.now() - started) / 1000)} s)`),
    });
  } finally {
    line.end();
  }
  ctx.log.success(`snapshot ${snapshot} available`);
}

async function destroy(ctx: RunContext, client: HttpClient, snapshot: string, yes: boolean): Promise<void> {
  if (!yes) {
    const found = await getSnapshot(client, snapshot);
    if (!(await confirm(ctx, `Destroy snapshot ${snapshot}${found.name ? ` '${found.name}'` : ""}?`)))
      throw new OperationError(`snapshot ${snapshot} not destroyed: the answer was not yes`);
  }
  await deleteSnapshot(client, snapshot);
  ctx.log.success(`destroyed snapshot ${snapshot}`);
}

export default command;
if (import.meta.main) runMain(command);
