// Running commands in-process (captured stdout/stderr, chosen env and stdin) and as real processes.
import type { CommandDef } from "citty";
import { execute, type Io } from "../lib/cli/runner.ts";
import { DEFAULT_RETRY, type RetryPolicy } from "../lib/retry.ts";
import type { Context } from "../lib/context.ts";

export interface RunResult {
  status: number;
  stdout: string;
  stdoutBytes: Uint8Array;
  stderr: string;
}

export interface RunOptions {
  env?: Record<string, string | undefined>;
  stdin?: string | Uint8Array;
  stdinIsTTY?: boolean;
  stderrIsTTY?: boolean;
  cwd?: string;
  /** In-process runs: the retry policy of the run's requests (over DEFAULT_RETRY), e.g. paced fast or one attempt. */
  retry?: Partial<RetryPolicy>;
}

function collector() {
  const chunks: Uint8Array[] = [];
  const encoder = new TextEncoder();
  return {
    writer: {
      write: (chunk: string | Uint8Array) =>
        void chunks.push(typeof chunk === "string" ? encoder.encode(chunk) : chunk.slice()),
    },
    bytes: () => Buffer.concat(chunks),
  };
}

/** Run a command in this process, as `runMain` would, with captured output. */
// biome-ignore lint/suspicious/noExplicitAny: a command of any flag set
export async function run(command: CommandDef<any>, argv: string[], options: RunOptions = {}): Promise<RunResult> {
  const out = collector();
  const err = collector();
  const stdin = options.stdin ?? "";
  const io: Io = {
    stdout: out.writer,
    stderr: err.writer,
    env: { NO_COLOR: "1", ...options.env },
    stdin: () => new Blob([stdin as Uint8Array<ArrayBuffer>]).stream() as ReadableStream<Uint8Array>,
    stdinIsTTY: options.stdinIsTTY ?? false,
    stderrIsTTY: options.stderrIsTTY ?? false,
    cwd: options.cwd ?? process.cwd(),
    retry: options.retry && { ...DEFAULT_RETRY, ...options.retry },
  };
  const status = await execute(command, argv, io);
  const stdoutBytes = new Uint8Array(out.bytes());
  return {
    status,
    stdout: new TextDecoder().decode(stdoutBytes),
    stdoutBytes,
    stderr: new TextDecoder().decode(err.bytes()),
  };
}

export const ROOT = new URL("..", import.meta.url).pathname;

/** A process started by a test: signal it while it runs, await how it ended. */
export interface Spawned {
  pid: number;
  kill(signal: NodeJS.Signals): void;
  finished: Promise<RunResult>;
}

/** Start a real process with NO_COLOR=1 and only the given env (plus PATH and HOME), its output captured. */
export function startProcess(command: string[], options: RunOptions = {}): Spawned {
  const child = Bun.spawn(command, {
    cwd: options.cwd ?? ROOT,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, NO_COLOR: "1", ...options.env } as Record<string, string>,
    stdin: options.stdin === undefined ? "ignore" : new Blob([options.stdin as Uint8Array<ArrayBuffer>]),
    stdout: "pipe",
    stderr: "pipe",
  });
  const finished = Promise.all([
    new Response(child.stdout).arrayBuffer(),
    new Response(child.stderr).text(),
    child.exited,
  ]).then(([stdout, stderr, status]) => {
    const stdoutBytes = new Uint8Array(stdout);
    return { status, stdout: new TextDecoder().decode(stdoutBytes), stdoutBytes, stderr };
  });
  return { pid: child.pid, kill: (signal) => child.kill(signal), finished };
}

/** Start a script as a real process (`bun scripts/NAME.ts ...`), to signal it or watch it while it runs. */
export function startScript(script: string, argv: string[], options: RunOptions = {}): Spawned {
  return startProcess(["bun", `${ROOT}scripts/${script}.ts`, ...argv], options);
}

/** Run a script as a real process (`bun scripts/NAME.ts ...`) to its end. */
export function spawnScript(script: string, argv: string[], options: RunOptions = {}): Promise<RunResult> {
  return startScript(script, argv, options).finished;
}

/** Run the drivekit command from the source (`bun bin/drivekit.ts ...`) to its end. */
export function spawnDrivekit(argv: string[], options: RunOptions = {}): Promise<RunResult> {
  return startProcess(["bun", `${ROOT}bin/drivekit.ts`, ...argv], options).finished;
}

export const FIXTURES = `${ROOT}test/fixtures/api1/`;

export function fixture(name: string): Promise<string> {
  return Bun.file(`${FIXTURES}${name}`).text();
}

/** A Context for calling lib code directly (no command around it): logs dropped, no progress shown. */
export function quietContext(
  env: Record<string, string | undefined>,
  options: { cwd?: string; retry?: Readonly<RetryPolicy> } = {},
): Context {
  return {
    log: { debug() {}, info() {}, warn() {} } as unknown as Context["log"],
    verbose: false,
    cwd: options.cwd ?? "/",
    env,
    addSecret() {},
    progress: () => ({ update() {}, finish() {} }),
    retry: options.retry,
  };
}
