#!/usr/bin/env bun
// `bun run stub`: the drive API emulator on 127.0.0.1, for trying every script without a cloud account.
// Prints the lines to export (stdout); logs requests on stderr; Ctrl-C stops it and deletes its drives.
import { parseArgs } from "node:util";
import { startStub, type DriveStub } from "./server.ts";
import { installApi2 } from "./api2.ts";

const USAGE = `Usage: bun run stub [--port N] [--tls] [--rtt MS] [--connect-cost MS] [--bandwidth B]
                    [--conn-bandwidth B] [--min-drive-size BYTES] [--status-delay MS]
                    [--snapshot-delay MS|never] [--concurrency-every N] [--quiet]

The drive API emulator on 127.0.0.1. API 1.0: the drive calls. API 2.0, in the forms the real API
takes: drives (create bare, listed or in objects, bulk, PUT, resize, clone, delete, schema,
filters, avoid, availability groups), the chunked upload (initupload, one-time upload_chunk links),
the single-POST upload and the download, the drives library (libdrives/, three small drives),
snapshots (the drive's bytes as of the instant they are taken) and servers, as far as they mount
drives. Prints the EHURI/EHAUTH and CSURI/CSAUTH lines to export on stdout, then logs requests on
stderr.
  --port N                 listen on N (default: a free port; also STUB_PORT)
  --tls                    https on both origins, with a certificate for 127.0.0.1 and localhost
                           signed by a CA made at start: also prints NODE_EXTRA_CA_CERTS to export
A far, shaped link (off by default; both origins, every body):
  --rtt MS                 each answer comes MS milliseconds later (one round trip; --latency too)
  --connect-cost MS        a new connection's handshakes (TCP, and TLS with --tls) take MS milliseconds
  --bandwidth B            B bytes/s each way, shared by all connections
  --conn-bandwidth B       B bytes/s each way for each connection
The API 2.0 side:
  --min-drive-size B       API 2.0: grow uploaded images under B bytes to B
  --status-delay MS        API 2.0: a new, cloned or resized drive is creating/cloning_dst/resizing
                           for MS milliseconds before it is unmounted (default 1000)
  --snapshot-delay MS      API 2.0: a new snapshot is creating for MS milliseconds before it is
                           available (default 1000); never: it stays creating
  --concurrency-every N    API 2.0: every Nth POST, PUT and DELETE (each method counted apart)
                           answers 503 concurrency, as the real API does to concurrent changes
                           (default 0: only to a second change of an object being changed)
  --quiet                  do not log requests
STUB_USER and STUB_SECRET fix the credentials (default: random).

To mount a drive (a server using it: deleting and resizing it are refused, a snapshot of it is
taken as of one instant), make a server holding it and start it, with the exported CSURI and
CSAUTH (the emulator's own credentials):
  curl -u "$CSAUTH" -H 'content-type: application/json' "\${CSURI}servers/" -d '{"name": "s",
    "cpu": 1000, "mem": 536870912, "vnc_password": "x", "drives": [{"drive": "DRIVE_UUID"}]}'
  curl -u "$CSAUTH" -X POST "\${CSURI}servers/SERVER_UUID/action/?do=start"
(do=stop, then DELETE servers/SERVER_UUID/ to let the drive go).`;

function parseOptions() {
  return parseArgs({
    options: {
      help: { type: "boolean", short: "h", default: false },
      port: { type: "string", default: process.env.STUB_PORT ?? "0" },
      tls: { type: "boolean", default: false },
      rtt: { type: "string" },
      latency: { type: "string" },
      "connect-cost": { type: "string", default: "0" },
      bandwidth: { type: "string", default: "0" },
      "conn-bandwidth": { type: "string", default: "0" },
      quiet: { type: "boolean", default: false },
      // API 2.0: images under this many bytes are grown to it on upload, as CloudSigma does
      "min-drive-size": { type: "string", default: "0" },
      "status-delay": { type: "string", default: "1000" },
      "snapshot-delay": { type: "string", default: "1000" },
      "concurrency-every": { type: "string", default: "0" },
    },
  });
}

function usageError(message: string): never {
  console.error(`stub: error: ${message}\n${USAGE}`);
  process.exit(2);
}

let parsed: ReturnType<typeof parseOptions>;
try {
  parsed = parseOptions();
} catch (error) {
  usageError((error as Error).message);
}
const { values } = parsed;
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
const snapshotDelay =
  values["snapshot-delay"] === "never" ? Number.POSITIVE_INFINITY : Number(values["snapshot-delay"]);
const concurrencyEvery = Number(values["concurrency-every"]);
if (!(snapshotDelay >= 0) || !Number.isSafeInteger(concurrencyEvery) || concurrencyEvery < 0) {
  console.error("stub: error: --snapshot-delay takes milliseconds or never, --concurrency-every a whole number");
  process.exit(2);
}

/** A flag's value as a number of 0 or more. */
function amount(flag: string, text: string | undefined): number {
  const value = Number(text ?? 0);
  if (!Number.isFinite(value) || value < 0 || text?.trim() === "")
    usageError(`--${flag} ${text}: expected a number of 0 or more`);
  return value;
}

let stub: DriveStub;
try {
  stub = await startStub({
    tls: values.tls,
    rttMs: amount(values.rtt === undefined ? "latency" : "rtt", values.rtt ?? values.latency),
    connectCostMs: amount("connect-cost", values["connect-cost"]),
    bandwidth: amount("bandwidth", values.bandwidth),
    connBandwidth: amount("conn-bandwidth", values["conn-bandwidth"]),
    port: amount("port", values.port),
    user: process.env.STUB_USER,
    secret: process.env.STUB_SECRET,
  });
} catch (error) {
  console.error(`stub: error: ${(error as Error).message}`);
  process.exit(1);
}
// first, so a reader waiting for the four lines below has it too
if (stub.caPath) console.log(`export NODE_EXTRA_CA_CERTS=${stub.caPath}`);
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
const api2 = await installApi2(stub, {
  minDriveSize: Number(values["min-drive-size"]) || 0,
  statusDelayMs: Math.max(0, Number(values["status-delay"]) || 0),
  snapshotCreatingMs: snapshotDelay,
});
if (concurrencyEvery > 0) {
  // the one-time upload links carry data, not changes
  for (const method of ["POST", "PUT", "DELETE"])
    stub.fault({
      method,
      path: /^\/api\/2\.0\/(?!upload\/chunk\/)/,
      every: concurrencyEvery,
      action: { status: 503, kind: "concurrency", message: "Concurrent change of the same object (injected): retry" },
    });
}
console.log(`export CSURI=${api2.uri}`);
console.log(`export CSAUTH=${stub.user}:${stub.secret}`);
const stop = async () => {
  api2.stop();
  await stub.stop();
  process.exit(0);
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
