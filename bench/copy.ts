#!/usr/bin/env bun
// Benchmark: copy.ts between two emulators (each its own process, drives on a tmpfs), against what
// operators do today, in the same run, alternating:
//
//   bun bench/copy.ts [--scenarios loopback,wan,resume,fleet] [--size 1G] [--runs 3]
//                     [--store /dev/shm/drivekit-bench-copy] [--chunk SIZE]
//                     [--wan-source 50000000] [--wan-destination 25000000] [--wan-rtt 20] [--wan-connect 40]
//                     [--fleet 20] [--fleet-size 16M] [--fleet-drives 4] [--fleet-rtt 20] [--smoke]
//
// - loopback: an API 1.0 drive (the ext4 image, 70% full) copied to API 2.0, against drivekit's own
//   download to a file then upload of it (each timed alone too). Targets: the copy >= 1.7x the two
//   together and within 1.2x of the slower alone; its peak RSS under 160 MiB.
// - wan: the same copy with the emulators' WAN model (each its own shared bandwidth, round trip and
//   connection cost). Target: >= 0.85x the slower link's limit (drive bytes / its bandwidth).
// - resume: the copy stopped by SIGINT once half its chunks are in, then rerun. Target: <= 1.15x the
//   drive's bytes sent to the destination in all, one destination drive.
// - fleet: `--manifest` of small drives, `--drives N` against `--drives 1`, both emulators a round
//   trip away (--rtt, and as much per new connection): a fleet's time is its requests'. Target: >= 3x.
// Every run is printed as a Markdown table row, then the medians and the targets. --smoke: one run
// of each at small sizes, to show the benchmark works (not a measurement).
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { DRIVE_TO_API2_CHUNK } from "../lib/pairings/copy.ts";
import { parseSize } from "../lib/size.ts";
import { median, ROOT, startEmulator, timed, type Emulator } from "./harness.ts";
import { benchImage } from "./images.ts";

const { values } = parseArgs({
  options: {
    scenarios: { type: "string", default: "loopback,wan,resume,fleet" },
    size: { type: "string", default: "1G" },
    runs: { type: "string", default: "3" },
    store: { type: "string", default: "/dev/shm/drivekit-bench-copy" },
    chunk: { type: "string" },
    "wan-source": { type: "string", default: "50000000" },
    "wan-destination": { type: "string", default: "25000000" },
    "wan-rtt": { type: "string", default: "20" },
    "wan-connect": { type: "string", default: "40" },
    fleet: { type: "string", default: "20" },
    "fleet-size": { type: "string", default: "16M" },
    "fleet-drives": { type: "string", default: "4" },
    "fleet-rtt": { type: "string", default: "20" },
    smoke: { type: "boolean", default: false },
  },
});

const smoke = Boolean(values.smoke);
const sizeLabel = smoke ? "64M" : (values.size as string);
const size = parseSize(sizeLabel, "--size");
const runs = smoke ? 1 : Math.max(1, Number(values.runs));
const scenarios = (values.scenarios as string).split(",");
const store = values.store as string;
const chunkArgs = values.chunk ? ["-c", values.chunk] : smoke ? ["-c", "4M"] : [];
const work = join(store, "work");
const SCRIPTS = join(ROOT, "scripts");

mkdirSync(work, { recursive: true });
const image = benchImage(sizeLabel, size);
const baseEnv = { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", NO_COLOR: "1" };

/** A script of this repository, timed (wall time, peak RSS); its stdout's last line. */
async function script(name: string, args: string[], env: Record<string, string>) {
  const result = await timed(["bun", join(SCRIPTS, `${name}.ts`), "--quiet", ...args], {
    cwd: work,
    env,
    timeFile: join(work, "time.txt"),
  });
  return { ...result, last: result.stdout.trim().split("\n").pop() ?? "", rssMiB: result.rssKiB / 1024 };
}

/** An emulator of both APIs in its own process, its drives on the store; `--quiet` unless its log is read. */
async function emulator(name: string, options: string[], log = false): Promise<Emulator> {
  const dir = join(store, name);
  mkdirSync(dir, { recursive: true });
  return startEmulator(log ? options : [...options, "--quiet"], { log, env: { TMPDIR: dir } });
}

const basic = (auth: string) => `Basic ${Buffer.from(auth).toString("base64")}`;

/** Every API 2.0 drive of an emulator's account removed (between runs: the tmpfs stays small). */
async function emptyApi2(on: Emulator): Promise<number> {
  const headers = { authorization: basic(on.env.CSAUTH as string) };
  const page = (await (await fetch(`${on.env.CSURI}drives/?limit=0`, { headers })).json()) as {
    objects: Array<{ uuid: string }>;
  };
  for (const { uuid } of page.objects) await fetch(`${on.env.CSURI}drives/${uuid}/`, { method: "DELETE", headers });
  return page.objects.length;
}

/** The environment of a copy from `from`'s API 1.0 to `to`'s API 2.0. */
const copyEnv = (from: Emulator, to: Emulator) => ({
  ...baseEnv,
  EHURI: from.env.EHURI as string,
  EHAUTH: from.env.EHAUTH as string,
  CSURI: to.env.CSURI as string,
  CSAUTH: to.env.CSAUTH as string,
});

async function sourceDrive(from: Emulator, path: string): Promise<string> {
  const env = { ...baseEnv, EHURI: from.env.EHURI as string, EHAUTH: from.env.EHAUTH as string };
  return (await script("upload", ["--api", "1", path], env)).last;
}

const seconds = (value: number) => `${value.toFixed(2)} s`;
const verdict = (ok: boolean) => (ok ? "met" : "NOT met");

async function loopback(): Promise<void> {
  const from = await emulator("loopback-source", []);
  const to = await emulator("loopback-destination", []);
  try {
    const drive = await sourceDrive(from, image);
    const env = copyEnv(from, to);
    const file = join(work, "download.img");
    const rows: Record<"copy" | "download" | "upload" | "both", number[]> = {
      copy: [],
      download: [],
      upload: [],
      both: [],
    };
    const rss: number[] = [];
    console.log(`\n## loopback: API 1.0 to 2.0, ${sizeLabel} ext4 (${image})\n`);
    console.log("| run | what | time | MB/s | peak RSS |\n| --- | --- | --- | --- | --- |");
    for (let run = 1; run <= runs; run++) {
      // alternate who goes first, so neither always meets the warmer caches
      for (const what of run % 2 ? ["copy", "baseline"] : ["baseline", "copy"]) {
        if (what === "copy") {
          const copied = await script("copy", [drive, "--api", "1", "--to-api", "2", ...chunkArgs], env);
          rows.copy.push(copied.seconds);
          rss.push(copied.rssMiB);
          console.log(
            `| ${run} | copy.ts | ${seconds(copied.seconds)} | ${(size / 1e6 / copied.seconds).toFixed(1)} | ${copied.rssMiB.toFixed(0)} MiB |`,
          );
        } else {
          const down = await script("download", ["--api", "1", drive, file, "--force"], env);
          const up = await script("upload", ["--api", "2", file, ...chunkArgs], env);
          rmSync(file, { force: true });
          rows.download.push(down.seconds);
          rows.upload.push(up.seconds);
          rows.both.push(down.seconds + up.seconds);
          console.log(
            `| ${run} | download.ts then upload.ts | ${seconds(down.seconds)} + ${seconds(up.seconds)} = ${seconds(down.seconds + up.seconds)} | ${(size / 1e6 / (down.seconds + up.seconds)).toFixed(1)} | ${down.rssMiB.toFixed(0)} / ${up.rssMiB.toFixed(0)} MiB |`,
          );
        }
        await emptyApi2(to);
      }
    }
    const copy = median(rows.copy);
    const both = median(rows.both);
    const slower = Math.max(median(rows.download), median(rows.upload));
    console.log(
      `\nmedians: copy ${seconds(copy)}; download ${seconds(median(rows.download))}, upload ${seconds(median(rows.upload))}, both ${seconds(both)}; copy peak RSS ${Math.max(...rss).toFixed(0)} MiB`,
    );
    console.log(
      `- download then upload / copy: ${(both / copy).toFixed(2)}x (target >= 1.7x: ${verdict(both / copy >= 1.7)})`,
    );
    console.log(
      `- copy / the slower alone: ${(copy / slower).toFixed(2)}x (target <= 1.2x: ${verdict(copy / slower <= 1.2)})`,
    );
    console.log(
      `- copy peak RSS: ${Math.max(...rss).toFixed(0)} MiB (target < 160 MiB: ${verdict(Math.max(...rss) < 160)})`,
    );
  } finally {
    await from.stop();
    await to.stop();
  }
}

async function wan(): Promise<void> {
  const sourceBandwidth = Number(values["wan-source"]);
  const destinationBandwidth = Number(values["wan-destination"]);
  const link = (bandwidth: number) => [
    "--bandwidth",
    String(bandwidth),
    "--rtt",
    values["wan-rtt"] as string,
    "--connect-cost",
    values["wan-connect"] as string,
  ];
  const from = await emulator("wan-source", link(sourceBandwidth));
  const to = await emulator("wan-destination", link(destinationBandwidth));
  try {
    // the source drive is made over loopback speed: only the copy is timed
    const drive = await sourceDrive(from, image);
    const env = copyEnv(from, to);
    const limit = size / Math.min(sourceBandwidth, destinationBandwidth);
    const times: number[] = [];
    console.log(
      `\n## wan: API 1.0 to 2.0, ${sizeLabel} ext4; source link ${sourceBandwidth / 1e6} MB/s, destination ${destinationBandwidth / 1e6} MB/s, rtt ${values["wan-rtt"]} ms, connect ${values["wan-connect"]} ms; the slower link's limit ${seconds(limit)}\n`,
    );
    console.log("| run | time | of the limit | peak RSS |\n| --- | --- | --- | --- |");
    for (let run = 1; run <= runs; run++) {
      const copied = await script("copy", [drive, "--api", "1", "--to-api", "2", ...chunkArgs], env);
      times.push(copied.seconds);
      console.log(
        `| ${run} | ${seconds(copied.seconds)} | ${(limit / copied.seconds).toFixed(3)}x | ${copied.rssMiB.toFixed(0)} MiB |`,
      );
      await emptyApi2(to);
    }
    const ratio = limit / median(times);
    console.log(
      `\n- median ${seconds(median(times))}: ${ratio.toFixed(3)}x the slower link's limit (target >= 0.85x: ${verdict(ratio >= 0.85)})`,
    );
  } finally {
    await from.stop();
    await to.stop();
  }
}

async function resume(): Promise<void> {
  const from = await emulator("resume-source", []);
  const to = await emulator("resume-destination", [], true);
  try {
    const drive = await sourceDrive(from, image);
    const env = copyEnv(from, to);
    // what copy.ts takes by default into API 2.0
    const chunk = chunkArgs.length ? parseSize(chunkArgs[1] as string, "-c") : DRIVE_TO_API2_CHUNK;
    const chunks = Math.max(1, Math.floor(size / chunk));
    const posts = () => (to.log().match(/^POST \/api\/2\.0\/upload\/chunk\//gm) ?? []).length;
    console.log(`\n## resume: API 1.0 to 2.0, ${sizeLabel} ext4 in ${chunks} chunks, SIGINT at half, rerun\n`);
    console.log(
      "| run | first run | rerun | chunk bytes sent in all | destination drives |\n| --- | --- | --- | --- | --- |",
    );
    const ratios: number[] = [];
    for (let run = 1; run <= runs; run++) {
      to.clearLog();
      const argv = ["bun", join(SCRIPTS, "copy.ts"), "--quiet", drive, "--api", "1", "--to-api", "2", ...chunkArgs];
      const child = Bun.spawn(argv, { cwd: work, env, stdout: "pipe", stderr: "pipe" });
      // bounded: 10 minutes of 5 ms looks at most
      for (let i = 0; i < 120_000 && posts() < chunks / 2; i++) await Bun.sleep(5);
      child.kill("SIGINT");
      const status = await child.exited;
      const first = posts();
      const again = await script("copy", [drive, "--api", "1", "--to-api", "2", ...chunkArgs], env);
      const all = posts();
      const drives = await emptyApi2(to);
      const ratio = (all * chunk) / size;
      ratios.push(ratio);
      console.log(
        `| ${run} | exit ${status} after ${first} chunk POSTs | ${seconds(again.seconds)}, ${all - first} chunk POSTs | ${ratio.toFixed(3)}x the drive | ${drives} |`,
      );
    }
    const worst = Math.max(...ratios);
    console.log(
      `\n- at most ${worst.toFixed(3)}x the drive's bytes sent in all (target <= 1.15x: ${verdict(worst <= 1.15)})`,
    );
  } finally {
    await from.stop();
    await to.stop();
  }
}

async function fleet(): Promise<void> {
  const count = smoke ? 8 : Number(values.fleet);
  const fleetLabel = smoke ? "2M" : (values["fleet-size"] as string);
  const each = parseSize(fleetLabel, "--fleet-size");
  const parallel = Number(values["fleet-drives"]);
  const far = ["--rtt", values["fleet-rtt"] as string, "--connect-cost", values["fleet-rtt"] as string];
  const from = await emulator("fleet-source", far);
  const to = await emulator("fleet-destination", far);
  try {
    const piece = join(work, "fleet.img");
    // the first `each` bytes of the ext4 image: a small drive that looks like data
    const bytes = new Uint8Array(await Bun.file(image).slice(0, each).arrayBuffer());
    writeFileSync(piece, bytes);
    const drives: string[] = [];
    for (let i = 0; i < count; i++) drives.push(await sourceDrive(from, piece));
    const manifest = join(work, "fleet.txt");
    writeFileSync(manifest, `${drives.join("\n")}\n`);
    const env = copyEnv(from, to);
    const times: Record<string, number[]> = { one: [], many: [] };
    console.log(
      `\n## fleet: ${count} drives of ${fleetLabel}, API 1.0 to 2.0, both emulators --rtt ${values["fleet-rtt"]} --connect-cost ${values["fleet-rtt"]}; --drives ${parallel} against --drives 1\n`,
    );
    console.log("| run | --drives | time | peak RSS |\n| --- | --- | --- | --- |");
    for (let run = 1; run <= runs; run++) {
      for (const how of run % 2 ? ["many", "one"] : ["one", "many"]) {
        const n = how === "many" ? parallel : 1;
        const result = await script(
          "copy",
          ["--manifest", manifest, "--drives", String(n), "--api", "1", "--to-api", "2"],
          env,
        );
        times[how]?.push(result.seconds);
        console.log(`| ${run} | ${n} | ${seconds(result.seconds)} | ${result.rssMiB.toFixed(0)} MiB |`);
        await emptyApi2(to);
      }
    }
    const ratio = median(times.one ?? []) / median(times.many ?? []);
    console.log(`\n- --drives ${parallel}: ${ratio.toFixed(2)}x one at a time (target >= 3x: ${verdict(ratio >= 3)})`);
  } finally {
    await from.stop();
    await to.stop();
  }
}

const all: Record<string, () => Promise<void>> = { loopback, wan, resume, fleet };
console.log(
  `# copy.ts benchmark${smoke ? " (smoke run: small sizes, one run; not a measurement)" : ""}: ${new Date().toISOString()}, ${runs} run(s), the drives and files in ${store} (a tmpfs: no page cache to drop), load ${loadavg()
    .map((load) => load.toFixed(2))
    .join(" ")}`,
);
try {
  for (const name of scenarios) {
    const scenario = all[name];
    if (!scenario) throw new Error(`unknown scenario '${name}': loopback, wan, resume or fleet`);
    await scenario();
  }
} finally {
  rmSync(store, { recursive: true, force: true });
}
