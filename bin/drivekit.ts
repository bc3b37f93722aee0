#!/usr/bin/env bun
// The drivekit command: `drivekit OP ARGS` runs scripts/OP.ts ARGS in this process (the same flags,
// output and exit statuses); `drivekit --help` lists the operations, `drivekit --version` prints
// the version, `drivekit completion bash|zsh` prints a completion script. Only the operation asked
// for is loaded, so that --help starts fast.
import { version } from "../package.json";
import { helpWidth, renderCommandHelp } from "../lib/cli/help.ts";
import { OPERATIONS } from "./operations.ts";

const PROGRAM = "drivekit";
/** Commands of drivekit's own, beside the operations. */
const COMMANDS = [
  { name: "completion", summary: "Print a shell completion script: drivekit completion bash|zsh" },
  { name: "help", summary: "Show an operation's help: drivekit help OPERATION" },
];

const INTRO = {
  program: PROGRAM,
  description:
    "Move disk images in and out of clouds that speak the CloudSigma / ElasticHosts drive API, and " +
    "manage their drives. Each operation runs as its own script would (scripts/OPERATION.ts): " +
    "`drivekit OPERATION --help` shows its flags.\n\n" +
    "API 1.0 reads EHURI and EHAUTH, API 2.0 CSURI and CSAUTH (--uri, --auth-file and --api override them).",
  examples: [
    { about: "an image to a new drive, read back and compared", args: "upload disk.img --verify" },
    { about: "a drive to a file compressed with zstd as it arrives", args: "download DRIVE backup.img.zst" },
  ],
};

function help(): string {
  const width = helpWidth(process.env, process.stdout.isTTY ? process.stdout.columns : undefined);
  const operations = Object.entries(OPERATIONS).map(([name, entry]) => ({ name, summary: entry.summary }));
  return renderCommandHelp(INTRO, operations, COMMANDS, width);
}

/** A wrong call to drivekit itself: one line on stderr, status 2. */
function wrongCall(message: string): void {
  process.stderr.write(`${PROGRAM}: error: ${message}\n`);
  process.exitCode = 2;
}

async function completion(shell: string | undefined): Promise<void> {
  const { SHELLS, completionScript } = await import("../lib/cli/completion.ts");
  const known = SHELLS.find((one) => one === shell);
  if (!known) return wrongCall(`completion needs a shell, ${SHELLS.join(" or ")}: ${PROGRAM} completion bash`);
  const operations = await Promise.all(
    Object.entries(OPERATIONS).map(async ([name, entry]) => {
      const { default: command } = await entry.load();
      return { name, summary: entry.summary, args: command.args };
    }),
  );
  process.stdout.write(
    completionScript(
      known,
      PROGRAM,
      operations,
      COMMANDS.map((command) => command.name),
    ),
  );
}

async function runOperation(name: string, argv: string[]): Promise<void> {
  const entry = OPERATIONS[name];
  if (!entry) return wrongCall(`unknown operation '${name.slice(0, 40)}' (${PROGRAM} --help lists them)`);
  const [{ default: command }, { runMain }] = await Promise.all([entry.load(), import("../lib/cli/runner.ts")]);
  runMain(command, `${PROGRAM} ${name}`, argv);
}

async function main(argv: string[]): Promise<void> {
  const [first, ...rest] = argv;
  switch (first) {
    case undefined:
      process.stderr.write(help());
      process.exitCode = 2;
      return;
    case "--help":
    case "-h":
      process.stdout.write(help());
      return;
    case "help":
      if (rest[0] === undefined) process.stdout.write(help());
      else await runOperation(rest[0], ["--help"]);
      return;
    case "--version":
    case "-V":
      process.stdout.write(`${version}\n`);
      return;
    case "completion":
      return completion(rest[0]);
    default:
      if (first.startsWith("-")) return wrongCall(`unknown option '${first.slice(0, 40)}' (${PROGRAM} --help)`);
      return runOperation(first, rest);
  }
}

main(process.argv.slice(2)).catch((error: unknown) => {
  process.stderr.write(`${PROGRAM}: error: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
});
