#!/usr/bin/env bun
// Benchmark: every transfer path against the physical limit it meets, issue 16's rows.
//
//   bun bench/speed.ts --scenario wan|loopback|proxy|wan-proxy|rss|rss-far|rss-proxy [--runs 5] [--size 96M] [--image random|ext4|mix]
//                      [--clients u1,d1,u2,d2,curl-get] [--before DIR] [--out DIR] [--proxy URL]
//
// - wan: the emulator's WAN model (--rtt 50 --connect-cost 150 --bandwidth 32000000
//   --conn-bandwidth 8000000); the limit is the image's size over 32 MB/s, one curl stream the
//   single-connection baseline.
// - loopback: no shaping; `curl -T` (upload) and `curl -L -o` (download) of the same drive the baselines.
// - proxy: the emulator over https (--tls, its CA trusted) reached through a CONNECT proxy on
//   127.0.0.1 (bench/proxy.ts, a process of its own; or --proxy URL, one already running, such as
//   tinyproxy), against the same without it.
// - wan-proxy: the proxy near the client, the emulator far: the WAN model over https, each path with
//   and without the proxy (on loopback the proxy's own CPU competes with both ends for the 2 cores;
//   here the link decides, as where users have a proxy).
// - rss: one run of each path on a 4 GiB generated image (bench/images.ts mix), peak RSS.
// - rss-far: the same from a far server over https (50 ms a round trip, no bandwidth limit: the
//   windows grow to what memory allows, and each connection has its TLS).
// - rss-proxy: the same over https, each path with and without the proxy.
//
// Clients: u1, d1 (API 1.0 upload, download), u2 (2.0 chunked upload), direct (2.0 --direct), d2
// (2.0 download), curl-post, curl-get; each with -before (the same from --before DIR, e.g. a checkout
// of main, for before/after) and, in the proxy scenario, -proxy (through the proxy). The emulator
// runs as its own process with its drives on tmpfs (--store, default /dev/shm/...: its disk must not
// decide); the image is read from tmpfs too (a copy, except for rss), so the uploads do not time the
// disk either; downloads go to --out (default tmpfs) and are compared with the image outside the
// timing. Each run times every client once, the order reversed every other run; before each timing
// `sync` (and drop_caches when permitted). Every run is printed as a Markdown row, then the medians.
import { spawnSync } from "node:child_process";
import { mkdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { parseSize } from "../lib/size.ts";
import { flushPageCache, median, ROOT, startEmulator, timed, type Emulator, type Timed } from "./harness.ts";
import { benchImage } from "./images.ts";

const { values } = parseArgs({
  options: {
    scenario: { type: "string", default: "wan" },
    runs: { type: "string", default: "5" },
    size: { type: "string" },
    image: { type: "string" },
    clients: { type: "string" },
    before: { type: "string" },
    out: { type: "string", default: "/dev/shm/drivekit-speed-out" },
    store: { type: "string", default: "/dev/shm/drivekit-speed-store" },
    proxy: { type: "string" },
  },
});

interface Scenario {
  emulator: string[];
  size: string;
  image: "random" | "ext4" | "mix";
  clients: string[];
  /** Bytes per second of the link, when it has a limit. */
  link?: number;
}

/** Issue 16's far link: 50 ms a round trip, 150 ms a new connection, 8 MB/s each, 32 MB/s in all. */
const WAN = ["--rtt", "50", "--connect-cost", "150", "--bandwidth", "32000000", "--conn-bandwidth", "8000000"];

const SCENARIOS: Record<string, Scenario> = {
  wan: {
    emulator: WAN,
    size: "96M",
    image: "random",
    clients: ["u1", "d1", "u2", "d2", "curl-get"],
    link: 32_000_000,
  },
  loopback: {
    emulator: [],
    size: "1G",
    image: "random",
    clients: ["curl-post", "u2", "direct", "curl-get", "d2", "d1"],
  },
  proxy: {
    emulator: ["--tls"],
    size: "256M",
    image: "random",
    clients: ["u1", "u1-proxy", "u2", "u2-proxy", "direct", "direct-proxy", "d1", "d1-proxy", "d2", "d2-proxy"],
  },
  "wan-proxy": {
    emulator: ["--tls", ...WAN],
    size: "96M",
    image: "random",
    clients: ["u1", "u1-proxy", "u2", "u2-proxy", "direct", "direct-proxy", "d1", "d1-proxy", "d2", "d2-proxy"],
    link: 32_000_000,
  },
  rss: { emulator: [], size: "4G", image: "mix", clients: ["u1", "d1", "u2", "direct", "d2"] },
  "rss-far": {
    emulator: ["--tls", "--rtt", "50"],
    size: "4G",
    image: "mix",
    clients: ["u1", "d1", "u2", "direct", "d2"],
  },
  "rss-proxy": {
    emulator: ["--tls"],
    size: "4G",
    image: "mix",
    clients: ["u1", "u1-proxy", "d1", "d1-proxy", "u2", "u2-proxy", "direct", "direct-proxy", "d2", "d2-proxy"],
  },
};

const scenario = SCENARIOS[values.scenario as string];
if (!scenario) throw new Error(`--scenario: one of ${Object.keys(SCENARIOS).join(", ")}`);
const runs = Math.max(1, Number(values.runs));
const sizeText = (values.size as string | undefined) ?? scenario.size;
const size = parseSize(sizeText, "--size");
const kind = ((values.image as string | undefined) ?? scenario.image) as Scenario["image"];
const clients = values.clients ? (values.clients as string).split(",") : scenario.clients;
const before = values.before as string | undefined;
const WORK = join(ROOT, "bench/work/speed");
const out = values.out as string;
const store = values.store as string;
for (const dir of [WORK, out, store]) mkdirSync(dir, { recursive: true });

/** The image: random bytes (made once), or bench/images.ts's ext4 / generated mix. */
function makeImage(): string {
  if (kind !== "random") return benchImage(sizeText, size, kind === "mix" ? "mix" : "ext4");
  const path = join(WORK, `random-${size}.raw`);
  try {
    if (statSync(path).size === size) return path;
  } catch {
    // made below
  }
  const made = spawnSync("sh", ["-c", `head -c ${size} /dev/urandom > "$0.tmp" && mv "$0.tmp" "$0"`, path]);
  if (made.status !== 0) throw new Error("could not make the random image");
  return path;
}

/** Uploads read the image from tmpfs (a copy made once for the run), not from a disk whose cache the flushes empty. */
const image = (() => {
  const made = makeImage();
  if (values.scenario?.startsWith("rss")) return made;
  const copy = join(store, "image.raw");
  spawnSync("cp", [made, copy]);
  return copy;
})();
const stub: Emulator = await startEmulator(["--quiet", ...scenario.emulator], { env: { TMPDIR: store } });
let proxy: { url: string; stop: () => void } | undefined;
const curlConf = join(WORK, "curl.conf");
const lines: string[] = [];
const log = (line: string) => {
  lines.push(line);
  console.log(line);
};

/** A CONNECT proxy process (bench/proxy.ts): its URL, once it printed it. */
async function startProxy(): Promise<{ url: string; stop: () => void }> {
  const child = Bun.spawn(["bun", join(ROOT, "bench/proxy.ts")], { stdout: "pipe", stderr: "ignore" });
  const reader = child.stdout.getReader();
  const { value } = await reader.read();
  reader.releaseLock();
  const url = new TextDecoder().decode(value).trim();
  if (!/^http:\/\/127\.0\.0\.1:\d+$/.test(url)) throw new Error(`the proxy printed '${url}'`);
  return { url, stop: () => child.kill("SIGTERM") };
}

try {
  const env = stub.env;
  // curl reads the credentials from a config file, not argv (no secret in `ps`)
  writeFileSync(
    curlConf,
    `user = "${env.CSAUTH}"\n${env.NODE_EXTRA_CA_CERTS ? `cacert = "${env.NODE_EXTRA_CA_CERTS}"\n` : ""}`,
    { mode: 0o600 },
  );
  if (clients.some((client) => client.endsWith("-proxy")))
    proxy = values.proxy ? { url: values.proxy as string, stop: () => undefined } : await startProxy();
  const authorization = `Basic ${Buffer.from(env.EHAUTH as string).toString("base64")}`;
  // the emulator's own CA, over https
  const tls = env.NODE_EXTRA_CA_CERTS ? { ca: await Bun.file(env.NODE_EXTRA_CA_CERTS).text() } : undefined;
  const curlPost = ["curl", "-sS", "-f", "-K", curlConf, "-X", "POST", "-H", "Content-Type: application/octet-stream"];
  // the drive the downloads read, uploaded by curl (its own time is not measured)
  const drive = /[0-9a-f]{8}-[0-9a-f-]{27}/.exec(
    spawnSync(curlPost[0] as string, [
      ...curlPost.slice(1),
      "-T",
      image,
      `${env.CSURI}drives/upload/`,
    ]).stdout.toString(),
  )?.[0];
  if (!drive) throw new Error("the image could not be uploaded with curl");
  const output = join(out, "download.img");

  /** argv and environment of a client. */
  const command = (client: string): { argv: string[]; env: Record<string, string> } => {
    const [name, variant] = client.split("-").length > 1 && !client.startsWith("curl") ? client.split("-") : [client];
    const root = variant === "before" ? (before ?? "") : ROOT;
    if (variant === "before" && !before) throw new Error(`${client}: --before DIR is needed`);
    const viaProxy: Record<string, string> = variant === "proxy" && proxy ? { HTTPS_PROXY: proxy.url } : {};
    const script = (op: string) => ["bun", join(root, `scripts/${op}.ts`)];
    const commands: Record<string, string[]> = {
      u1: [...script("upload"), image, "--api", "1", "--quiet"],
      u2: [...script("upload"), image, "--api", "2", "--quiet"],
      direct: [...script("upload"), image, "--api", "2", "--direct", "--quiet"],
      d1: [...script("download"), drive, output, "--api", "1", "--quiet"],
      d2: [...script("download"), drive, output, "--api", "2", "--quiet"],
      "curl-post": [...curlPost, "-T", image, `${env.CSURI}drives/upload/`],
      "curl-get": ["curl", "-sS", "-f", "-K", curlConf, "-L", "-o", output, `${env.CSURI}drives/${drive}/download/`],
    };
    const argv = commands[name as string];
    if (!argv) throw new Error(`unknown client ${client}`);
    return { argv, env: { ...env, ...viaProxy } };
  };

  const results = new Map<string, Timed[]>();
  log(
    `# ${values.scenario}: ${kind} ${sizeText} (${image}), emulator ${scenario.emulator.join(" ") || "(no shaping)"}${proxy ? `, proxy ${proxy.url}` : ""}`,
  );
  log("");
  log(
    `${new Date().toISOString()}, ${cpus().length} x ${cpus()[0]?.model ?? "cpu"}, bun ${Bun.version}, load average ${loadavg()
      .map((x) => x.toFixed(2))
      .join(" ")} at the start; drives in ${store}, downloads to ${out}, ${runs} runs, order reversed every other run`,
  );
  log("");
  log("| run | client | s | user s | sys s | peak RSS MiB |");
  log("| --- | --- | ---: | ---: | ---: | ---: |");
  for (let run = 1; run <= runs; run++) {
    for (const client of run % 2 ? clients : [...clients].reverse()) {
      rmSync(output, { force: true });
      flushPageCache();
      const { argv, env: clientEnv } = command(client);
      const measure = await timed(argv, { cwd: WORK, env: clientEnv, timeFile: join(WORK, "time.txt") });
      results.set(client, [...(results.get(client) ?? []), measure]);
      log(
        `| ${run} | ${client} | ${measure.seconds.toFixed(2)} | ${measure.user.toFixed(2)} | ${measure.system.toFixed(2)} | ${(measure.rssKiB / 1024).toFixed(0)} |`,
      );
      const made = /[0-9a-f]{8}-[0-9a-f-]{27}/.exec(measure.stdout)?.[0];
      if (/^(u1|u2|direct|curl-post)/.test(client) && made) {
        // every byte of the new drive is the image's (API 2.0 may have rounded it up with zeros)
        const [drivePath] = spawnSync("sh", ["-c", `ls ${store}/drivekit-stub-*/${made}`])
          .stdout.toString()
          .split("\n");
        if (drivePath && spawnSync("cmp", ["-n", String(size), image, drivePath]).status !== 0)
          throw new Error(`${client}: drive ${made} differs from the image`);
        await fetch(`${env.EHURI}drives/${made}/destroy`, { method: "POST", headers: { authorization }, tls });
      } else if (/^(d1|d2|curl-get)/.test(client)) {
        if (spawnSync("cmp", [image, output]).status !== 0)
          throw new Error(`${client}: the download differs from the image`);
      }
    }
  }
  log("");
  log(
    `load average ${loadavg()
      .map((x) => x.toFixed(2))
      .join(" ")} at the end`,
  );
  log("");
  const limit = scenario.link ? size / scenario.link : undefined;
  const medianOf = (client: string) => {
    const list = results.get(client);
    return list ? median(list.map((m) => m.seconds)) : undefined;
  };
  /** The curl baseline of a client, and the run it is compared with: the same without the proxy, or before the change. */
  const curlOf = (client: string) =>
    /^(u1|u2|direct)(-|$)/.test(client) ? "curl-post" : /^(d1|d2)(-|$)/.test(client) ? "curl-get" : "";
  const pairOf = (client: string) =>
    client.endsWith("-proxy") ? client.slice(0, -6) : results.has(`${client}-before`) ? `${client}-before` : "";
  const pairName = clients.some((client) => client.endsWith("-proxy")) ? "without the proxy" : "before";
  log(
    `| client | median s | min s | max s | ${limit ? "x the link's limit | " : ""}speed / curl's | speed / ${pairName} | median user + sys s | peak RSS MiB |`,
  );
  log(`| --- | ---: | ---: | ---: | ${limit ? "---: | " : ""}---: | ---: | ---: | ---: |`);
  for (const client of clients) {
    const list = results.get(client) ?? [];
    const seconds = medianOf(client) as number;
    const curl = medianOf(curlOf(client));
    const pair = medianOf(pairOf(client));
    log(
      `| ${client} | ${seconds.toFixed(2)} | ${Math.min(...list.map((m) => m.seconds)).toFixed(2)} | ${Math.max(...list.map((m) => m.seconds)).toFixed(2)} | ` +
        `${limit ? `${(limit / seconds).toFixed(2)} | ` : ""}${curl ? (curl / seconds).toFixed(2) : ""} | ${pair ? (pair / seconds).toFixed(2) : ""} | ` +
        `${median(list.map((m) => m.user + m.system)).toFixed(2)} | ${(Math.max(...list.map((m) => m.rssKiB)) / 1024).toFixed(0)} |`,
    );
  }
  if (limit)
    log(`\nlink limit: ${limit.toFixed(2)} s for ${(size / 1e6).toFixed(1)} MB at ${scenario.link! / 1e6} MB/s`);
  await Bun.write(join(WORK, `${values.scenario}-${Date.now()}.md`), `${lines.join("\n")}\n`);
} finally {
  proxy?.stop();
  await stub.stop();
  rmSync(out, { recursive: true, force: true });
  rmSync(store, { recursive: true, force: true });
  rmSync(curlConf, { force: true });
}
