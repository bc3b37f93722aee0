// What the benchmarks share: the median, a client timed under /usr/bin/time (wall time and peak
// RSS), and the emulator started as a process of its own, so its CPU and memory are not counted
// as the client's.
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";

export const ROOT = join(import.meta.dir, "..");

/** The middle value; the mean of the two middle ones for an even count. */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

export interface Timed {
  stdout: string;
  seconds: number;
  rssKiB: number;
  /** CPU seconds in user and kernel mode (its children included). */
  user: number;
  system: number;
}

/** Run `argv` under /usr/bin/time with a small environment plus `env`; its stdout, wall time, peak RSS and CPU time. */
export async function timed(
  argv: string[],
  options: { cwd: string; env?: Record<string, string>; timeFile: string },
): Promise<Timed> {
  const child = Bun.spawn(["/usr/bin/time", "-f", "%e %M %U %S", "-o", options.timeFile, ...argv], {
    cwd: options.cwd,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", NO_COLOR: "1", ...options.env },
    stdout: "pipe",
    stderr: "pipe",
  });
  const started = performance.now();
  const [stdout, stderr, status] = await Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
    child.exited,
  ]);
  const seconds = (performance.now() - started) / 1000;
  if (status !== 0)
    throw new Error(`${argv.slice(0, 3).join(" ")} failed (${status}): ${stderr.trim().split("\n").pop()}`);
  const [, rss, user, system] = (await Bun.file(options.timeFile).text()).trim().split("\n").pop()!.split(" ");
  return { stdout, seconds, rssKiB: Number(rss), user: Number(user), system: Number(system) };
}

export interface Emulator {
  /** EHURI, EHAUTH, CSURI, CSAUTH as it printed them. */
  env: Record<string, string>;
  /** Its request log so far (with `log: true`). */
  log(): string;
  clearLog(): void;
  stop(): Promise<unknown>;
}

/** `bun run stub OPTIONS` as its own process, once it has printed the variables to export. */
export async function startEmulator(
  options: string[],
  { log = false, env = {} }: { log?: boolean; env?: Record<string, string> } = {},
): Promise<Emulator> {
  const child = Bun.spawn(["bun", join(ROOT, "emulator/main.ts"), ...options], {
    stdout: "pipe",
    stderr: log ? "pipe" : "ignore",
    env: { ...process.env, ...env },
  });
  const printed: Record<string, string> = {};
  const reader = child.stdout.getReader();
  let text = "";
  // bounded: the four lines come in the first few reads
  for (let i = 0; i < 100 && !(printed.CSAUTH && printed.CSURI && printed.EHURI && printed.EHAUTH); i++) {
    const { value, done } = await reader.read();
    if (done) break;
    text += new TextDecoder().decode(value);
    for (const match of text.matchAll(/^export (\w+)=(\S+)$/gm)) printed[match[1] as string] = match[2] as string;
  }
  reader.releaseLock();
  if (!printed.CSAUTH || !printed.CSURI || !printed.EHURI || !printed.EHAUTH)
    throw new Error("the emulator printed no EHURI/EHAUTH/CSURI/CSAUTH");
  let logged = "";
  if (log && child.stderr instanceof ReadableStream) {
    void (async () => {
      for await (const piece of child.stderr as ReadableStream<Uint8Array>) logged += new TextDecoder().decode(piece);
    })();
  }
  return {
    env: printed,
    log: () => logged,
    clearLog: () => {
      logged = "";
    },
    stop: () => {
      child.kill("SIGTERM");
      return child.exited;
    },
  };
}

let dropCaches = true;
/**
 * Write back dirty pages and, when permitted (root), empty the page cache, so each timing starts
 * alike; returns what it did, for the results' header.
 */
export function flushPageCache(): string {
  spawnSync("sync");
  if (dropCaches) {
    try {
      writeFileSync("/proc/sys/vm/drop_caches", "1\n");
    } catch {
      dropCaches = false;
    }
  }
  return dropCaches ? "sync and drop_caches" : "sync only (drop_caches not permitted)";
}
