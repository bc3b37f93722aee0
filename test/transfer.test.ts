// -o/--offset has one rule (lib/transfer.ts checkOffset): API 1.0, into a drive or a raw FILE; any
// -o elsewhere (API 2.0 uploads, chunked or --direct, API 2.0 downloads, compressed downloads),
// 0 included, is a wrong call: status 2, one line, nothing sent.
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import upload from "../scripts/upload.ts";
import download from "../scripts/download.ts";
import { run } from "./helpers.ts";
import { imageBytes, sameBytes } from "./images.ts";
import { startStub, type DriveStub } from "../emulator/server.ts";
import { installApi2, type Api2Stub } from "../emulator/api2.ts";
import { checkOffset } from "../lib/transfer.ts";

const CHUNK = 64 * 1024;
const RULE = "-o/--offset is API 1.0 only, into a drive or a raw FILE";

let stub: DriveStub;
let api2: Api2Stub;
let dir: string;

beforeAll(async () => {
  stub = await startStub();
  api2 = await installApi2(stub);
});
afterAll(async () => {
  api2.stop();
  await stub.stop();
});
beforeEach(async () => {
  stub.requests.length = 0;
  dir = await mkdtemp(join(tmpdir(), "drivekit-offset-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("refused: status 2, the rule in one line, nothing sent", () => {
  const cases: Array<[string, "upload" | "download", string[], "1" | "2"]> = [
    ["API 2.0 chunked upload", "upload", ["-c", "64k"], "2"],
    ["API 2.0 --direct upload", "upload", ["--direct"], "2"],
    ["API 2.0 download", "download", ["out.img"], "2"],
    ["API 1.0 download into FILE.zst", "download", ["out.zst"], "1"],
    ["API 1.0 download --format gzip", "download", ["out.img", "--format", "gzip"], "1"],
    ["API 2.0 download into FILE.gz", "download", ["out.gz"], "2"],
  ];
  for (const [label, script, extra, api] of cases) {
    for (const offset of ["0", "4096"]) {
      test(`${label}, -o ${offset}`, async () => {
        const image = join(dir, "disk.img");
        writeFileSync(image, imageBytes(2 * CHUNK, 3));
        const target = script === "upload" ? image : stub.addDrive(2 * CHUNK).uuid;
        stub.requests.length = 0;
        const result = await run(script === "upload" ? upload : download, [target, ...extra, "-o", offset], {
          env: api === "1" ? stub.env : api2.env,
          cwd: dir,
        });
        expect(result.status).toBe(2);
        expect(result.stderr.trim().split("\n")).toEqual([expect.stringContaining(RULE)]);
        expect(result.stdout).toBe("");
        expect(stub.requests).toHaveLength(0);
      });
    }
  }
});

describe("allowed on API 1.0 into a drive or a raw FILE", () => {
  test("upload -d DRIVE -o 0 and -o N", async () => {
    const bytes = imageBytes(4 * CHUNK, 5);
    const image = join(dir, "disk.img");
    writeFileSync(image, bytes);
    for (const offset of [0, CHUNK + 4096]) {
      const drive = stub.addDrive(bytes.length, {}, bytes.slice(0, offset)).uuid;
      const result = await run(upload, [image, "-c", "64k", "-d", drive, "-o", String(offset)], {
        env: stub.env,
        cwd: dir,
      });
      expect({ offset, status: result.status }).toEqual({ offset, status: 0 });
      expect(sameBytes(stub.readDrive(drive), bytes)).toBe(true);
    }
  });

  test("download into a raw FILE -o 0 and -o N", async () => {
    const bytes = imageBytes(4 * CHUNK, 6);
    const drive = stub.addDrive(bytes.length, {}, bytes).uuid;
    for (const offset of [0, 2 * CHUNK]) {
      const name = `out-${offset}.img`;
      writeFileSync(join(dir, `${name}.part`), bytes.slice(0, offset));
      const result = await run(download, [drive, name, "-c", "64k", "-o", String(offset)], { env: stub.env, cwd: dir });
      expect({ offset, status: result.status }).toEqual({ offset, status: 0 });
      expect(sameBytes(new Uint8Array(readFileSync(join(dir, name))), bytes)).toBe(true);
    }
  });
});

test("checkOffset: no -o is never refused; the rule in one place", () => {
  expect(() => checkOffset(undefined, 2, "zstd")).not.toThrow();
  expect(() => checkOffset(0, 1)).not.toThrow();
  expect(() => checkOffset(0, 1, "raw")).not.toThrow();
  expect(() => checkOffset(0, 2)).toThrow(RULE);
  expect(() => checkOffset(4096, 1, "gzip")).toThrow(RULE);
});
