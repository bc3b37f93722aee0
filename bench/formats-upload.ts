#!/usr/bin/env bun
// Benchmark: uploading the images users have. From the ext4 bench image (bench/images.ts) it
// builds its qcow2 (qemu-img convert, plain and with -c), its .gz (gzip -6) and its .zst (zstd -3,
// which records the content size), then times against the emulator:
//   loopback:    qcow2 upload  vs  `qemu-img convert -O raw` to a temporary file + drivekit's raw upload
//                (the same qcow2: plain against plain, -c against -c)
//                (target: qcow2 at least 1.5x faster, no temporary file, peak RSS under 128 MiB)
//   link:        qcow2 vs raw over a 10 MB/s link (target: within 5% of raw)
//   compressed:  .gz and .zst vs raw over a 10 MB/s link (target: within 1.2x of raw)
//
//   bun run bench/formats-upload.ts [--size 1G] [--runs 3] [--api 2] [--scenarios loopback,link,compressed]
//
// Needs qemu-img (Debian: qemu-utils) and /usr/bin/time; gzip and zstd when present (else the
// runtime's own compressors build the .gz and .zst). The emulator runs as its own process (with
// --bandwidth 10000000 for link and compressed); every client runs under /usr/bin/time for wall
// time and peak RSS; runs alternate which client goes first; drives are destroyed after each run.
// Every run is printed as a Markdown table row, then the medians and the ratios against the targets.
import { spawnSync } from "node:child_process";
import { createReadStream, createWriteStream, existsSync, mkdirSync, renameSync, rmSync } from "node:fs";
import { basename, join } from "node:path";
import { pipeline } from "node:stream/promises";
import { parseArgs } from "node:util";
import { createGzip, createZstdCompress } from "node:zlib";
import { parseSize } from "../lib/size.ts";
import { benchImage } from "./images.ts";
import { median, ROOT, startEmulator, timed as timedUnder, type Emulator } from "./harness.ts";

const WORK = join(ROOT, "bench/work/formats");
mkdirSync(WORK, { recursive: true });

const { values } = parseArgs({
  options: {
    size: { type: "string", default: "1G" },
    runs: { type: "string", default: "3" },
    api: { type: "string", default: "2" },
    scenarios: { type: "string", default: "loopback,link,compressed" },
  },
});
const sizeLabel = values.size as string;
const size = parseSize(sizeLabel, "--size");
const runs = Math.max(1, Number(values.runs));
const api = values.api === "1" ? "1" : "2";
const scenarios = (values.scenarios as string).split(",");
const mb = size / 1e6;

const has = (command: string) => spawnSync("sh", ["-c", `command -v ${command}`], { stdio: "ignore" }).status === 0;

function run(argv: string[]): void {
  const result = spawnSync(argv[0] as string, argv.slice(1), { stdio: ["ignore", "ignore", "inherit"] });
  if (result.status !== 0) throw new Error(`${argv.join(" ")} failed (${result.status})`);
}

/** `path`, built by `make` into a temporary name first (an interrupted build leaves no half image). */
async function built(path: string, make: (temporary: string) => Promise<void> | void): Promise<string> {
  if (existsSync(path)) return path;
  const temporary = `${path}.tmp`;
  await make(temporary);
  renameSync(temporary, path);
  console.error(`bench: built ${path}`);
  return path;
}

async function compressWithRuntime(source: string, target: string, format: "gzip" | "zstd"): Promise<void> {
  await pipeline(
    createReadStream(source, { highWaterMark: 1 << 20 }),
    format === "gzip" ? createGzip({ level: 6 }) : createZstdCompress(),
    createWriteStream(target),
  );
}

const raw = benchImage(sizeLabel, size);
const stem = join(WORK, basename(raw, ".img"));
const images = {
  raw,
  qcow2: await built(`${stem}.qcow2`, (out) => run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, out])),
  "qcow2 -c": await built(`${stem}-c.qcow2`, (out) =>
    run(["qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", raw, out]),
  ),
  gz: await built(`${stem}.img.gz`, (out) =>
    has("gzip") ? run(["sh", "-c", `gzip -6 -c '${raw}' > '${out}'`]) : compressWithRuntime(raw, out, "gzip"),
  ),
  zst: await built(`${stem}.img.zst`, (out) =>
    has("zstd") ? run(["zstd", "-q", "-3", "-f", raw, "-o", out]) : compressWithRuntime(raw, out, "zstd"),
  ),
};
const CONVERTED = join(WORK, "converted.raw");

const upload = (image: string) => ["bun", join(ROOT, "scripts/upload.ts"), "--api", api, "--quiet", image];
const CLIENTS: Record<string, string[]> = {
  raw: upload(images.raw),
  qcow2: upload(images.qcow2),
  "qcow2 -c": upload(images["qcow2 -c"]),
  gz: upload(images.gz),
  zst: upload(images.zst),
  // what a user does without drivekit's qcow2 reader: a raw copy as large as the disk, then its upload
  "convert + raw": convertThenUpload(images.qcow2),
  "convert -c + raw": convertThenUpload(images["qcow2 -c"]),
};

/** What a user does without drivekit's qcow2 reader: a raw copy as large as the disk, then its upload. */
function convertThenUpload(qcow2: string): string[] {
  return [
    "sh",
    "-c",
    `qemu-img convert -f qcow2 -O raw '${qcow2}' '${CONVERTED}' && ${upload(CONVERTED)
      .map((word) => `'${word}'`)
      .join(" ")}`,
  ];
}

interface Measure {
  seconds: number;
  rssMiB: number;
}

async function destroy(emulator: Emulator, uuid: string): Promise<void> {
  await fetch(`${emulator.env.EHURI}drives/${uuid}/destroy`, {
    method: "POST",
    headers: { authorization: `Basic ${Buffer.from(emulator.env.EHAUTH as string).toString("base64")}` },
  });
}

/** Each client `runs` times against one emulator; rows as they come, then the medians. */
async function scenario(name: string, emulatorOptions: string[], clients: string[]): Promise<Record<string, Measure>> {
  console.log(
    `\n# ${name}: ext4 ${sizeLabel} (${raw}), API ${api}, emulator ${emulatorOptions.join(" ") || "(no limits)"}\n`,
  );
  console.log("| client | run | seconds | MB/s of the image | peak RSS |\n|---|---|---|---|---|");
  const emulator = await startEmulator(emulatorOptions);
  const results: Record<string, Measure[]> = {};
  try {
    for (let round = 1; round <= runs; round++) {
      const order = round % 2 ? clients : [...clients].reverse();
      for (const client of order) {
        const { stdout, seconds, rssKiB } = await timedUnder(CLIENTS[client] as string[], {
          cwd: WORK,
          env: emulator.env,
          timeFile: join(WORK, "time.txt"),
        });
        rmSync(CONVERTED, { force: true });
        // the next client must not pay for this one's dirty pages (the converted copy, the drive)
        spawnSync("sync");
        results[client] ??= [];
        results[client].push({ seconds, rssMiB: rssKiB / 1024 });
        console.log(
          `| ${client} | ${round} | ${seconds.toFixed(2)} | ${(mb / seconds).toFixed(1)} | ${(rssKiB / 1024).toFixed(0)} MiB |`,
        );
        await destroy(emulator, stdout.trim().split("\n").pop() as string);
      }
    }
  } finally {
    await emulator.stop();
  }
  const medians: Record<string, Measure> = {};
  for (const client of clients) {
    const list = results[client] ?? [];
    medians[client] = { seconds: median(list.map((m) => m.seconds)), rssMiB: Math.max(...list.map((m) => m.rssMiB)) };
    console.log(
      `| ${client} | median of ${list.length} | ${medians[client].seconds.toFixed(2)} | ${(mb / medians[client].seconds).toFixed(1)} | peak ${medians[client].rssMiB.toFixed(0)} MiB |`,
    );
  }
  return medians;
}

const verdict = (ok: boolean) => (ok ? "met" : "MISSED");
const LINK = ["--bandwidth", "10000000"];

if (scenarios.includes("loopback")) {
  const m = await scenario("loopback", [], ["qcow2", "qcow2 -c", "convert + raw", "convert -c + raw", "raw"]);
  for (const [client, baseline] of [
    ["qcow2", "convert + raw"],
    ["qcow2 -c", "convert -c + raw"],
  ] as const) {
    const speedup = (m[baseline] as Measure).seconds / (m[client] as Measure).seconds;
    console.log(
      `\n${client}: ${speedup.toFixed(2)}x faster than ${baseline} upload (target >= 1.5x: ${verdict(speedup >= 1.5)}); peak RSS ${(m[client] as Measure).rssMiB.toFixed(0)} MiB (target < 128 MiB: ${verdict((m[client] as Measure).rssMiB < 128)})`,
    );
  }
}
if (scenarios.includes("link")) {
  const m = await scenario("qcow2 over a 10 MB/s link", LINK, ["qcow2", "raw"]);
  const over = (m.qcow2 as Measure).seconds / (m.raw as Measure).seconds - 1;
  console.log(
    `\nqcow2: ${(over * 100).toFixed(1)}% over the raw upload (target <= 5%: ${verdict(over <= 0.05)}); link limit ${(size / 1e7).toFixed(1)} s for the whole image`,
  );
}
if (scenarios.includes("compressed")) {
  const m = await scenario(".gz and .zst over a 10 MB/s link", LINK, ["gz", "zst", "raw"]);
  for (const client of ["gz", "zst"]) {
    const ratio = (m[client] as Measure).seconds / (m.raw as Measure).seconds;
    console.log(
      `\n.${client}: ${ratio.toFixed(2)}x the raw upload's time (target <= 1.2x: ${verdict(ratio <= 1.2)}); peak RSS ${(m[client] as Measure).rssMiB.toFixed(0)} MiB`,
    );
  }
}
