// Running commands in-process (captured stdout/stderr, chosen env and stdin) and as real processes.
import type { CommandDef } from "citty";
import { execute, type Io } from "../lib/cli/runner.ts";
import { DEFAULT_RETRY, type RetryPolicy } from "../lib/retry.ts";

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

const ROOT = new URL("..", import.meta.url).pathname;

/** Run a script as a real process (`bun scripts/NAME.ts ...`) with NO_COLOR=1 and only the given env. */
export async function spawnScript(script: string, argv: string[], options: RunOptions = {}): Promise<RunResult> {
  const child = Bun.spawn(["bun", `${ROOT}scripts/${script}.ts`, ...argv], {
    cwd: options.cwd ?? ROOT,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, NO_COLOR: "1", ...options.env } as Record<string, string>,
    stdin: options.stdin === undefined ? "ignore" : new Blob([options.stdin as Uint8Array<ArrayBuffer>]),
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdoutBuffer, stderr, status] = await Promise.all([
    new Response(child.stdout).arrayBuffer(),
    new Response(child.stderr).text(),
    child.exited,
  ]);
  const stdoutBytes = new Uint8Array(stdoutBuffer);
  return { status, stdout: new TextDecoder().decode(stdoutBytes), stdoutBytes, stderr };
}

export const FIXTURES = `${ROOT}test/fixtures/api1/`;

export function fixture(name: string): Promise<string> {
  return Bun.file(`${FIXTURES}${name}`).text();
}
