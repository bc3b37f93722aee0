// What the fault suites share: one emulator of both APIs, waits on events (bounded), data requests
// held at a known point, what a run left in its folder, and a small tmpfs for a full disk (spawned
// runs: test/helpers.ts startScript).
import { existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { startStub, type DriveStub, type Handler } from "../../emulator/server.ts";
import { installApi2, type Api2Stub } from "../../emulator/api2.ts";
import type { RunResult } from "../helpers.ts";

/** The emulator of both APIs, and what each test changes on it put back. */
export class Emulator {
  stub!: DriveStub;
  api2!: Api2Stub;
  private baseHandlers: Handler[] = [];

  async start(): Promise<this> {
    this.stub = await startStub();
    this.api2 = await installApi2(this.stub);
    this.baseHandlers = [...this.stub.handlers];
    return this;
  }

  async stop(): Promise<void> {
    this.api2.stop();
    await this.stub.stop();
  }

  /** Faults, handlers, hooks and request records back to none. */
  clear(): void {
    this.stub.faults.length = 0;
    this.stub.handlers.splice(0, this.stub.handlers.length, ...this.baseHandlers);
    this.api2.originHook = undefined;
    this.forget();
  }

  /** Only the request records: what a rerun sends is counted apart from the first run. */
  forget(): void {
    this.stub.requests.length = 0;
    this.api2.chunked.chunkPosts.length = 0;
    this.api2.originRequests.length = 0;
  }

  /** Put a handler before the emulator's own ones. */
  intercept(handler: Handler): void {
    this.stub.handlers.unshift(handler);
  }
}

/** Wait for `done` (polled every 10 ms, at most 30 s): a run's progress is an event, not a time. */
export async function waitFor(done: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 3000; i++) {
    if (done()) return;
    await Bun.sleep(10);
  }
  throw new Error(`gave up waiting for ${what}`);
}

/**
 * Lets the first `pass` matching requests through, holds the next `hold` (default: all) until
 * released, lets later ones through: a run stopped at a known point, without timing.
 */
export class Hold {
  passed = 0;
  held = 0;
  private released = false;
  private open!: (answer: (() => Response) | undefined) => void;
  private readonly opened = new Promise<(() => Response) | undefined>((resolve) => (this.open = resolve));

  constructor(
    readonly pass: number,
    readonly hold = Infinity,
  ) {}

  /** undefined: let the request through (now, or once released without an answer). */
  async take(): Promise<Response | undefined> {
    if (this.passed < this.pass) {
      this.passed++;
      return undefined;
    }
    if (this.released || this.held >= this.hold) return undefined;
    this.held++;
    return (await this.opened)?.();
  }

  handler(method: string, path: RegExp): Handler {
    return (request, urlPath) => (request.method === method && path.test(urlPath) ? this.take() : undefined);
  }

  /** The held requests get `answer` (none: the emulator answers them); later ones go through. */
  release(answer?: () => Response): void {
    this.released = true;
    this.open(answer);
  }
}

/** What a run left in a folder, by kind: resume journals, run locks, partial files. */
export function leftIn(dir: string): { journals: string[]; locks: string[]; parts: string[] } {
  const names = existsSync(dir) ? readdirSync(dir) : [];
  return {
    journals: names.filter(
      (name) => name.startsWith(".drivekit-journal-") && !name.includes(".lock") && !name.endsWith(".tmp"),
    ),
    locks: names.filter((name) => name.endsWith(".lock")),
    parts: names.filter((name) => name.endsWith(".part")),
  };
}

/** The chunks a journal in `dir` records as finished. */
export function journaled(dir: string): Set<number> {
  const [name] = leftIn(dir).journals;
  if (!name) return new Set();
  const lines = readFileSync(join(dir, name), "utf8").split("\n");
  // only whole lines: the last one may be torn
  return new Set(
    lines
      .slice(1, -1)
      .filter((line) => /^\d+$/.test(line))
      .map(Number),
  );
}

/** A retry policy paced for tests (what is tested is how a run ends, not how long it waits); with one attempt, a run that does not retry within itself. */
export const FAST_RETRY = { baseMs: 1, capMs: 5 } as const;
export const ONE_ATTEMPT = { attempts: 1 } as const;

/** The error lines of a run, and whether anything looks like a stack trace. */
export function errorLines(result: RunResult): { errors: string[]; stack: boolean } {
  const lines = result.stderr.split("\n");
  return {
    errors: lines.filter((line) => /: error: /.test(line)),
    stack: lines.some((line) => /^\s+at \S/.test(line)),
  };
}

/** A tmpfs of `size` mounted on `dir` (root only), for a disk that fills up; else why it cannot be had here. */
export function mountTmpfs(
  dir: string,
  size: string,
): { unmount: () => void; resize: (size: string) => void } | string {
  if (process.getuid?.() !== 0) return "not root: a tmpfs cannot be mounted";
  mkdirSync(dir, { recursive: true });
  const mount = Bun.spawnSync(["mount", "-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir], { stderr: "pipe" });
  if (mount.exitCode !== 0) return `mount -t tmpfs failed: ${mount.stderr.toString().trim()}`;
  return {
    unmount: () => void Bun.spawnSync(["umount", "-l", dir]),
    resize: (next) => {
      const remount = Bun.spawnSync(["mount", "-o", `remount,size=${next}`, dir], { stderr: "pipe" });
      if (remount.exitCode !== 0) throw new Error(`remount failed: ${remount.stderr.toString().trim()}`);
    },
  };
}
