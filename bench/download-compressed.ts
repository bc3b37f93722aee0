#!/usr/bin/env bun
// Benchmark: a download written straight to .zst against what a user does without it: download the
// drive raw, then `zstd -q FILE` (and `zstd -q -T0 FILE`, zstd's own multi-threading). The drive
// holds the ext4 bench image (bench/images.ts); the emulator runs on loopback as its own process.
// Target (issue 8): the .zst download at least 2x faster than download-then-zstd, 1 GiB drive.
//
//   bun run bench:download-compressed [--size 1G] [--runs 3] [--apis 1,2]
//
// Needs zstd and /usr/bin/time. Before each timing: `sync` (and drop_caches when permitted), so no
// client pays for another's dirty pages. Each client runs under /usr/bin/time for wall time and
// peak RSS; runs alternate which side goes first; every .zst is decoded and compared with the image
// outside the timing. Every run is printed, then one Markdown row per API with the medians.
import { spawnSync } from "node:child_process";
import { mkdirSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { parseSize } from "../lib/size.ts";
import { benchImage } from "./images.ts";
import { flushPageCache, median, ROOT, startEmulator, timed as timedUnder, type Timed } from "./harness.ts";

const WORK = join(ROOT, "bench/work/download-compressed");

const { values } = parseArgs({
  options: {
    size: { type: "string", default: "1G" },
    runs: { type: "string", default: "3" },
    apis: { type: "string", default: "1,2" },
  },
});
const sizeLabel = values.size as string;
const size = parseSize(sizeLabel, "--size");
const runs = Math.max(1, Number(values.runs));
const apis = (values.apis as string).split(",").filter((api) => api === "1" || api === "2");

function sameAsImage(zst: string, image: string): boolean {
  return spawnSync("sh", ["-c", 'zstd -dc -- "$0" | cmp -s - "$1"', zst, image]).status === 0;
}

const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(0);
const seconds = (values: number[]) => median(values).toFixed(2);

if (spawnSync("sh", ["-c", "command -v zstd"]).status !== 0)
  throw new Error("zstd is not installed (Debian: apt-get install -y zstd)");
mkdirSync(WORK, { recursive: true });
const image = benchImage(sizeLabel, size);
const emulator = await startEmulator(["--quiet"]);
const timeFile = join(WORK, "time.txt");
const timed = (argv: string[], env: Record<string, string> = {}) => timedUnder(argv, { cwd: WORK, env, timeFile });
const script = (name: string) => join(ROOT, `scripts/${name}.ts`);
const env = emulator.env;
const ours = join(WORK, "drive.zst");
const raw = join(WORK, "drive.raw");

try {
  // over API 1.0: the drive is exactly the image's size, and both APIs see the same drive
  const upload = await timed(["bun", script("upload"), image, "--api", "1", "--quiet"], env);
  const drive = upload.stdout.trim();
  const zstdVersion = spawnSync("zstd", ["--version"]).stdout.toString().replace(/\*/g, "").trim();
  console.log(
    `bun ${Bun.version}, ${zstdVersion}; ${sizeLabel} ext4 image (${mib(statSync(image).blocks * 512)} MiB allocated), ${runs} runs, loopback`,
  );
  console.log(`${flushPageCache()} before each timing`);
  const rows: string[] = [];
  for (const api of apis) {
    const results = {
      ours: [] as Timed[],
      raw: [] as Timed[],
      zstd: [] as Timed[],
      zstdT0: [] as Timed[],
      ourSize: 0,
      theirSize: 0,
    };
    const oursOnce = async () => {
      rmSync(ours, { force: true });
      flushPageCache();
      results.ours.push(await timed(["bun", script("download"), drive, ours, "--api", api, "--quiet"], env));
      if (!sameAsImage(ours, image)) throw new Error(`API ${api}: ${ours} does not decode to ${image}`);
      results.ourSize = statSync(ours).size;
      rmSync(ours);
    };
    const theirsOnce = async () => {
      rmSync(raw, { force: true });
      rmSync(`${raw}.zst`, { force: true });
      flushPageCache();
      results.raw.push(await timed(["bun", script("download"), drive, raw, "--api", api, "--quiet"], env));
      flushPageCache();
      results.zstd.push(await timed(["zstd", "-q", raw]));
      results.theirSize = statSync(`${raw}.zst`).size;
      if (!sameAsImage(`${raw}.zst`, image)) throw new Error(`API ${api}: ${raw}.zst does not decode to ${image}`);
      rmSync(`${raw}.zst`);
      flushPageCache();
      results.zstdT0.push(await timed(["zstd", "-q", "-T0", raw]));
      rmSync(`${raw}.zst`);
      rmSync(raw);
    };
    for (let run = 0; run < runs; run++) {
      for (const side of run % 2 === 0 ? [oursOnce, theirsOnce] : [theirsOnce, oursOnce]) await side();
      const at = (list: Timed[]) => (list.at(-1) as Timed).seconds.toFixed(2);
      console.log(
        `API ${api} run ${run + 1}: .zst download ${at(results.ours)} s; raw download ${at(results.raw)} s + zstd -q ${at(results.zstd)} s (-T0 ${at(results.zstdT0)} s)`,
      );
    }
    const oursMedian = median(results.ours.map((m) => m.seconds));
    const then = results.raw.map((m, i) => m.seconds + (results.zstd[i] as Timed).seconds);
    const thenT0 = results.raw.map((m, i) => m.seconds + (results.zstdT0[i] as Timed).seconds);
    rows.push(
      `| ${api === "1" ? "1.0" : "2.0"} | ${sizeLabel} ext4 | ${oursMedian.toFixed(2)} | ${seconds(results.raw.map((m) => m.seconds))} | ` +
        `${seconds(results.zstd.map((m) => m.seconds))} | ${seconds(then)} | ${(median(then) / oursMedian).toFixed(2)}× | ` +
        `${seconds(thenT0)} | ${(median(thenT0) / oursMedian).toFixed(2)}× | ${mib(results.ourSize)} | ${mib(results.theirSize)} | ` +
        `${(Math.max(...results.ours.map((m) => m.rssKiB)) / 1024).toFixed(0)} | ${(Math.max(...results.raw.map((m) => m.rssKiB)) / 1024).toFixed(0)} | ` +
        `${results.ours.map((m) => m.seconds.toFixed(2)).join(" ")} |`,
    );
  }
  console.log("");
  console.log(
    "| API | drive | .zst download s | raw download s | zstd -q s | download + zstd -q s | speed-up | download + zstd -q -T0 s | speed-up | .zst MiB (drivekit) | .zst MiB (zstd -q) | peak RSS MiB .zst download | peak RSS MiB raw download | runs .zst download (s) |",
  );
  console.log("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
  for (const row of rows) console.log(row);
} finally {
  await emulator.stop();
  rmSync(ours, { force: true });
  rmSync(raw, { force: true });
  rmSync(`${raw}.zst`, { force: true });
}
