// Shell completion: `drivekit completion bash|zsh` is generated from the operations' flags. bash's
// is run (COMP_WORDS set, the function called); zsh's is parsed by zsh and its function called
// with zsh's completion helpers stubbed, to see what it hands them.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { OPERATIONS } from "../../bin/operations.ts";
import { shortDescription } from "../../lib/cli/completion.ts";
import type { HelpArg } from "../../lib/cli/help.ts";
import { spawnDrivekit } from "../helpers.ts";

let dir: string;
const scripts: Record<string, string> = {};

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "drivekit-completion-"));
  for (const shell of ["bash", "zsh"]) {
    const result = await spawnDrivekit(["completion", shell]);
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    scripts[shell] = join(dir, `drivekit.${shell}`);
    await Bun.write(scripts[shell], result.stdout);
  }
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Every spelling completion should offer for an operation's flags. */
async function spellingsOf(name: string): Promise<string[]> {
  const args: Record<string, HelpArg> = (await (OPERATIONS[name] as (typeof OPERATIONS)[string]).load()).default.args;
  return Object.entries(args).flatMap(([flag, arg]) => {
    if (arg.type === "positional") return [];
    const alias = "alias" in arg ? arg.alias : undefined;
    const aliases = alias === undefined ? [] : Array.isArray(alias) ? alias : [alias];
    const spellings = [flag, ...aliases].map((one) => (one.length === 1 ? `-${one}` : `--${one}`));
    return arg.type === "boolean" && arg.default === true ? [...spellings, `--no-${flag}`] : spellings;
  });
}

/** What bash completes for each command line (the last word being completed). */
function bashComplete(lines: string[][]): string[][] {
  const calls = lines.map((words) => `c ${words.map((word) => `'${word}'`).join(" ")}`).join("\n");
  const program = `source '${scripts.bash}'
c() { COMP_WORDS=("$@"); COMP_CWORD=$(( \${#COMP_WORDS[@]} - 1 )); COMPREPLY=(); _drivekit; echo "\${COMPREPLY[*]}"; }
${calls}
complete -p drivekit`;
  const run = Bun.spawnSync(["bash", "--norc", "--noprofile", "-c", program], { stdout: "pipe", stderr: "pipe" });
  expect(run.stderr.toString()).toBe("");
  const out = run.stdout.toString().split("\n");
  expect(out[lines.length]).toBe("complete -o default -F _drivekit drivekit");
  return out.slice(0, lines.length).map((line) => line.split(" ").filter(Boolean));
}

describe("bash", () => {
  test("operations first, then each operation's flags (every spelling), the choices of an enum", async () => {
    const names = Object.keys(OPERATIONS);
    const [all, up, fo, format, tier, size, shells, helpOf] = bashComplete([
      ["drivekit", ""],
      ["drivekit", "up"],
      ["drivekit", "upload", "--fo"],
      ["drivekit", "upload", "disk.img", "--format", ""],
      ["drivekit", "upload", "-t", "s"],
      ["drivekit", "upload", "--size", ""],
      ["drivekit", "completion", ""],
      ["drivekit", "help", "d"],
    ]);
    expect(all).toEqual([...names, "completion", "help", "--help", "--version"]);
    expect(up).toEqual(["upload"]);
    expect(fo).toEqual(["--format"]);
    expect(format).toEqual(["raw", "gzip", "zstd", "qcow2"]);
    expect(tier).toEqual(["ssd"]);
    // a value of no fixed choices: nothing offered (bash's own file completion takes over)
    expect(size).toEqual([]);
    expect(shells).toEqual(["bash", "zsh"]);
    expect(helpOf).toEqual(["destroy", "download"]);
    const flags = bashComplete(names.map((name) => ["drivekit", name, "-"]));
    for (const [index, name] of names.entries()) {
      expect(flags[index]?.sort()).toEqual([...(await spellingsOf(name)), "--help"].sort());
    }
  });
});

const zsh = Bun.which("zsh");

describe.skipIf(!zsh)("zsh (.ci/run installs it; skipped where zsh is missing)", () => {
  /** Run zsh with _arguments, _describe and compdef printing what they are given. */
  function zshRun(body: string): string {
    const program = `_arguments() { print -rl -- "ARGUMENTS" "$@" }
_describe() { print -rl -- "DESCRIBE" "$@"; print -rl -- "\${(@P)4}" }
compdef() { print -r -- "COMPDEF $*" }
source '${scripts.zsh}'
${body}`;
    const run = Bun.spawnSync([zsh as string, "-f", "-c", program], { stdout: "pipe", stderr: "pipe" });
    expect(run.stderr.toString()).toBe("");
    expect(run.exitCode).toBe(0);
    return run.stdout.toString();
  }

  test("it parses, and sourcing it registers the function for drivekit", () => {
    expect(Bun.spawnSync([zsh as string, "-n", scripts.zsh as string]).exitCode).toBe(0);
    expect(zshRun("")).toBe("COMPDEF _drivekit drivekit\n");
  });

  test("operations with their summaries; each operation's flags with choices and files", async () => {
    const operations = zshRun("words=(drivekit ''); CURRENT=2; _drivekit").split("\n");
    for (const [name, entry] of Object.entries(OPERATIONS))
      expect(operations).toContain(`${name}:${shortDescription(entry.summary)}`);
    for (const name of Object.keys(OPERATIONS)) {
      const specs = zshRun(`words=(drivekit ${name} ''); CURRENT=3; _drivekit`).split("\n");
      expect(specs[1]).toBe("ARGUMENTS");
      for (const spelling of await spellingsOf(name))
        expect(specs.some((spec) => new RegExp(`^(\\([^)]*\\))?${spelling}=?\\[`).test(spec))).toBe(true);
      expect(specs).toContain("(- *)-h[Show this help]");
      expect(specs).toContain("(- *)--help[Show this help]");
    }
    const upload = zshRun("words=(drivekit upload ''); CURRENT=3; _drivekit").split("\n");
    expect(upload).toContain("--format=[Read the image as this format]:format:(raw gzip zstd qcow2)");
    expect(upload).toContain("1:FILE:_files");
    expect(upload).toContain("--auth-file=[File holding one line user\\:secret]:PATH:_files");
  });
});

test("a short description: asides in brackets and later clauses left out, at most 70 characters", () => {
  expect(shortDescription("The drive's size (k/M/G/T allowed); needed for stdin")).toBe("The drive's size");
  expect(shortDescription("The image is gzip (the vendor tool's -z): --format gzip")).toBe(
    "The image is gzip: --format gzip",
  );
  expect(shortDescription("x ".repeat(60)).length).toBeLessThanOrEqual(70);
});
