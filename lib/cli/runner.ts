// Running a command: strict argument checks, one-line errors, exit statuses (0 done, 1 failed,
// 2 wrong call), and the stdout/stderr/env a command uses, so tests can run commands in-process.
import { createConsola, type ConsolaInstance } from "consola/core";
import { runCommand, type ArgsDef, type CommandDef } from "citty";
import { basename } from "node:path";
import { exitStatusOf, UsageError } from "../errors.ts";
import type { Context } from "../context.ts";
import type { RetryPolicy } from "../retry.ts";
import { createProgress } from "./progress.ts";
import { helpWidth, renderHelp, type HelpArg, type HelpMeta } from "./help.ts";

export interface Writer {
  write(chunk: string | Uint8Array): unknown;
}

export interface Io {
  stdout: Writer;
  stderr: Writer;
  env: Record<string, string | undefined>;
  /** The input stream for `-` arguments. */
  stdin: () => ReadableStream<Uint8Array>;
  /** Whether stdin and stderr are terminals (prompts, live progress). */
  stdinIsTTY: boolean;
  stderrIsTTY: boolean;
  cwd: string;
  /** stdout's width when it is a terminal (--help is wrapped to it). */
  columns?: number;
  /** The retry policy for the run's requests (a test paces it fast); undefined: DEFAULT_RETRY. */
  retry?: Readonly<RetryPolicy>;
}

/** The engines' Context, plus what only commands use: the raw I/O and stdout. */
export interface RunContext extends Context {
  io: Io;
  /** Print a result line (or raw text) on stdout. */
  print(text: string): void;
  /** Mask the secrets in a message before it is shown (maskSecrets). */
  redact(text: string): string;
}

export function processIo(): Io {
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    stdin: () => Bun.stdin.stream() as ReadableStream<Uint8Array>,
    stdinIsTTY: Boolean(process.stdin.isTTY),
    stderrIsTTY: Boolean(process.stderr.isTTY),
    cwd: process.cwd(),
    columns: process.stdout.isTTY ? process.stdout.columns : undefined,
  };
}

/** Secrets at least this long are masked wherever they appear; shorter ones could be any word. */
const BARE_SECRET_LENGTH = 8;

const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/**
 * Mask the places a secret can show up in a message: a Basic authorization value, a URL's
 * userinfo, a `user:secret` pair (an echoed auth line). A long secret is also masked anywhere;
 * a short one (a one-letter password) only there, or every "p" in "no space left" would go.
 */
export function maskSecrets(text: string, secrets: readonly string[]): string {
  let out = text
    .replace(/\bBasic\s+[A-Za-z0-9+/=]{4,}/g, "Basic ****")
    .replace(/\b([a-z][a-z0-9+.-]*:\/\/)[^\s/@]+@/gi, "$1****@");
  for (const secret of secrets) {
    out =
      secret.length >= BARE_SECRET_LENGTH
        ? out.split(secret).join("****")
        : out.replace(new RegExp(`:${escapeRegExp(secret)}(?=$|[\\s'"\\],;)])`, "g"), ":****");
  }
  return out;
}

/** citty hands `data` through untyped; every command reads its context with this. */
export function contextOf(context: { data?: unknown }): RunContext {
  const data = context.data as RunContext | undefined;
  if (!data?.io)
    throw new Error("command run without a drivekit context (use execute or runMain from lib/cli/runner.ts)");
  return data;
}

/** One plain line per message on stderr: `upload: error: ...` (an error is one line: scripts and cron mails read it). */
function createLogger(io: Io, tag: string, verbose: boolean): ConsolaInstance {
  const colors = io.stderrIsTTY && !io.env.NO_COLOR;
  const paint = (code: number, text: string) => (colors ? `\u001b[${code}m${text}\u001b[39m` : text);
  const labels: Record<string, string> = {
    fatal: paint(31, "error: "),
    error: paint(31, "error: "),
    warn: paint(33, "warning: "),
    success: paint(32, "done: "),
  };
  return createConsola({
    level: verbose ? 4 : 3,
    reporters: [
      {
        log(entry) {
          const text = entry.args.map((arg) => (arg instanceof Error ? arg.message : String(arg))).join(" ");
          io.stderr.write(`${entry.tag ? `${entry.tag}: ` : ""}${labels[entry.type] ?? ""}${text}\n`);
        },
      },
    ],
  }).withTag(tag);
}

interface FlagInfo {
  takesValue: boolean;
}

/** Every spelling citty accepts for each flag: the name, its kebab/camel forms, aliases, and --no- for booleans. */
function knownFlags(argsDef: ArgsDef): Map<string, FlagInfo> {
  const flags = new Map<string, FlagInfo>([
    ["help", { takesValue: false }],
    ["h", { takesValue: false }],
  ]);
  for (const [name, def] of Object.entries(argsDef)) {
    if (def.type === "positional") continue;
    const info = { takesValue: def.type === "string" || def.type === "enum" };
    const kebab = name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
    const camel = name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
    const alias = (def as { alias?: string | string[] }).alias;
    const aliases = alias === undefined ? [] : Array.isArray(alias) ? alias : [alias];
    for (const spelling of [name, kebab, camel, ...aliases]) {
      flags.set(spelling, info);
      if (!info.takesValue) flags.set(`no-${spelling}`, info);
    }
  }
  return flags;
}

/** citty accepts any flag; the contract says an unknown one is a wrong call (status 2). */
export function checkArgv(argsDef: ArgsDef, argv: string[]): void {
  const flags = knownFlags(argsDef);
  const positionals = Object.values(argsDef).filter((def) => def.type === "positional").length;
  let seen = 0;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === "--") {
      seen += argv.length - i - 1;
      break;
    }
    if (arg.startsWith("-") && arg !== "-") {
      const body = arg.replace(/^--?/, "");
      const eq = body.indexOf("=");
      const name = eq === -1 ? body : body.slice(0, eq);
      const info = flags.get(name);
      if (!info)
        throw new UsageError(`unknown option '${arg.length > 40 ? `${arg.slice(0, 40)}...` : arg}' (see --help)`);
      if (info.takesValue && eq === -1) {
        if (i + 1 >= argv.length) throw new UsageError(`option '${arg}' needs a value`);
        i++;
      }
      continue;
    }
    seen++;
  }
  if (seen > positionals) throw new UsageError(`too many arguments (see --help)`);
}

/** citty's enum refusal in our words: `invalid --convert 'zip': expected gzip or gunzip`. */
export function plainCittyMessage(message: string): string {
  const match = /^Invalid value for argument: --(\S+) \((.*)\)\. Expected one of: (.*)\.$/s.exec(message);
  if (!match) return message;
  const [, name, value = "", list = ""] = match;
  const options = list.split(", ");
  const expected = options.length > 1 ? `${options.slice(0, -1).join(", ")} or ${options.at(-1)}` : list;
  return `invalid --${name} '${value.replace(/[\r\n]+/g, " ").slice(0, 60)}': expected ${expected}`;
}

function wantsHelp(argv: string[]): boolean {
  const end = argv.indexOf("--");
  return (end === -1 ? argv : argv.slice(0, end)).some((arg) => arg === "--help" || arg === "-h");
}

/**
 * Run a command with the given arguments and I/O; resolves to the exit status. `program` is what
 * --help calls it (`upload.ts`, `drivekit upload`; default: NAME.ts).
 */
export async function execute<T extends ArgsDef>(
  command: CommandDef<T>,
  argv: string[],
  io: Io = processIo(),
  program?: string,
): Promise<number> {
  const meta = (typeof command.meta === "function" ? await command.meta() : await command.meta) ?? {};
  const verbose = argv.includes("--verbose");
  const log = createLogger(io, meta.name ?? "drivekit", verbose);
  const secrets: string[] = [];
  const redact = (text: string) => maskSecrets(text, secrets);
  const context: RunContext = {
    io,
    log,
    verbose,
    cwd: io.cwd,
    env: io.env,
    retry: io.retry,
    progress: (options) => createProgress({ io, log }, options),
    print: (text) => void io.stdout.write(text.endsWith("\n") ? text : `${text}\n`),
    redact,
    addSecret: (secret) => {
      if (secret) secrets.push(secret);
    },
  };
  try {
    const argsDef = ((typeof command.args === "function" ? await command.args() : await command.args) ?? {}) as ArgsDef;
    if (wantsHelp(argv)) {
      const options = { program: program ?? `${meta.name ?? "drivekit"}.ts`, width: helpWidth(io.env, io.columns) };
      io.stdout.write(renderHelp(meta as HelpMeta, argsDef as Record<string, HelpArg>, options));
      return 0;
    }
    checkArgv(argsDef, argv);
    await runCommand(command, { rawArgs: argv, data: context });
    return 0;
  } catch (error) {
    const status = (error as Error)?.name === "CLIError" ? 2 : exitStatusOf(error);
    const message = error instanceof Error ? error.message : String(error);
    log.error(redact(plainCittyMessage(message.replace(/\u001b\[[0-9;]*m/g, ""))));
    if (verbose && error instanceof Error && error.stack) log.debug(redact(error.stack));
    return status;
  }
}

/**
 * The entry point of every script: `if (import.meta.main) runMain(command)`; its --help names it
 * as it was run (upload.ts, upload.js), or as `program` says (`drivekit upload`).
 */
export function runMain<T extends ArgsDef>(
  command: CommandDef<T>,
  program?: string,
  argv = process.argv.slice(2),
): void {
  const name = program ?? (process.argv[1] ? basename(process.argv[1]) : undefined);
  void execute(command, argv, processIo(), name).then((status) => {
    process.exitCode = status;
  });
}
