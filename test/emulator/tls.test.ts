// Every transfer path over https: `bun run stub --tls` as its own process, the scripts spawned with
// the NODE_EXTRA_CA_CERTS it printed (fetch and the upload socket both trust its CA through it),
// each image brought back and compared by hash.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { zstdDecompressSync } from "node:zlib";
import { startEmulator, type Emulator } from "../../bench/harness.ts";
import { spawnScript } from "../helpers.ts";
import { imageBytes } from "../images.ts";

const MiB = 1024 * 1024;
const UUID_LINE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

let emulator: Emulator;
let work: string;
let image: string;
let imageSha: string;

const sha = (bytes: Uint8Array) => new Bun.CryptoHasher("sha256").update(bytes).digest("hex");

beforeAll(async () => {
  emulator = await startEmulator(["--tls", "--quiet"]);
  work = await mkdtemp(join(tmpdir(), "drivekit-tls-"));
  image = join(work, "disk.img");
  // data, and zero runs a transfer may skip
  const bytes = imageBytes(6 * MiB, 7, [
    [MiB, 2 * MiB],
    [4 * MiB, 5 * MiB],
  ]);
  await Bun.write(image, bytes);
  imageSha = sha(bytes);
});

afterAll(async () => {
  await emulator?.stop();
  await rm(work, { recursive: true, force: true });
});

/** The environment a user would export for API `api` from what the emulator printed. */
function envFor(api: 1 | 2): Record<string, string> {
  const { EHURI, EHAUTH, CSURI, CSAUTH, NODE_EXTRA_CA_CERTS } = emulator.env;
  const trust = { NODE_EXTRA_CA_CERTS: NODE_EXTRA_CA_CERTS as string };
  return api === 1
    ? { EHURI: EHURI as string, EHAUTH: EHAUTH as string, ...trust }
    : { CSURI: CSURI as string, CSAUTH: CSAUTH as string, ...trust };
}

async function script(name: string, argv: string[], api: 1 | 2): Promise<string> {
  const result = await spawnScript(name, argv, { env: envFor(api), cwd: work });
  expect(result.stderr).not.toContain("error");
  expect(result.status).toBe(0);
  return result.stdout.trim();
}

async function downloadSha(drive: string, name: string, api: 1 | 2): Promise<string> {
  const path = await script("download", ["--quiet", drive, name], api);
  return sha(await Bun.file(resolve(work, path)).bytes());
}

test("the emulator prints https URLs and the CA to trust", () => {
  const { EHURI, CSURI, NODE_EXTRA_CA_CERTS } = emulator.env;
  expect(EHURI).toStartWith("https://127.0.0.1:");
  expect(CSURI).toStartWith("https://127.0.0.1:");
  expect(NODE_EXTRA_CA_CERTS && existsSync(NODE_EXTRA_CA_CERTS)).toBe(true);
});

test("API 1.0: upload in chunks, download, the same bytes", async () => {
  const drive = await script("upload", ["--quiet", image, "-n", "tls 1.0", "-c", "1M"], 1);
  expect(drive).toMatch(UUID_LINE);
  expect(await downloadSha(drive, "copy-1.img", 1)).toBe(imageSha);
});

test("API 1.0 from a far server (60 ms a round trip): the reads over drivekit's own TLS connections, the same bytes", async () => {
  const far = await startEmulator(["--tls", "--quiet", "--rtt", "60"]);
  try {
    const { EHURI, EHAUTH, NODE_EXTRA_CA_CERTS } = far.env;
    const env = {
      EHURI: EHURI as string,
      EHAUTH: EHAUTH as string,
      NODE_EXTRA_CA_CERTS: NODE_EXTRA_CA_CERTS as string,
    };
    const up = await spawnScript("upload", ["--quiet", "-c", "1M", image], { env, cwd: work });
    expect(up.status).toBe(0);
    const down = await spawnScript("download", ["--verbose", "-c", "1M", up.stdout.trim(), "far-1.img"], {
      env,
      cwd: work,
    });
    expect(down.status).toBe(0);
    expect(sha(await Bun.file(join(work, "far-1.img")).bytes())).toBe(imageSha);
    // every read (of 6) went over drivekit's own connections
    expect(down.stderr.match(/> GET https:\/\/\S+\/read\/\S+ \(own connection\)/g)).toHaveLength(6);
  } finally {
    await far.stop();
  }
});

test("API 2.0: chunked upload through one-time links, download from the second origin, the same bytes", async () => {
  const drive = await script("upload", ["--quiet", image, "-n", "tls 2.0", "-c", "1M"], 2);
  expect(drive).toMatch(UUID_LINE);
  expect(await downloadSha(drive, "copy-2.img", 2)).toBe(imageSha);
});

test("API 2.0: the single streamed POST (--direct), the same bytes back", async () => {
  const drive = await script("upload", ["--quiet", image, "-n", "tls direct", "--direct"], 2);
  expect(drive).toMatch(UUID_LINE);
  expect(await downloadSha(drive, "copy-direct.img", 2)).toBe(imageSha);
});

test("API 2.0: a compressed backup (.zst) decodes to the image", async () => {
  const drive = await script("upload", ["--quiet", image, "-n", "tls zst"], 2);
  const path = await script("download", ["--quiet", drive, "backup.img.zst"], 2);
  expect(sha(zstdDecompressSync(await Bun.file(resolve(work, path)).bytes()))).toBe(imageSha);
});
