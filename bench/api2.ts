#!/usr/bin/env bun
// Benchmark: drivekit's API 2.0 single-POST upload (`--direct`) and download against curl, the tool CloudSigma documents
// (`curl -X POST -T FILE` and `curl -L -o FILE`), on the same image and the same emulator in one run.
//
//   bun run bench:api2 [--sizes 1G,4G] [--runs 3] [--data random|sparse] [--store DIR]
//
// The emulator runs as its own process (so its memory and CPU are not counted as drivekit's); each
// client runs as a real process under /usr/bin/time for its wall time and peak RSS. Runs alternate
// which client goes first, so neither always meets a warmer page cache. Images: `random` is real,
// incompressible data from /dev/urandom (the stub must write every byte); `sparse` is an image of
// which one MiB in sixteen holds random data, the rest holes. Work files go to bench/work/api2/.
// --store DIR puts the emulator's drives and the downloaded files in DIR (e.g. a tmpfs such as
// /dev/shm/x, to take the disk's write-back out of the comparison); DIR is removed at the end.
import { mkdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { parseSize } from "../lib/size.ts";
import { median, ROOT, startEmulator, timed as timedUnder, type Timed } from "./harness.ts";

const WORK = join(ROOT, "bench/work/api2");

const { values } = parseArgs({
  options: {
    sizes: { type: "string", default: "1G,4G" },
    runs: { type: "string", default: "3" },
    data: { type: "string", default: "random" },
    store: { type: "string" },
  },
});
const sizes = (values.sizes as string).split(",").map((text) => parseSize(text, "--sizes"));
const runs = Math.max(1, Number(values.runs));
const data = values.data as "random" | "sparse";
if (data !== "random" && data !== "sparse") throw new Error("--data must be random or sparse");

async function makeImage(size: number): Promise<string> {
  const path = join(WORK, `image-${data}-${size}.raw`);
  try {
    if (statSync(path).size === size) return path;
  } catch {
    // not made yet
  }
  console.error(`making ${path} (${data})`);
  if (data === "random") {
    const child = Bun.spawn(["head", "-c", String(size), "/dev/urandom"], { stdout: Bun.file(path) });
    if ((await child.exited) !== 0) throw new Error("head /dev/urandom failed");
  } else {
    const { openSync, ftruncateSync, writeSync, closeSync } = await import("node:fs");
    const fd = openSync(path, "w");
    ftruncateSync(fd, size);
    const piece = new Uint8Array(1024 * 1024);
    for (let at = 0; at < size; at += 16 * piece.length) {
      for (let i = 0; i < piece.length; i += 65536) crypto.getRandomValues(piece.subarray(i, i + 65536));
      writeSync(fd, piece, 0, Math.min(piece.length, size - at), at);
    }
    closeSync(fd);
  }
  return path;
}

const mbps = (size: number, seconds: number) => size / 1e6 / seconds;
const mib = (kib: number) => (kib / 1024).toFixed(1);

mkdirSync(WORK, { recursive: true });
const store = values.store ? String(values.store) : undefined;
if (store) mkdirSync(store, { recursive: true });
const stub = await startEmulator(["--quiet"], { env: store ? { TMPDIR: store } : {} });
const timed = (argv: string[], env: Record<string, string> = {}) =>
  timedUnder(argv, { cwd: ROOT, env, timeFile: join(WORK, "time.txt") });
const [user, secret] = [
  stub.env.CSAUTH!.slice(0, stub.env.CSAUTH!.indexOf(":")),
  stub.env.CSAUTH!.slice(stub.env.CSAUTH!.indexOf(":") + 1),
];
// curl reads the credentials from a config file, not argv (no secret in `ps`)
const curlConfig = join(WORK, "curl.conf");
writeFileSync(curlConfig, `user = "${user}:${secret}"\n`, { mode: 0o600 });
const env = { CSURI: stub.env.CSURI!, CSAUTH: stub.env.CSAUTH! };
const authHeader = `Basic ${Buffer.from(`${user}:${secret}`).toString("base64")}`;

async function destroy(uuid: string): Promise<void> {
  await fetch(`${stub.env.EHURI}drives/${uuid}/destroy`, { method: "POST", headers: { authorization: authHeader } });
}

function uuidOf(stdout: string): string {
  const match = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/.exec(stdout);
  if (!match) throw new Error(`no UUID in '${stdout.slice(0, 100)}'`);
  return match[0];
}

const lines: string[] = [];
const log = (line: string) => {
  lines.push(line);
  console.log(line);
};

try {
  log(
    `bun ${Bun.version}, ${(await Bun.$`curl --version`.text()).split("\n")[0]?.split(" (")[0]}, ${data} data, ${runs} runs, median; drives and downloads in ${store ?? WORK}`,
  );
  log("");
  log(
    "| image | direction | curl MB/s | drivekit MB/s | ratio drivekit/curl | drivekit peak RSS MiB | curl peak RSS MiB | runs drivekit (s) | runs curl (s) |",
  );
  log("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
  for (const size of sizes) {
    const file = await makeImage(size);
    const label = `${size / 2 ** 30} GiB`;
    const up = { curl: [] as Timed[], drivekit: [] as Timed[] };
    const down = { curl: [] as Timed[], drivekit: [] as Timed[] };
    const curlUpload = async () => {
      const result = await timed([
        "curl",
        "-sS",
        "-f",
        "-K",
        curlConfig,
        "-X",
        "POST",
        "-H",
        "Content-Type: application/octet-stream",
        "-T",
        file,
        `${env.CSURI}drives/upload/`,
      ]);
      up.curl.push(result);
      return uuidOf(result.stdout);
    };
    const drivekitUpload = async () => {
      const result = await timed(["bun", join(ROOT, "scripts/upload.ts"), "--direct", file], env);
      up.drivekit.push(result);
      return uuidOf(result.stdout);
    };
    for (let run = 0; run < runs; run++) {
      const order = run % 2 === 0 ? [curlUpload, drivekitUpload] : [drivekitUpload, curlUpload];
      for (const step of order) await destroy(await step());
    }
    // one drive to download, uploaded by curl so both clients read the same server-side bytes
    const drive = uuidOf(
      (
        await timed([
          "curl",
          "-sS",
          "-f",
          "-K",
          curlConfig,
          "-X",
          "POST",
          "-H",
          "Content-Type: application/octet-stream",
          "-T",
          file,
          `${env.CSURI}drives/upload/`,
        ])
      ).stdout,
    );
    const out = join(store ?? WORK, "download.raw");
    const curlDownload = async () => {
      down.curl.push(
        await timed(["curl", "-sS", "-f", "-K", curlConfig, "-L", "-o", out, `${env.CSURI}drives/${drive}/download/`]),
      );
      if (statSync(out).size !== size) throw new Error("curl download has the wrong size");
      rmSync(out);
    };
    const drivekitDownload = async () => {
      down.drivekit.push(await timed(["bun", join(ROOT, "scripts/download.ts"), drive, out], env));
      if (statSync(out).size !== size) throw new Error("drivekit download has the wrong size");
      rmSync(out);
    };
    for (let run = 0; run < runs; run++) {
      const order = run % 2 === 0 ? [curlDownload, drivekitDownload] : [drivekitDownload, curlDownload];
      for (const step of order) await step();
    }
    await destroy(drive);
    for (const [direction, set] of [
      ["upload", up],
      ["download", down],
    ] as const) {
      const curlRate = mbps(size, median(set.curl.map((m) => m.seconds)));
      const ourRate = mbps(size, median(set.drivekit.map((m) => m.seconds)));
      log(
        `| ${label} | ${direction} | ${curlRate.toFixed(0)} | ${ourRate.toFixed(0)} | ${(ourRate / curlRate).toFixed(2)} | ` +
          `${mib(Math.max(...set.drivekit.map((m) => m.rssKiB)))} | ${mib(Math.max(...set.curl.map((m) => m.rssKiB)))} | ` +
          `${set.drivekit.map((m) => m.seconds.toFixed(2)).join(" ")} | ${set.curl.map((m) => m.seconds.toFixed(2)).join(" ")} |`,
      );
    }
  }
  // what a process costs before it moves a byte: the floor under every drivekit time above
  const start: number[] = [];
  for (let i = 0; i < 3; i++) start.push((await timed(["bun", join(ROOT, "scripts/upload.ts"), "--help"])).seconds);
  log("");
  log(`drivekit start-up (bun scripts/upload.ts --help), median: ${median(start).toFixed(3)} s`);
} finally {
  await stub.stop();
  rmSync(curlConfig, { force: true });
  rmSync(join(store ?? WORK, "download.raw"), { force: true });
  // the stub deletes its drives when it stops; a killed one leaves them: never leave a tmpfs full
  if (store) rmSync(store, { recursive: true, force: true });
}
