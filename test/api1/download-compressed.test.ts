// API 1.0 download to FILE.gz / FILE.zst against the emulator: an image with data, zeros and holes
// uploaded, downloaded compressed, decoded here and by the gzip / zstd tools to the same sha256;
// --format over the name; FILE never replaced without --force; a failure mid-way leaves no FILE,
// and the rerun resumes after the last whole piece, byte-identical in the end.
import { afterAll, beforeAll, beforeEach, expect, test } from "bun:test";
import { closeSync, existsSync, readdirSync, renameSync, statSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import download from "../../scripts/download.ts";
import upload from "../../scripts/upload.ts";
import { run, spawnScript } from "../helpers.ts";
import { startStub, type DriveStub } from "../../emulator/server.ts";
import { decodeFile, expectBackupOfImage, IMAGE_SIZE, sha256, writeHoleyImage } from "../formats/compressed-files.ts";
import { CompressedJournal } from "../../lib/formats/compressed-journal.ts";
import { journalPath } from "../../lib/chunks/journal.ts";

const MiB = 1024 * 1024;
const CHUNK = 4 * MiB;

let stub: DriveStub;
let root: string;
let dir: string;
let drive: string;
let imageHash: string;

beforeAll(async () => {
  stub = await startStub();
  root = await mkdtemp(join(tmpdir(), "drivekit-api1-compressed-"));
  const image = join(root, "disk.img");
  imageHash = sha256(writeHoleyImage(image));
  const up = await run(upload, [image, "--quiet"], { env: stub.env, cwd: root });
  expect(up.status).toBe(0);
  drive = up.stdout.trim();
});
afterAll(async () => {
  await stub.stop();
  await rm(root, { recursive: true, force: true });
});
beforeEach(async () => {
  stub.reset();
  dir = await mkdtemp(join(root, "out-"));
});

const reads = () => stub.requests.filter((r) => r.method === "GET" && /\/read\//.test(r.path));

for (const [format, name] of [
  ["gzip", "backup.img.gz"],
  ["zstd", "backup.img.zst"],
] as const) {
  test(`FILE ${name}: ${format} that decodes (here and with the ${format} tool) to the image's exact bytes`, async () => {
    const result = await run(download, [drive, name], { env: stub.env, cwd: dir });
    expect(result.stderr).not.toMatch(/error|warn/);
    expect(result.status).toBe(0);
    const path = join(dir, name);
    expect(result.stdout).toBe(`${path}\n`);
    expect(result.stderr).toContain(`% of the drive`);
    expect(readdirSync(dir)).toEqual([name]);
    await expectBackupOfImage(format, path, imageHash);
    expect(reads().length).toBe(Math.ceil(IMAGE_SIZE / CHUNK));
  });
}

test("--format overrides the name; without FILE the drive UUID gets the format's suffix", async () => {
  const named = await run(download, [drive, "plain.img", "--format", "zstd", "--quiet"], { env: stub.env, cwd: dir });
  expect(named.status).toBe(0);
  expect(sha256(decodeFile("zstd", join(dir, "plain.img")))).toBe(imageHash);
  const unnamed = await run(download, [drive, "--format", "gzip", "--quiet"], { env: stub.env, cwd: dir });
  expect(unnamed.status).toBe(0);
  expect(unnamed.stdout.trim()).toBe(join(dir, `${drive}.gz`));
  expect(sha256(decodeFile("gzip", join(dir, `${drive}.gz`)))).toBe(imageHash);
  // --format raw keeps a .gz name raw
  const raw = await run(download, [drive, "raw.gz", "--format", "raw", "--quiet"], { env: stub.env, cwd: dir });
  expect(raw.status).toBe(0);
  expect(sha256(new Uint8Array(await Bun.file(join(dir, "raw.gz")).arrayBuffer()))).toBe(imageHash);
});

test("an existing FILE.zst is refused without --force (exit 2, nothing sent); -o with a compressed FILE is refused", async () => {
  await Bun.write(join(dir, "taken.zst"), "precious");
  const refused = await run(download, [drive, "taken.zst"], { env: stub.env, cwd: dir });
  expect(refused.status).toBe(2);
  expect(refused.stderr).toMatch(/exists: pass --force/);
  expect(await Bun.file(join(dir, "taken.zst")).text()).toBe("precious");
  const offset = await run(download, [drive, "new.zst", "-o", "4M"], { env: stub.env, cwd: dir });
  expect(offset.status).toBe(2);
  expect(offset.stderr.trim().split("\n")).toHaveLength(1);
  expect(offset.stderr).toContain("-o/--offset");
  expect(stub.requests.length).toBe(0);
  const forced = await run(download, [drive, "taken.zst", "--force", "--quiet"], { env: stub.env, cwd: dir });
  expect(forced.status).toBe(0);
  expect(sha256(decodeFile("zstd", join(dir, "taken.zst")))).toBe(imageHash);
});

test("a failure mid-way: exit 1, no FILE, the .part kept; the rerun reads only after the last whole piece and ends byte-identical", async () => {
  // the 6th read (at 20 MiB) fails for good
  stub.fault({
    method: "GET",
    path: new RegExp(`/read/${5 * CHUNK}/`),
    times: 1,
    action: { status: 401, kind: "auth" },
  });
  const failed = await run(download, [drive, "cut.zst", "--concurrency", "2"], { env: stub.env, cwd: dir });
  expect(failed.status).toBe(1);
  expect(failed.stderr.trim().split("\n")).toHaveLength(1);
  expect(failed.stderr).toMatch(/401 auth/);
  expect(failed.stderr).toContain("cut.zst.part is kept: rerun the same command");
  expect(existsSync(join(dir, "cut.zst"))).toBe(false);
  expect(existsSync(join(dir, "cut.zst.part"))).toBe(true);

  stub.reset();
  const again = await run(download, [drive, "cut.zst"], { env: stub.env, cwd: dir });
  expect(again.status).toBe(0);
  expect(again.stderr).toContain("resuming the download");
  // with 2 reads in flight, at least the first 3 reads (one 4 MiB piece each) were whole when the 6th failed
  const offsets = reads().map((r) => Number(r.path.split("/")[4]));
  const at = Math.min(...offsets);
  expect(at).toBeGreaterThanOrEqual(3 * CHUNK);
  expect(at % CHUNK).toBe(0);
  expect(offsets.length).toBe(Math.ceil((IMAGE_SIZE - at) / CHUNK));
  expect(sha256(decodeFile("zstd", join(dir, "cut.zst")))).toBe(imageHash);
  expect(readdirSync(dir)).toEqual(["cut.zst"]);
});

test("a run stopped after its last piece was recorded but before the rename: the rerun reads nothing and renames", async () => {
  const whole = await run(download, [drive, "whole.zst", "--quiet"], { env: stub.env, cwd: dir });
  expect(whole.status).toBe(0);
  const path = join(dir, "whole.zst");
  const length = statSync(path).size;
  renameSync(path, `${path}.part`);
  const download4M = { file: path, drive, size: IMAGE_SIZE, format: "zstd" as const, pieceSize: CHUNK };
  const started = CompressedJournal.start(journalPath(dir, `download\0${drive}\0${path}`), `${path}.part`, download4M, {
    driveBytes: IMAGE_SIZE,
    partLength: length,
  });
  closeSync(started.fd);
  started.journal.close();
  stub.requests.length = 0;
  const again = await run(download, [drive, "whole.zst"], { env: stub.env, cwd: dir });
  expect(again.status).toBe(0);
  expect(reads().length).toBe(0);
  expect(sha256(decodeFile("zstd", path))).toBe(imageHash);
  expect(readdirSync(dir)).toEqual(["whole.zst"]);
});

test("spawned: a .gz download exits 0 and prints the path; decoded, it is the image (and the gzip tool agrees where installed)", async () => {
  const result = await spawnScript("download", [drive, "spawned.gz", "--quiet"], { env: stub.env, cwd: dir });
  expect(result.stderr).toBe("");
  expect(result.status).toBe(0);
  expect(result.stdout).toBe(`${join(dir, "spawned.gz")}\n`);
  await expectBackupOfImage("gzip", join(dir, "spawned.gz"), imageHash);
});
