#!/usr/bin/env bun
// `bun run bench`: drivekit's API 1.0 upload and download against the vendor tools' way (a shell
// loop of one dd | gzip | curl per 4 MiB chunk, one at a time), on the stub: loopback, 100 ms per
// request, and a 10 MB/s link. Median of --runs runs; bytes on the wire from the stub's own count;
// peak RSS and CPU time of the measured process (wait4 rusage). Prints a Markdown report on stdout.
//
//   bun run bench                         the full matrix (256M and 1G, three links, 3 runs)
//   bun run bench --quick                 256M only, one run
//   bun run bench --sizes 256M --links wan --runs 3
//   bun run bench --sweep                 also: --concurrency 4/8/16 and --compress never/always/auto
//   bun run bench --rss                   also: peak RSS of a 4 GiB upload and download
//   bun run bench --scripts DIR           drivekit's scripts from another checkout (a before/after)
//   --store DIR, --out DIR                where the stub keeps its drives and the downloads go
//                                         (default tmpfs: a disk must not decide the timing)
//
// The 10 MB/s download of 1 GiB (about 110 s a run for either tool, the link being the limit) is
// left out unless --wan-download-1g.
import { spawnSync } from "node:child_process";
import { mkdirSync, rmSync, statSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { benchImage, WORK } from "./images.ts";

const ROOT = new URL("..", import.meta.url).pathname;

const { values } = parseArgs({
  options: {
    sizes: { type: "string", default: "256M,1G" },
    links: { type: "string", default: "loopback,latency,wan" },
    runs: { type: "string", default: "3" },
    quick: { type: "boolean", default: false },
    sweep: { type: "boolean", default: false },
    rss: { type: "boolean", default: false },
    "wan-download-1g": { type: "boolean", default: false },
    "no-baseline": { type: "boolean", default: false },
    args: { type: "string", default: "", description: "extra arguments for drivekit's upload" },
    scripts: { type: "string", description: "the checkout whose scripts/ are timed (default: this one)" },
    store: { type: "string", default: "/dev/shm/drivekit-bench-store" },
    out: { type: "string", default: "/dev/shm/drivekit-bench-out" },
  },
});

/** Whose scripts are timed: this checkout's, or another's (--scripts) for a before/after. */
const SCRIPTS = join((values.scripts as string | undefined) ?? ROOT, "scripts");
const SIZES: Record<string, number> = { "256M": 256 * 2 ** 20, "1G": 2 ** 30, "4G": 4 * 2 ** 30 };
const LINKS: Record<string, { latency: number; bandwidth: number; title: string }> = {
  loopback: { latency: 0, bandwidth: 0, title: "loopback" },
  latency: { latency: 100, bandwidth: 0, title: "100 ms per request" },
  wan: { latency: 0, bandwidth: 10_000_000, title: "10 MB/s link" },
};
const runs = values.quick ? 1 : Math.max(1, Number(values.runs));
const sizes = values.quick ? ["256M"] : (values.sizes as string).split(",");
const links = (values.links as string).split(",");
const extra = (values.args as string).split(" ").filter(Boolean);

interface Stub {
  env: Record<string, string>;
  stats(): Promise<{ written: number; read: number; writes: number; reads: number }>;
  reset(): Promise<void>;
  stop(): void;
}

/** The stub's drives and the downloads: on tmpfs by default (bench/RESULTS-speed.md, the 100 ms rows). */
const STORE = values.store as string;
const OUT = values.out as string;
for (const dir of [STORE, OUT]) mkdirSync(dir, { recursive: true });

async function startStub(latency: number, bandwidth: number): Promise<Stub> {
  const child = Bun.spawn(
    ["bun", join(ROOT, "bench/stub.ts"), "--latency", String(latency), "--bandwidth", String(bandwidth)],
    {
      stdout: "pipe",
      stderr: "inherit",
      env: { ...process.env, TMPDIR: STORE },
    },
  );
  const reader = child.stdout.getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error("bench: the stub did not start");
    text += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  const { url, auth } = JSON.parse(text.split("\n")[0] as string) as { url: string; auth: string };
  const authorization = `Basic ${Buffer.from(auth).toString("base64")}`;
  return {
    env: { EHURI: url, EHAUTH: auth },
    stats: async () => (await fetch(`${url}__bench/stats`, { headers: { authorization } })).json() as never,
    reset: async () => void (await fetch(`${url}__bench/reset`, { method: "POST", headers: { authorization } })),
    stop: () => child.kill("SIGTERM"),
  };
}

interface Measure {
  seconds: number;
  rss: number;
  cpu: number;
  stdout: string;
}

async function measure(argv: string[], env: Record<string, string>): Promise<Measure> {
  const started = performance.now();
  const child = Bun.spawn(argv, {
    cwd: WORK,
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/tmp", NO_COLOR: "1", ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, status] = await Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
    child.exited,
  ]);
  const seconds = (performance.now() - started) / 1000;
  if (status !== 0)
    throw new Error(
      `bench: ${argv.slice(0, 3).join(" ")} failed (${status}): ${stderr.trim().split("\n").slice(-3).join(" | ")}`,
    );
  const usage = child.resourceUsage();
  return { seconds, rss: usage?.maxRSS ?? 0, cpu: Number(usage?.cpuTime.total ?? 0n) / 1e6, stdout: stdout.trim() };
}

const median = (xs: number[]) => {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
};
const mb = (bytes: number) => (bytes / 1e6).toFixed(1);
const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(0);

function sameFile(a: string, b: string): boolean {
  return spawnSync("cmp", ["-s", a, b]).status === 0;
}

interface Row {
  link: string;
  size: string;
  op: string;
  tool: string;
  seconds: number[];
  bytes: number[];
  rss: number[];
  cpu: number[];
  note?: string;
}
const rows: Row[] = [];
const row = (r: Omit<Row, "seconds" | "bytes" | "rss" | "cpu">): Row => {
  const full = { ...r, seconds: [], bytes: [], rss: [], cpu: [] };
  rows.push(full);
  return full;
};
const record = (target: Row, m: Measure, bytes: number) => {
  target.seconds.push(m.seconds);
  target.bytes.push(bytes);
  target.rss.push(m.rss);
  target.cpu.push(m.cpu);
  console.error(
    `bench:   ${target.tool} ${target.op} ${target.size} ${target.link}: ${m.seconds.toFixed(2)} s, ${mb(bytes)} MB on the wire, RSS ${mib(m.rss)} MiB`,
  );
};

const upload = (image: string, more: string[] = []) => [
  "bun",
  join(SCRIPTS, "upload.ts"),
  image,
  "-n",
  "bench",
  "--quiet",
  ...extra,
  ...more,
];
const download = (drive: string, out: string) => [
  "bun",
  join(SCRIPTS, "download.ts"),
  drive,
  out,
  "--force",
  "--quiet",
];

async function matrix(): Promise<void> {
  for (const linkName of links) {
    const link = LINKS[linkName];
    if (!link) throw new Error(`bench: unknown link ${linkName}`);
    const stub = await startStub(link.latency, link.bandwidth);
    try {
      for (const size of sizes) {
        const image = benchImage(size, SIZES[size] as number);
        const skipDownload = linkName === "wan" && size === "1G" && !values["wan-download-1g"];
        const ours = {
          up: row({ link: link.title, size, op: "upload", tool: "drivekit" }),
          down: row({ link: link.title, size, op: "download", tool: "drivekit" }),
        };
        const base = values["no-baseline"]
          ? undefined
          : {
              up: row({ link: link.title, size, op: "upload", tool: "baseline" }),
              down: row({ link: link.title, size, op: "download", tool: "baseline" }),
            };
        for (let run = 0; run < runs; run++) {
          await stub.reset();
          let stats = await stub.stats();
          const delta = async (key: "written" | "read") => {
            const now = await stub.stats();
            const bytes = now[key] - stats[key];
            stats = now;
            return bytes;
          };
          const up = await measure(upload(image), stub.env);
          record(ours.up, up, await delta("written"));
          let baseDrive: string | undefined;
          if (base) {
            const m = await measure(["bash", join(ROOT, "bench/baseline-upload.sh"), image], stub.env);
            baseDrive = m.stdout;
            record(base.up, m, await delta("written"));
          }
          if (skipDownload) continue;
          const out = join(OUT, "out-drivekit.img");
          const down = await measure(download(up.stdout, out), stub.env);
          record(ours.down, down, await delta("read"));
          if (!sameFile(image, out)) ours.down.note = "MISMATCH";
          ours.down.note ??= `allocated ${mib(statSync(out).blocks * 512)} MiB (image ${mib(statSync(image).blocks * 512)} MiB)`;
          rmSync(out, { force: true });
          if (base && baseDrive) {
            const baseOut = join(OUT, "out-baseline.img");
            const m = await measure(["bash", join(ROOT, "bench/baseline-download.sh"), baseDrive, baseOut], stub.env);
            record(base.down, m, await delta("read"));
            if (!sameFile(image, baseOut)) base.down.note = "MISMATCH";
            base.down.note ??= `allocated ${mib(statSync(baseOut).blocks * 512)} MiB`;
            rmSync(baseOut, { force: true });
          }
        }
      }
    } finally {
      stub.stop();
    }
  }
}

/** One setting at a time, drivekit only, 256M: what the defaults were chosen from. */
async function sweep(): Promise<void> {
  const image = benchImage("256M", SIZES["256M"] as number);
  const plans: Array<[string, string[][]]> = [
    [
      "loopback",
      [
        ["--concurrency", "2"],
        ["--concurrency", "4"],
        ["--concurrency", "8"],
        ["--concurrency", "16"],
        ["--compress", "never"],
        ["--compress", "always"],
        ["--compress", "auto"],
      ],
    ],
    [
      "latency",
      [
        ["--concurrency", "4"],
        ["--concurrency", "8"],
        ["--concurrency", "16"],
        ["--compress", "never"],
        ["--compress", "always"],
      ],
    ],
    [
      "wan",
      [
        ["--compress", "never"],
        ["--compress", "always"],
        ["--compress", "auto"],
        ["--concurrency", "4"],
        ["--concurrency", "16"],
      ],
    ],
  ];
  for (const [linkName, settings] of plans) {
    if (!links.includes(linkName)) continue;
    const link = LINKS[linkName] as (typeof LINKS)[string];
    const stub = await startStub(link.latency, link.bandwidth);
    try {
      for (const setting of settings) {
        const target = row({ link: link.title, size: "256M", op: "upload", tool: `drivekit ${setting.join(" ")}` });
        for (let run = 0; run < runs; run++) {
          await stub.reset();
          const m = await measure(upload(image, setting), stub.env);
          record(target, m, (await stub.stats()).written);
        }
      }
      if (linkName !== "wan") {
        for (const concurrency of ["4", "8", "16"]) {
          const target = row({
            link: link.title,
            size: "256M",
            op: "download",
            tool: `drivekit --concurrency ${concurrency}`,
          });
          for (let run = 0; run < runs; run++) {
            await stub.reset();
            const up = await measure(upload(image), stub.env);
            const before = (await stub.stats()).read;
            const out = join(OUT, "out-sweep.img");
            const m = await measure([...download(up.stdout, out), "--concurrency", concurrency], stub.env);
            record(target, m, (await stub.stats()).read - before);
            rmSync(out, { force: true });
          }
        }
      }
    } finally {
      stub.stop();
    }
  }
}

/** Peak memory must not grow with the image: a 4 GiB generated image up and down, once. */
async function rss(): Promise<void> {
  const image = benchImage("4G", SIZES["4G"] as number, "mix");
  const stub = await startStub(0, 0);
  try {
    await stub.reset();
    const up = await measure(upload(image), stub.env);
    record(
      row({ link: "loopback", size: "4G (mix)", op: "upload", tool: "drivekit" }),
      up,
      (await stub.stats()).written,
    );
    const before = (await stub.stats()).read;
    const out = join(OUT, "out-rss.img");
    const down = await measure(download(up.stdout, out), stub.env);
    const target = row({ link: "loopback", size: "4G (mix)", op: "download", tool: "drivekit" });
    record(target, down, (await stub.stats()).read - before);
    target.note = sameFile(image, out)
      ? `allocated ${mib(statSync(out).blocks * 512)} MiB (image ${mib(statSync(image).blocks * 512)} MiB)`
      : "MISMATCH";
    rmSync(out, { force: true });
  } finally {
    stub.stop();
  }
}

function report(): string {
  const lines = [
    `Machine: ${cpus().length} × ${cpus()[0]?.model ?? "cpu"}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB RAM, Bun ${Bun.version}, ${new Date().toISOString()}`,
    `Runs per cell: ${runs} (median shown); stub drives in ${STORE}, downloads to ${OUT}${extra.length ? `; drivekit upload args: ${extra.join(" ")}` : ""}`,
    "",
    "| link | image | op | tool | median s | speed-up | MB on the wire | peak RSS MiB | CPU s | note |",
    "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
  ];
  for (const r of rows) {
    if (r.seconds.length === 0) continue;
    const baseline = rows.find(
      (b) => b.tool === "baseline" && b.link === r.link && b.size === r.size && b.op === r.op && b.seconds.length,
    );
    const speedup = baseline && r !== baseline ? `${(median(baseline.seconds) / median(r.seconds)).toFixed(1)}×` : "";
    lines.push(
      `| ${r.link} | ${r.size} | ${r.op} | ${r.tool} | ${median(r.seconds).toFixed(2)} | ${speedup} | ${mb(median(r.bytes))} | ${mib(Math.max(...r.rss))} | ${median(r.cpu).toFixed(1)} | ${r.note ?? ""} |`,
    );
  }
  return lines.join("\n");
}

await matrix();
if (values.sweep) await sweep();
if (values.rss) await rss();
const text = report();
await Bun.write(join(WORK, `report-${Date.now()}.md`), `${text}\n`);
console.log(text);
