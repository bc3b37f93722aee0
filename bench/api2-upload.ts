#!/usr/bin/env bun
// Benchmark: drivekit's API 2.0 chunked upload against a client doing what CloudSigma's Python
// client does (bench/baseline-upload2.py: 4 workers, 5 MiB chunks, link then POST, no read-ahead)
// and against drivekit's single POST (--direct), on the same emulator.
//
//   bun bench/api2-upload.ts [--scenario loopback|latency|bandwidth|rss|resume] [--runs 3]
//                            [--image ext4|random] [--size 1G] [--args=-c 8M --concurrency 6]
//                            [--store DIR]
//
// The emulator runs as its own process (`bun run stub`, so its CPU and memory are not counted as
// the client's), with --latency 100 for `latency` and --bandwidth 10000000 for `bandwidth`; each
// client runs under /usr/bin/time for wall time and peak RSS; drives are destroyed after each run.
// `resume` interrupts an upload (SIGINT) at half its chunks, reruns it, and counts the chunk POSTs
// of both runs from the emulator's request log. Every run is printed as a Markdown table row.
// --store DIR keeps the emulator's drives in DIR (a tmpfs such as /dev/shm/x takes the disk's
// write-back, which swings loopback runs by a third here, out of the comparison); removed at the end.
import { mkdirSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { parseSize } from "../lib/size.ts";
import { benchImage } from "./images.ts";
import { DEFAULT_API2_CHUNK } from "../lib/api2/chunked-destination.ts";
import { median, ROOT, startEmulator, timed as timedUnder } from "./harness.ts";

const WORK = join(ROOT, "bench/work/api2");
mkdirSync(WORK, { recursive: true });

const { values } = parseArgs({
  options: {
    scenario: { type: "string", default: "loopback" },
    runs: { type: "string", default: "3" },
    image: { type: "string", default: "ext4" },
    size: { type: "string", default: "1G" },
    args: { type: "string", default: "" },
    clients: { type: "string", default: "drivekit,direct,baseline" },
    store: { type: "string" },
  },
});
const scenario = values.scenario as string;
const runs = Math.max(1, Number(values.runs));
const size = parseSize(values.size as string, "--size");
const extra = (values.args as string).split(" ").filter(Boolean);
const clients = (values.clients as string).split(",");

async function randomImage(bytes: number): Promise<string> {
  const path = join(WORK, `image-random-${bytes}.raw`);
  try {
    if (statSync(path).size === bytes) return path;
  } catch {
    // made below
  }
  const child = Bun.spawn(["sh", "-c", `head -c ${bytes} /dev/urandom > '${path}'`], {
    stdio: ["ignore", "inherit", "inherit"],
  });
  if ((await child.exited) !== 0) throw new Error("cannot make the random image");
  return path;
}

const image = values.image === "random" ? await randomImage(size) : benchImage(values.size as string, size);

interface Measure {
  seconds: number;
  rssMiB: number;
  uuid: string;
}

const command: Record<string, string[]> = {
  drivekit: ["bun", join(ROOT, "scripts/upload.ts"), "--api", "2", "--quiet", ...extra, image],
  direct: ["bun", join(ROOT, "scripts/upload.ts"), "--api", "2", "--quiet", "--direct", image],
  baseline: ["python3", join(ROOT, "bench/baseline-upload2.py"), image],
};

const emulatorOptions =
  scenario === "latency" ? ["--latency", "100"] : scenario === "bandwidth" ? ["--bandwidth", "10000000"] : [];
const store = values.store as string | undefined;
if (store) mkdirSync(store, { recursive: true });
const started = await startEmulator(emulatorOptions, { log: true, env: store ? { TMPDIR: store } : {} });
/** The emulator, its request log read for counting chunk POSTs. */
const emulator = {
  ...started,
  chunkPosts: () => (started.log().match(/^POST \/api\/2\.0\/upload\/chunk\//gm) ?? []).length,
  async destroy(uuid: string) {
    await fetch(`${started.env.EHURI}drives/${uuid}/destroy`, {
      method: "POST",
      headers: { authorization: `Basic ${Buffer.from(started.env.EHAUTH as string).toString("base64")}` },
    });
  },
};

async function timed(argv: string[], env: Record<string, string>): Promise<Measure> {
  const { stdout, seconds, rssKiB } = await timedUnder(argv, { cwd: WORK, env, timeFile: join(WORK, "time.txt") });
  return { seconds, rssMiB: rssKiB / 1024, uuid: stdout.trim() };
}
const mb = size / 1e6;
console.log(
  `# ${scenario}: ${values.image} ${values.size} (${image}), emulator ${emulatorOptions.join(" ") || "(no limits)"}, drivekit args '${extra.join(" ")}'`,
);

try {
  if (scenario === "resume") {
    const chunk = extra.includes("-c") ? parseSize(extra[extra.indexOf("-c") + 1] ?? "", "-c") : DEFAULT_API2_CHUNK;
    const total = Math.max(1, Math.floor(size / chunk));
    for (let run = 1; run <= runs; run++) {
      emulator.clearLog();
      const child = Bun.spawn(command.drivekit as string[], {
        cwd: WORK,
        env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", NO_COLOR: "1", ...emulator.env },
        stdout: "pipe",
        stderr: "pipe",
      });
      for (let i = 0; i < 60_000 && emulator.chunkPosts() < total / 2; i++) await Bun.sleep(5);
      child.kill("SIGINT");
      const [stderr, status] = await Promise.all([new Response(child.stderr).text(), child.exited]);
      const first = emulator.chunkPosts();
      emulator.clearLog();
      const again = await timed(command.drivekit as string[], emulator.env);
      const second = emulator.chunkPosts();
      const line = stderr.trim().split("\n").pop();
      console.log(
        `| resume ${run} | interrupted (exit ${status}) after ${first} chunk POSTs of ${total}; rerun ${again.seconds.toFixed(2)} s, ${second} chunk POSTs | ${((first + second) / total).toFixed(3)}x the image's chunks | ${line} |`,
      );
      await emulator.destroy(again.uuid);
    }
  } else {
    const results: Record<string, Measure[]> = {};
    for (let run = 1; run <= runs; run++) {
      // alternate who goes first, so no client always meets the warmer page cache
      const order = run % 2 ? clients : [...clients].reverse();
      for (const client of order) {
        const measure = await timed(command[client] as string[], emulator.env);
        results[client] ??= [];
        results[client].push(measure);
        console.log(
          `| ${client} | run ${run} | ${measure.seconds.toFixed(2)} s | ${(mb / measure.seconds).toFixed(1)} MB/s | ${measure.rssMiB.toFixed(0)} MiB |`,
        );
        await emulator.destroy(measure.uuid);
      }
    }
    for (const client of clients) {
      const list = results[client] ?? [];
      const seconds = median(list.map((m) => m.seconds));
      console.log(
        `| ${client} | median of ${list.length} | ${seconds.toFixed(2)} s | ${(mb / seconds).toFixed(1)} MB/s | peak ${Math.max(...list.map((m) => m.rssMiB)).toFixed(0)} MiB |`,
      );
    }
    if (scenario === "bandwidth")
      console.log(`link limit: ${(size / 10_000_000).toFixed(2)} s for ${mb.toFixed(0)} MB at 10 MB/s`);
  }
} finally {
  await emulator.stop();
  if (store) rmSync(store, { recursive: true, force: true });
}
