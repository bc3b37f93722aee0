#!/usr/bin/env bun
// `bun run release`: the standalone drivekit executable (Bun inside: nothing to install where it
// runs) for Linux and macOS on x64 and arm64, into dist/release/, with a SHA256SUMS file that
// `sha256sum -c SHA256SUMS` checks. Bun fetches each target's runtime from the npm registry the
// first time it builds for it.
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { version } from "../package.json";

const TARGETS = ["linux-x64", "linux-arm64", "darwin-x64", "darwin-arm64"] as const;
const ROOT = join(import.meta.dir, "..");
const OUT = join(ROOT, "dist/release");

async function sha256(path: string): Promise<string> {
  const hasher = new Bun.CryptoHasher("sha256");
  for await (const piece of Bun.file(path).stream()) hasher.update(piece);
  return hasher.digest("hex");
}

rmSync(OUT, { recursive: true, force: true });
mkdirSync(OUT, { recursive: true });
const names: string[] = [];
for (const target of TARGETS) {
  const name = `drivekit-${version}-${target}`;
  // bytecode is left out: it could not be checked here on the other platforms
  const build = Bun.spawnSync(
    [
      process.execPath,
      "build",
      join(ROOT, "bin/drivekit.ts"),
      "--compile",
      `--target=bun-${target}`,
      "--outfile",
      join(OUT, name),
    ],
    { cwd: ROOT, stdout: "inherit", stderr: "inherit", env: process.env },
  );
  if (build.exitCode !== 0) {
    console.error(`release: building ${name} failed (status ${build.exitCode})`);
    process.exit(1);
  }
  names.push(name);
}
const sums = await Promise.all(names.map(async (name) => `${await sha256(join(OUT, name))}  ${name}\n`));
await Bun.write(join(OUT, "SHA256SUMS"), sums.join(""));
console.error(`release: ${names.length} executables and SHA256SUMS in ${OUT}`);
