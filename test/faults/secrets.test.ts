// No secret in any output, log, journal or process argument: a chunked transfer is stopped midway
// (its journal and lock on disk, its process running) and everything it wrote or shows is searched
// for the secret and for the Authorization value made from it, --verbose included.
import { afterAll, afterEach, beforeAll, beforeEach, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run, startScript } from "../helpers.ts";
import { sameBytes } from "../images.ts";
import { Emulator, Hold, journaled, waitFor } from "./support.ts";
import { transferPaths, type PathName, type TransferPath } from "./paths.ts";

const emulator = new Emulator();
let paths: TransferPath[];
let dir: string;
const holds: Hold[] = [];

beforeAll(async () => {
  await emulator.start();
  paths = transferPaths(emulator);
});
afterAll(async () => {
  await emulator.stop();
});
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "drivekit-secrets-"));
});
afterEach(async () => {
  for (const hold of holds.splice(0)) hold.release(() => new Response("test over\n", { status: 503 }));
  emulator.clear();
  await rm(dir, { recursive: true, force: true });
});

for (const name of ["1.0 upload", "1.0 download", "2.0 chunked upload"] as PathName[]) {
  test(`${name}: the secret is in no output (--verbose), journal, lock or process argument`, async () => {
    const path = paths.find((candidate) => candidate.name === name) as TransferPath;
    const { user, secret } = emulator.stub;
    const basic = Buffer.from(`${user}:${secret}`).toString("base64");
    const transfer = path.prepare(dir, 7);
    const hold = new Hold(3);
    holds.push(hold);
    path.hold(hold);
    const child = startScript(path.script, [...transfer.argv, "--verbose"], { env: path.env(), cwd: dir });
    await waitFor(() => hold.held >= 1 && journaled(dir).size >= 3, "the run midway");

    const seen: string[] = [readFileSync(`/proc/${child.pid}/cmdline`, "utf8")];
    for (const file of readdirSync(dir).filter((file) => file.startsWith(".drivekit-journal-")))
      seen.push(readFileSync(join(dir, file), "utf8"));
    expect(seen.length).toBeGreaterThanOrEqual(3); // the arguments, the journal and the lock
    child.kill("SIGINT");
    const stopped = await child.finished;
    expect(stopped.status).toBe(130);
    hold.release(() => new Response("test over\n", { status: 503 }));
    emulator.clear();
    const again = await run(path.command, [...transfer.argv, "--verbose"], { env: path.env(), cwd: dir });
    expect(again.status).toBe(0);
    expect(sameBytes(path.result(transfer, again) ?? new Uint8Array(), transfer.bytes)).toBe(true);
    // the exchange was logged, its Authorization masked
    expect(stopped.stderr + again.stderr).toContain("authorization: Basic ****");
    seen.push(stopped.stdout, stopped.stderr, again.stdout, again.stderr);
    for (const text of seen) {
      expect(text).not.toContain(secret);
      expect(text).not.toContain(basic);
    }
  });
}
