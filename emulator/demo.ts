#!/usr/bin/env bun
// `bun run demo`: the main job end to end on the built-in emulator, no cloud account needed.
// Makes a 64 MiB sample image (text, random data, zero runs), uploads it with scripts/upload.ts,
// downloads it with scripts/download.ts, and checks both files hash the same: over API 1.0 (parallel
// chunks), then API 2.0 (chunks through one-time links up, one GET down); then the image as users
// keep it: its .gz uploaded as it is, the drive downloaded to .zst, decoded and hashed. Real
// processes, as an operator would run them; the work folder is removed at the end. `--tls`: all of
// it over https, the scripts trusting the emulator's CA through NODE_EXTRA_CA_CERTS.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { zstdDecompressSync } from "node:zlib";
import { startStub } from "./server.ts";
import { installApi2 } from "./api2.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const MiB = 1024 * 1024;

function sampleImage(size: number): Uint8Array {
  const image = new Uint8Array(size);
  const text = new TextEncoder().encode("drivekit demo: a line of text that compresses well\n".repeat(4096));
  for (let at = 0; at < size; at += 4 * MiB) {
    const kind = (at / (4 * MiB)) % 4;
    if (kind === 0) image.set(text.subarray(0, Math.min(text.length, size - at)), at);
    if (kind === 1)
      for (let i = at; i < Math.min(size, at + 4 * MiB); i += 65536)
        image.set(crypto.getRandomValues(new Uint8Array(65536)).subarray(0, Math.min(65536, size - i)), i);
    // kinds 2 and 3 stay zero: holes the transfer can skip
  }
  return image;
}

async function sha256(path: string): Promise<string> {
  const hasher = new Bun.CryptoHasher("sha256");
  for await (const chunk of Bun.file(path).stream()) hasher.update(chunk);
  return hasher.digest("hex");
}

async function step(title: string, argv: string[], env: Record<string, string>, cwd: string): Promise<string> {
  console.error(`\n$ bun ${argv.map((arg) => (/\s/.test(arg) ? `'${arg}'` : arg)).join(" ")}`);
  // the user's own endpoint settings must not leak into the demo
  const base = Object.fromEntries(
    Object.entries(process.env).filter(([key]) => !/^(EH|CS)(URI|AUTH|DIRECT)$/.test(key)),
  );
  const child = Bun.spawn(["bun", ...argv], {
    cwd,
    env: { ...base, ...trust, ...env },
    stdout: "pipe",
    stderr: "inherit",
  });
  const [out, status] = await Promise.all([new Response(child.stdout).text(), child.exited]);
  if (out.trim()) console.error(out.trimEnd());
  if (status !== 0) throw new Error(`${title} failed with exit status ${status}`);
  return out.trim();
}

let tls = false;
try {
  tls = parseArgs({ options: { tls: { type: "boolean", default: false } } }).values.tls;
} catch (error) {
  console.error(`demo: error: ${(error as Error).message}\nUsage: bun run demo [--tls]`);
  process.exit(2);
}
const stub = await startStub({ tls });
const api2 = await installApi2(stub);
// the scripts trust the emulator's CA as users trust a private one
const trust: Record<string, string> = stub.caPath ? { NODE_EXTRA_CA_CERTS: stub.caPath } : {};
const work = await mkdtemp(join(tmpdir(), "drivekit-demo-"));
let failed = false;
try {
  const image = join(work, "disk.img");
  await Bun.write(image, sampleImage(64 * MiB));
  const image1 = await sha256(image);
  console.error(`emulator on ${stub.url}; sample image ${image} (64 MiB)`);
  for (const [api, env] of [
    ["1.0", stub.env],
    ["2.0", api2.env],
  ] as const) {
    console.error(`\n== API ${api} ==`);
    const drive = await step("upload", [`${ROOT}scripts/upload.ts`, image, "-n", "demo disk"], env, work);
    if (api === "1.0") await step("info", [`${ROOT}scripts/info.ts`, drive], env, work);
    const copy = await step("download", [`${ROOT}scripts/download.ts`, drive, `copy-${api}.img`], env, work);
    const hash = await sha256(resolve(work, copy));
    console.error(`\nsha256 image ${image1}\nsha256 copy  ${hash}`);
    if (hash !== image1) throw new Error(`the copy downloaded over API ${api} differs from the image`);
  }
  console.error("\n== a compressed image up, a compressed backup down (API 2.0) ==");
  const gzipped = join(work, "disk.img.gz");
  await Bun.write(gzipped, Bun.gzipSync(await Bun.file(image).bytes(), { level: 1 }));
  const drive = await step(
    "upload",
    [`${ROOT}scripts/upload.ts`, gzipped, "-n", "demo disk (gz)", "--size", String(64 * MiB)],
    api2.env,
    work,
  );
  const backup = await step("download", [`${ROOT}scripts/download.ts`, drive, "backup.img.zst"], api2.env, work);
  const decoded = zstdDecompressSync(await Bun.file(resolve(work, backup)).bytes());
  const hash = new Bun.CryptoHasher("sha256").update(decoded).digest("hex");
  console.error(`\nsha256 image            ${image1}\nsha256 backup, decoded ${hash}`);
  if (hash !== image1) throw new Error("the .zst backup of the drive made from the .gz does not decode to the image");
  console.error("\ndemo: done: the image went up and came back byte for byte over both APIs, and as .gz up, .zst down");
} catch (error) {
  failed = true;
  console.error(`demo: error: ${(error as Error).message}`);
} finally {
  api2.stop();
  await stub.stop();
  await rm(work, { recursive: true, force: true });
}
process.exitCode = failed ? 1 : 0;
