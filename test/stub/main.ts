#!/usr/bin/env bun
// `bun run stub`: the drive API emulator on 127.0.0.1, for trying every script without a cloud account.
// Prints the lines to export (stdout); logs requests on stderr; Ctrl-C stops it and deletes its drives.
import { parseArgs } from "node:util";
import { startStub } from "./server.ts";
import { installApi2 } from "./api2.ts";

const { values } = parseArgs({
  options: {
    port: { type: "string", default: process.env.STUB_PORT ?? "0" },
    latency: { type: "string", default: "0" },
    bandwidth: { type: "string", default: "0" },
    quiet: { type: "boolean", default: false },
    // API 2.0: images under this many bytes are grown to it on upload, as CloudSigma does
    "min-drive-size": { type: "string", default: "0" },
  },
});

const stub = await startStub({
  latencyMs: Number(values.latency) || 0,
  bandwidth: Number(values.bandwidth) || 0,
  port: Number(values.port) || 0,
  user: process.env.STUB_USER,
  secret: process.env.STUB_SECRET,
});
console.log(`export EHURI=${stub.url}`);
console.log(`export EHAUTH=${stub.user}:${stub.secret}`);
console.error(`drivekit stub listening on ${stub.url} (Ctrl-C to stop; drives live in sparse temporary files)`);
if (!values.quiet) {
  stub.handlers.push((request, path) => {
    console.error(`${request.method} ${path}`);
    return undefined;
  });
}
// after the request logger, so API 2.0 requests are logged too
const api2 = await installApi2(stub, { minDriveSize: Number(values["min-drive-size"]) || 0 });
console.log(`export CSURI=${api2.uri}`);
console.log(`export CSAUTH=${stub.user}:${stub.secret}`);
const stop = async () => {
  api2.stop();
  await stub.stop();
  process.exit(0);
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
