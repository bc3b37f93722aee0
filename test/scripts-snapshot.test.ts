// snapshot.ts (create, list, info, clone, destroy) in-process against the emulator's API 2.0
// snapshots: a snapshot of a mounted drive holds its bytes as of that instant, a clone of it holds
// them too; wrong calls and API 1.0 exit 2 with nothing sent; a --wait is bounded by --timeout.
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import snapshot from "../scripts/snapshot.ts";
import { parseRecord } from "../lib/kv.ts";
import { startStub, type DriveStub } from "../emulator/server.ts";
import { installApi2, type Api2Stub } from "../emulator/api2.ts";
import { imageBytes, sameBytes } from "./images.ts";
import { run } from "./helpers.ts";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const SIZE = 256 * 1024;

let stub: DriveStub;
let api2: Api2Stub;
let env: Record<string, string>;
beforeAll(async () => {
  stub = await startStub();
  api2 = await installApi2(stub);
  env = api2.env;
});
afterAll(async () => {
  api2.stop();
  await stub.stop();
});
beforeEach(() => {
  stub.requests.length = 0;
  api2.snapshots.creatingMs = 0;
});

test("create of a mounted drive: its bytes as of that instant, later writes not in it; list, info, clone, destroy", async () => {
  const before = imageBytes(SIZE, 1);
  const drive = stub.addDrive(SIZE, { name: "web" }, before).uuid;
  stub.mount(drive);
  const created = await run(snapshot, ["create", drive, "--name", "nightly", "--wait", "--interval", "0.05"], { env });
  expect(created).toMatchObject({ status: 0 });
  const snap = created.stdout.trim();
  expect(snap).toMatch(UUID);
  expect(created.stderr).toContain(`snapshot ${snap} available`);
  // the server goes on writing after the snapshot
  stub.writeDrive(drive, 0, imageBytes(4096, 2));
  expect(sameBytes(stub.readSnapshot(snap), before)).toBe(true);

  const other = stub.addDrive(SIZE).uuid;
  const otherSnap = (await run(snapshot, ["create", other], { env })).stdout.trim();
  const all = await run(snapshot, ["list"], { env });
  expect(all.stdout.trim().split("\n").sort()).toEqual([snap, otherSnap].sort());
  const mine = await run(snapshot, ["list", drive, "--json"], { env });
  expect((JSON.parse(mine.stdout) as Array<{ uuid: string }>).map((s) => s.uuid)).toEqual([snap]);

  const shown = await run(snapshot, ["info", snap], { env });
  expect(parseRecord(shown.stdout)).toMatchObject({ uuid: snap, name: "nightly", drive, status: "available" });

  const cloned = await run(snapshot, ["clone", snap, "--name", "restored", "--wait", "--interval", "0.05"], { env });
  expect(cloned.status).toBe(0);
  const restored = cloned.stdout.trim();
  expect(restored).toMatch(UUID);
  expect(stub.drives.get(restored)?.fields.name).toBe("restored");
  expect(sameBytes(stub.readDrive(restored), before)).toBe(true);

  const refused = await run(snapshot, ["destroy", snap], { env });
  expect(refused.status).toBe(2);
  expect(refused.stderr).toContain(`refusing to destroy snapshot ${snap} without a terminal to ask on: pass --yes`);
  expect(stub.snapshots.has(snap)).toBe(true);
  expect(await run(snapshot, ["destroy", snap, "--yes"], { env })).toMatchObject({ status: 0 });
  expect(stub.snapshots.has(snap)).toBe(false);
  await run(snapshot, ["destroy", otherSnap, "--yes"], { env });
});

test("a snapshot that never becomes available: --wait ends at --timeout naming it", async () => {
  api2.snapshots.creatingMs = Number.POSITIVE_INFINITY;
  const drive = stub.addDrive(SIZE).uuid;
  const result = await run(snapshot, ["create", drive, "--wait", "--timeout", "0.3", "--interval", "0.05"], { env });
  expect(result.status).toBe(1);
  const snap = [...stub.snapshots.values()].find((s) => s.drive === drive)?.uuid;
  expect(result.stderr).toMatch(
    new RegExp(`^snapshot: error: snapshot ${snap} is still creating after \\d+ s \\(--timeout\\)$`, "m"),
  );
  expect(result.stdout).toBe("");
});

describe("wrong calls exit 2 with nothing sent", () => {
  const drive = "8f9b42b1-1c5a-4a1e-9d8a-0123456789ab";
  for (const [argv, says, environment] of [
    [["create", drive], "snapshot.ts is API 2.0 only: API 1.0 has no snapshots", "1.0"],
    [["forget", drive], "unknown ACTION 'forget': expected create, list, info, clone or destroy", "2.0"],
    [["create"], "missing DRIVE", "2.0"],
    [["info", "web-01"], "invalid SNAP 'web-01'", "2.0"],
    [["list", "--wait"], "--wait goes with create or clone", "2.0"],
    [["info", drive, "--name", "x"], "--name goes with create or clone", "2.0"],
  ] as const) {
    test(`${argv.join(" ")} (API ${environment})`, async () => {
      const result = await run(snapshot, [...argv], { env: environment === "1.0" ? stub.env : env });
      expect(result.status).toBe(2);
      expect(result.stderr).toContain(says);
      expect(stub.requests).toEqual([]);
    });
  }
});
