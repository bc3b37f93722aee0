#!/usr/bin/env bun
// The drive API stub as a process of its own for the benchmark, so that its CPU and memory are not
// counted as the client's. Prints one JSON line {url, auth} on stdout; answers GET /__bench/stats
// (body bytes of writes and reads since the last reset) and POST /__bench/reset (also deletes all
// drives, so the disk does not fill up over many runs). Options: --latency MS (a round trip per
// answer), --bandwidth BYTES/S (each way, shared by all connections: emulator/wan.ts).
import { closeSync, rmSync } from "node:fs";
import { parseArgs } from "node:util";
import { startStub } from "../emulator/server.ts";

const { values } = parseArgs({
  options: { latency: { type: "string", default: "0" }, bandwidth: { type: "string", default: "0" } },
});
const stub = await startStub({ rttMs: Number(values.latency) || 0, bandwidth: Number(values.bandwidth) || 0 });

stub.handlers.push((request, path) => {
  if (path === "/__bench/stats") {
    let written = 0;
    let read = 0;
    let writes = 0;
    let reads = 0;
    for (const r of stub.requests) {
      if (r.method === "POST" && r.path.includes("/write/")) {
        written += r.bytesIn;
        writes++;
      } else if (r.method === "GET" && r.path.includes("/read/")) {
        read += r.bytesOut;
        reads++;
      }
    }
    return Response.json({ written, read, writes, reads });
  }
  if (path === "/__bench/reset" && request.method === "POST") {
    stub.requests.length = 0;
    for (const drive of stub.drives.values()) {
      closeSync(drive.fd);
      rmSync(drive.path, { force: true });
    }
    stub.drives.clear();
    return new Response(null, { status: 204 });
  }
  return undefined;
});

console.log(JSON.stringify({ url: stub.url, auth: `${stub.user}:${stub.secret}` }));
const stop = async () => {
  await stub.stop();
  process.exit(0);
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
