// upload.ts - as a real process reading a real pipe: with --size the image goes up (raw, gzip,
// zstd as the first bytes say) and download.ts brings back the same bytes; without --size,
// status 2 and nothing sent.
import { afterAll, beforeAll, beforeEach, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { zstdCompressSync } from "node:zlib";
import { spawnScript } from "../helpers.ts";
import { imageBytes } from "../images.ts";
import { startStub, type DriveStub } from "../../emulator/server.ts";
import { installApi2, type Api2Stub } from "../../emulator/api2.ts";

const SIZE = 9 * 65536 + 321;
const bytes = imageBytes(SIZE, 31, [[65536, 4 * 65536]]);
const sha = (data: Uint8Array) => new Bun.CryptoHasher("sha256").update(data).digest("hex");

let stub: DriveStub;
let api2: Api2Stub;
let dir: string;
beforeAll(async () => {
  stub = await startStub();
  api2 = await installApi2(stub);
  dir = await mkdtemp(join(tmpdir(), "drivekit-stdin-"));
});
afterAll(async () => {
  api2.stop();
  await stub.stop();
  await rm(dir, { recursive: true, force: true });
});
beforeEach(() => {
  stub.requests.length = 0;
});

for (const [api, env] of [
  ["1", () => stub.env],
  ["2", () => api2.env],
] as const) {
  test(`API ${api}: gzip and zstd piped into upload.ts - --size; download.ts gives back the raw image`, async () => {
    for (const [label, input] of [
      ["gzip", Bun.gzipSync(bytes as Uint8Array<ArrayBuffer>)],
      ["zstd", zstdCompressSync(bytes)],
    ] as const) {
      const up = await spawnScript("upload", ["-", "--size", String(SIZE), "-c", "64k"], {
        env: env(),
        cwd: dir,
        stdin: input,
      });
      expect(up.stderr).not.toMatch(/error/);
      expect(up.status).toBe(0);
      const uuid = up.stdout.trim();
      const out = join(dir, `back-${api}-${label}.raw`);
      const down = await spawnScript("download", [uuid, out], { env: env(), cwd: dir });
      expect(down.stderr).not.toMatch(/error/);
      expect(down.status).toBe(0);
      const back = new Uint8Array(await Bun.file(out).arrayBuffer());
      // a 2.0 drive may be rounded up to a KiB: the tail is zeros
      expect(sha(back.subarray(0, SIZE))).toBe(sha(bytes));
      expect(back.subarray(SIZE).every((byte) => byte === 0)).toBe(true);
    }
  });
}

test("upload.ts - without --size: status 2, one line, nothing sent", async () => {
  const result = await spawnScript("upload", ["-"], { env: stub.env, cwd: dir, stdin: bytes });
  expect(result.status).toBe(2);
  expect(result.stdout).toBe("");
  expect(result.stderr).toBe(
    "upload: error: reading the image from stdin (-) needs --size SIZE: a stream does not tell how large its image is\n",
  );
  expect(stub.requests.length).toBe(0);
});
