#!/usr/bin/env bun
// Benchmark: drivekit's API 2.0 download against `curl -L -o` (the command CloudSigma documents),
// on 1 GiB of random data and on the 1 GiB ext4 image of bench/images.ts (about 70% full: its
// zero blocks should stay holes), from the same emulator drive in one run.
//
//   bun run bench/api2-download.ts [--runs 5] [--images random,ext4]
//
// Needs curl, /usr/bin/time (Debian: `apt-get install -y curl time`) and, for the ext4 image,
// mkfs.ext4 (`apt-get install -y e2fsprogs`; without it bench/images.ts builds a generated mix).
// Before each timing: `sync`, then `echo 1 > /proc/sys/vm/drop_caches` when permitted (root), so
// neither client pays for the other's dirty pages; the output says whether the drop was possible.
// The emulator runs as its own process; each client runs under /usr/bin/time for its wall time and
// peak RSS; runs alternate which client goes first. Every output is compared byte for byte with the
// image (outside the timing) and its allocated size (stat blocks × 512) recorded.
import { spawnSync } from "node:child_process";
import { mkdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { benchImage } from "./images.ts";
import { flushPageCache, median, ROOT, startEmulator, timed as timedUnder } from "./harness.ts";

const WORK = join(ROOT, "bench/work/api2-download");
const GiB = 2 ** 30;

const { values } = parseArgs({
  options: {
    runs: { type: "string", default: "5" },
    images: { type: "string", default: "random,ext4" },
  },
});
const runs = Math.max(1, Number(values.runs));
const kinds = String(values.images).split(",");

interface Measure {
  seconds: number;
  rssKiB: number;
  allocated: number;
}

function randomImage(): string {
  const path = join(WORK, "random-1G.raw");
  try {
    if (statSync(path).size === GiB) return path;
  } catch {
    // not made yet
  }
  const result = spawnSync("sh", ["-c", `head -c ${GiB} /dev/urandom > "$0.tmp" && mv "$0.tmp" "$0"`, path], {
    stdio: "inherit",
  });
  if (result.status !== 0) throw new Error("could not make the random image");
  return path;
}

const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(0);

mkdirSync(WORK, { recursive: true });
const stub = await startEmulator(["--quiet"]);
const timed = (argv: string[], env: Record<string, string> = {}) =>
  timedUnder(argv, { cwd: WORK, env, timeFile: join(WORK, "time.txt") });
const auth = stub.env.CSAUTH!;
const curlConfig = join(WORK, "curl.conf");
// curl reads the credentials from a config file, not argv (no secret in `ps`)
writeFileSync(curlConfig, `user = "${auth}"\n`, { mode: 0o600 });
const env = { CSURI: stub.env.CSURI!, CSAUTH: auth };
const out = join(WORK, "download.raw");

const lines: string[] = [];
const log = (line: string) => {
  lines.push(line);
  console.log(line);
};

try {
  const curlVersion = spawnSync("curl", ["--version"]).stdout.toString().split("\n")[0]?.split(" (")[0];
  const images = kinds.map((kind) => {
    if (kind === "random") return { kind, label: "1 GiB random", path: randomImage() };
    if (kind === "ext4") return { kind, label: "1 GiB ext4", path: benchImage("1G", GiB) };
    throw new Error(`--images: unknown kind ${kind}`);
  });
  const rows: string[] = [];
  for (const image of images) {
    const size = statSync(image.path).size;
    const own = statSync(image.path).blocks * 512;
    const upload = spawnSync("curl", [
      "-sS",
      "-f",
      "-K",
      curlConfig,
      "-X",
      "POST",
      "-H",
      "Content-Type: application/octet-stream",
      "-T",
      image.path,
      `${env.CSURI}drives/upload/`,
    ]);
    const drive = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/.exec(upload.stdout.toString())?.[0];
    if (!drive) throw new Error(`upload of ${image.path} failed: ${upload.stderr.toString()}`);
    const results = { curl: [] as Measure[], drivekit: [] as Measure[] };
    const once = async (client: "curl" | "drivekit") => {
      rmSync(out, { force: true });
      flushPageCache();
      const argv =
        client === "curl"
          ? ["curl", "-sS", "-f", "-K", curlConfig, "-L", "-o", out, `${env.CSURI}drives/${drive}/download/`]
          : ["bun", join(ROOT, "scripts/download.ts"), drive, out, "--quiet"];
      const measure = await timed(argv, client === "drivekit" ? env : {});
      const same = spawnSync("cmp", ["-s", image.path, out]).status === 0;
      if (!same || statSync(out).size !== size)
        throw new Error(`${client}: the downloaded file differs from ${image.path}`);
      results[client].push({ ...measure, allocated: statSync(out).blocks * 512 });
      rmSync(out);
    };
    for (let run = 0; run < runs; run++) {
      const order = run % 2 === 0 ? (["curl", "drivekit"] as const) : (["drivekit", "curl"] as const);
      for (const client of order) await once(client);
      console.error(
        `${image.label} run ${run + 1}: curl ${results.curl.at(-1)!.seconds.toFixed(2)} s, drivekit ${results.drivekit.at(-1)!.seconds.toFixed(2)} s`,
      );
    }
    const curlMedian = median(results.curl.map((m) => m.seconds));
    const ourMedian = median(results.drivekit.map((m) => m.seconds));
    rows.push(
      `| ${image.label} | ${mib(own)} | ${curlMedian.toFixed(2)} | ${ourMedian.toFixed(2)} | ${(curlMedian / ourMedian).toFixed(2)} | ` +
        `${mib(median(results.curl.map((m) => m.allocated)))} | ${mib(median(results.drivekit.map((m) => m.allocated)))} | ` +
        `${(Math.max(...results.curl.map((m) => m.rssKiB)) / 1024).toFixed(1)} | ${(Math.max(...results.drivekit.map((m) => m.rssKiB)) / 1024).toFixed(1)} | ` +
        `${results.curl.map((m) => m.seconds.toFixed(2)).join(" ")} | ${results.drivekit.map((m) => m.seconds.toFixed(2)).join(" ")} |`,
    );
  }
  log(
    `bun ${Bun.version}, ${curlVersion}, ${runs} runs each, order alternating, ${flushPageCache()} before each timing`,
  );
  log("");
  log(
    "| image | image allocated MiB | curl s (median) | drivekit s (median) | speed drivekit/curl | curl allocated MiB | drivekit allocated MiB | curl peak RSS MiB | drivekit peak RSS MiB | runs curl (s) | runs drivekit (s) |",
  );
  log("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
  for (const row of rows) log(row);
} finally {
  await stub.stop();
  rmSync(curlConfig, { force: true });
  rmSync(out, { force: true });
}
