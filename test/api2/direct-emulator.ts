// The emulator the direct-host suites share (test/api2/upload-direct, download, file-names): both
// APIs on one server, a minimum drive size as a real server has, a folder for images and downloads.
// Live bindings: `stub`, `api2` and `dir` are set once the suite starts.
import { afterAll, afterEach, beforeAll } from "bun:test";
import { writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startStub, type DriveStub } from "../../emulator/server.ts";
import { installApi2, type Api2Stub } from "../../emulator/api2.ts";

export const UUID_LINE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\n$/;
/** The emulator grows smaller drives to this, as a real server may. */
export const MIN_SIZE = 256 * 1024;

export let stub: DriveStub;
export let api2: Api2Stub;
export let dir: string;
let baseHandlers: DriveStub["handlers"];

/** Start the emulator for this suite, and after each test drop what the test added to it. */
export function useDirectEmulator(): void {
  beforeAll(async () => {
    stub = await startStub();
    api2 = await installApi2(stub, { minDriveSize: MIN_SIZE });
    baseHandlers = [...stub.handlers];
    dir = await mkdtemp(join(tmpdir(), "drivekit-api2-"));
  });
  afterAll(async () => {
    api2.stop();
    await stub.stop();
    await rm(dir, { recursive: true, force: true });
  });
  afterEach(() => {
    // keep api2's handler; drop what a test added
    restoreHandlers();
    stub.faults.length = 0;
    api2.originHook = undefined;
    api2.disposition = (drive) => `attachment; filename="${drive.uuid}"`;
    api2.options.answer = undefined;
  });
}

/** Bytes of the drive the download suites read: past a MiB, off the 4 KiB grid. */
export const SIZE = 1024 * 1024 + 4097;
/** That drive and what it holds, once `useDownloadDrive` made them. */
export let drive: string;
export let content: Uint8Array;

/** Make the drive the download suites read (before the tests of the calling describe block). */
export function useDownloadDrive(): void {
  beforeAll(() => {
    content = randomBytes(SIZE, 99);
    drive = stub.addDrive(SIZE, {}, content).uuid;
  });
}

/** The emulator's own handlers only (a test's interceptions gone). */
export function restoreHandlers(): void {
  stub.handlers.splice(0, stub.handlers.length, ...baseHandlers);
}

export function randomBytes(size: number, seed = size): Uint8Array {
  // deterministic and incompressible enough; crypto.getRandomValues caps at 64 KiB a call
  const bytes = new Uint8Array(size);
  let x = seed * 2654435761 + 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    bytes[i] = x & 0xff;
  }
  return bytes;
}

export function image(name: string, bytes: Uint8Array): string {
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return path;
}

/** A fresh folder for download outputs, so each test sees exactly what it wrote. */
export async function freshFolder(): Promise<string> {
  return mkdtemp(join(dir, "out-"));
}

/** Where each request the download origin received began (its Range's first byte, 0 without one), with its status. */
export function originStarts(): Array<[number, number]> {
  return api2.originRequests.map((request) => [
    Number(/^bytes=(\d+)-/.exec(request.headers.range ?? "")?.[1] ?? 0),
    request.status,
  ]);
}
