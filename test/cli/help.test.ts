// --help as a terminal shows it: every script (and drivekit) spawned with COLUMNS=80 and 120: no
// line over the width, no trailing spaces, every flag, alias and argument there; and the renderer
// itself (wrapping, the width, headings, defaults, examples).
import { describe, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { flagSpec, helpWidth, renderHelp, wrap, type HelpArg } from "../../lib/cli/help.ts";
import type { AnyOperation } from "../../lib/cli/command.ts";
import { ROOT, spawnDrivekit, spawnScript } from "../helpers.ts";

const SCRIPTS = readdirSync(join(ROOT, "scripts"))
  .filter((name) => name.endsWith(".ts"))
  .map((name) => name.slice(0, -3))
  .sort();

async function operation(name: string): Promise<AnyOperation> {
  return (await import(join(ROOT, "scripts", `${name}.ts`))).default as AnyOperation;
}

/** What every help text must be at `width`: no longer line, no trailing space, nothing on stderr. */
function expectFits(result: { status: number; stdout: string; stderr: string }, width: number): string[] {
  expect(result.stderr).toBe("");
  expect(result.status).toBe(0);
  const lines = result.stdout.split("\n");
  expect(lines.at(-1)).toBe("");
  expect(lines.filter((line) => line.length > width)).toEqual([]);
  expect(lines.filter((line) => /\s$/.test(line))).toEqual([]);
  return lines;
}

/** Every flag (and each alias) and every argument of `args` appears in `text`. */
function expectEveryFlag(text: string, args: Record<string, HelpArg>): void {
  const shown = new Set(text.match(/(?<![\w-])--?[a-z][\w-]*/g) ?? []);
  for (const [name, arg] of Object.entries(args)) {
    if (arg.type === "positional") {
      expect(text).toMatch(new RegExp(`\\b${arg.valueHint ?? name.toUpperCase()}\\b`));
      continue;
    }
    const alias = "alias" in arg ? arg.alias : undefined;
    const spellings = [name, ...(alias === undefined ? [] : Array.isArray(alias) ? alias : [alias])];
    for (const spelling of spellings) expect(shown).toContain(spelling.length === 1 ? `-${spelling}` : `--${spelling}`);
  }
}

describe("each script's --help (spawned)", () => {
  for (const name of SCRIPTS) {
    test(`${name}.ts: within 80 and 120 columns, every flag there, usage first, examples last`, async () => {
      const command = await operation(name);
      const narrow = await spawnScript(name, ["--help"], { env: { COLUMNS: "80" } });
      const lines = expectFits(narrow, 80);
      expectEveryFlag(narrow.stdout, command.args);
      expect(lines[0]).toStartWith(`Usage: ${name}.ts `);
      expect(narrow.stdout).toContain(`\nExamples:\n  # `);
      const wide = await spawnScript(name, ["--help"], { env: { COLUMNS: "120" } });
      const wideLines = expectFits(wide, 120);
      for (const { about, args, pipe } of command.meta.examples) {
        const commandLine = [pipe ? `${pipe} |` : "", `${name}.ts`, args].filter(Boolean).join(" ");
        expect(wideLines).toContain(`  # ${about}`);
        expect(wideLines).toContain(`  ${commandLine}`);
      }
      expectEveryFlag(wide.stdout, command.args);
      expect(wide.stdout.split("\n").length).toBeLessThanOrEqual(lines.length);
    });
  }

  test("a wider terminal is used: the long descriptions take fewer lines at 120 columns", async () => {
    const narrow = await spawnScript("upload", ["--help"], { env: { COLUMNS: "80" } });
    const wide = await spawnScript("upload", ["--help"], { env: { COLUMNS: "120" } });
    expect(wide.stdout.split("\n").length).toBeLessThan(narrow.stdout.split("\n").length);
    expect(Math.max(...wide.stdout.split("\n").map((line) => line.length))).toBeGreaterThan(80);
  });

  test("without COLUMNS and without a terminal: 80 columns", async () => {
    const result = await spawnScript("download", ["--help"]);
    expectFits(result, 80);
    expect(result.stdout).toBe((await spawnScript("download", ["--help"], { env: { COLUMNS: "80" } })).stdout);
  });
});

test("the transfer scripts put every flag under a heading: the image, the drive (destination), the transfer, many drives, output, the connection", async () => {
  for (const name of ["upload", "download", "copy"]) {
    const args: Record<string, HelpArg> = (await operation(name)).args;
    const ungrouped = Object.entries(args).filter(([, arg]) => arg.type !== "positional" && arg.group === undefined);
    expect(ungrouped).toEqual([]);
    const { stdout } = await spawnScript(name, ["--help"], { env: { COLUMNS: "80" } });
    const headings = stdout.split("\n").filter((line) => /^[A-Z][\w ]*:$/.test(line));
    expect(headings).toEqual([
      "Arguments:",
      ...(name === "copy" ? ["The destination:"] : ["The image:"]),
      ...(name === "upload" ? ["The drive:"] : []),
      "The transfer:",
      ...(name === "upload" ? [] : ["Many drives:"]),
      "Output:",
      "The connection:",
      "Options:",
      "Examples:",
    ]);
  }
});

describe("drivekit --help (spawned)", () => {
  for (const width of [80, 120]) {
    test(`within ${width} columns, every operation listed with its summary`, async () => {
      const result = await spawnDrivekit(["--help"], { env: { COLUMNS: String(width) } });
      const lines = expectFits(result, width);
      expect(lines[0]).toBe("Usage: drivekit OPERATION [ARGUMENTS] [OPTIONS]");
      for (const name of SCRIPTS) expect(result.stdout).toMatch(new RegExp(`^  ${name} +\\S`, "m"));
      for (const flag of ["--help", "--version", "completion"]) expect(result.stdout).toContain(flag);
    });
  }

  test("drivekit OP --help is the script's help under the name drivekit OP, within 80 columns", async () => {
    for (const name of SCRIPTS) {
      const result = await spawnDrivekit([name, "--help"], { env: { COLUMNS: "80" } });
      const lines = expectFits(result, 80);
      expect(lines[0]).toStartWith(`Usage: drivekit ${name} `);
      expectEveryFlag(result.stdout, (await operation(name)).args);
    }
  });
});

describe("the renderer", () => {
  test("wrap: words kept whole, a word longer than a line cut, paragraphs kept apart, the indent counted", () => {
    expect(wrap("one two three four", 9)).toEqual(["one two", "three", "four"]);
    expect(wrap("one two\n\nthree", 40, 2)).toEqual(["  one two", "", "  three"]);
    expect(wrap("abcdefghij xy", 6, 2)).toEqual(["  abcd", "  efgh", "  ij", "  xy"]);
    expect(wrap("", 10)).toEqual([]);
  });

  test("the width: COLUMNS first, then the terminal's, else 80; never under 40 nor over 120", () => {
    expect(helpWidth({})).toBe(80);
    expect(helpWidth({}, 100)).toBe(100);
    expect(helpWidth({ COLUMNS: "90" }, 100)).toBe(90);
    expect(helpWidth({ COLUMNS: "x" }, 100)).toBe(100);
    expect(helpWidth({ COLUMNS: "10" })).toBe(40);
    expect(helpWidth({ COLUMNS: "300" })).toBe(120);
  });

  test("flag spellings: short alias first, the value as its hint or its choices", () => {
    expect(flagSpec("chunk", { type: "string", alias: "c", valueHint: "SIZE" })).toBe("-c, --chunk SIZE");
    expect(flagSpec("format", { type: "enum", options: ["raw", "gzip"] })).toBe("--format raw|gzip");
    expect(flagSpec("quiet", { type: "boolean", alias: ["q"] })).toBe("-q, --quiet");
    expect(flagSpec("uri", { type: "string" })).toBe("--uri VALUE");
  });

  test("a whole help: usage, description, arguments, options, headings in their order, defaults, examples", () => {
    const text = renderHelp(
      {
        name: "demo",
        description: "Do a thing\n\nAt length.",
        examples: [{ about: "from a pipe", args: "- --level 3", pipe: "cat x" }],
      },
      {
        file: { type: "positional", description: "The input", required: false },
        uri: { type: "string", group: "connection", description: "Where", valueHint: "URL" },
        level: { type: "string", description: "How hard", default: "6", valueHint: "N" },
        quiet: { type: "boolean", alias: "q", group: "transfer", description: "Say less" },
        wait: { type: "boolean", group: "transfer", description: "Wait", default: true },
      },
      { program: "demo.ts", width: 40 },
    );
    expect(text).toBe(
      [
        "Usage: demo.ts [OPTIONS] [FILE]",
        "",
        "Do a thing",
        "",
        "At length.",
        "",
        "Arguments:",
        "  FILE",
        "      The input",
        "",
        "Options:",
        "  --level N",
        "      How hard [default: 6]",
        "  -h, --help",
        "      Show this help",
        "",
        "The transfer:",
        "  -q, --quiet",
        "      Say less",
        "  --wait",
        "      Wait [default: on]",
        "",
        "The connection:",
        "  --uri URL",
        "      Where",
        "",
        "Examples:",
        "  # from a pipe",
        "  cat x | demo.ts - --level 3",
        "",
      ].join("\n"),
    );
  });

  test("an example command too long for a line goes on with a backslash, within the width", () => {
    const text = renderHelp(
      { examples: [{ about: "long", args: "--name a-rather-long-name --tags 'one two three' --meta k=v" }] },
      {},
      { program: "create.ts", width: 40 },
    );
    const lines = text.split("\n");
    expect(lines.filter((line) => line.length > 40)).toEqual([]);
    const command = lines.slice(lines.indexOf("  # long") + 1, -1);
    expect(command.length).toBeGreaterThan(1);
    expect(command.slice(0, -1).every((line) => line.endsWith(" \\"))).toBe(true);
    expect(command.map((line) => line.replace(/ \\$/, "").trim()).join(" ")).toBe(
      "create.ts --name a-rather-long-name --tags 'one two three' --meta k=v",
    );
  });
});
