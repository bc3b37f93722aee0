// --help as text for a terminal: the usage line, the description and each flag's description
// wrapped to the width, flags under headings, defaults and choices shown, examples at the end, no
// trailing spaces. Imports no runtime code, so `drivekit --help` loads nothing else.
import type { ArgDef } from "citty";

/** The headings flags are shown under, in this order after the ungrouped ones ("Options"). */
export const GROUPS = {
  image: "The image",
  drive: "The drive",
  destination: "The destination",
  transfer: "The transfer",
  fleet: "Many drives",
  wait: "Waiting",
  output: "Output",
  connection: "The connection",
} as const;
export type Group = keyof typeof GROUPS;

/** A flag or argument as --help reads it: citty's definition and the heading it goes under. */
export type HelpArg = ArgDef & { group?: Group };

/** One example: what it does, then the command line (`args` after the program; `pipe` before it, with `|`). */
export interface Example {
  about: string;
  args: string;
  pipe?: string;
}

export interface HelpMeta {
  name?: string;
  description?: string;
  examples?: readonly Example[];
}

/** Help is wrapped to the terminal (or COLUMNS), at least this wide... */
const MIN_WIDTH = 40;
/** ...and at most this: longer lines are hard to read. */
const MAX_WIDTH = 120;
const DEFAULT_WIDTH = 80;
/** Joins words that stay on one line ("[default: 120]"); a space once wrapped. */
const NBSP = "\u00a0";
/** Where a flag starts, and where its description starts (on the lines below it). */
const FLAG_INDENT = 2;
const TEXT_INDENT = 6;

/** The width to wrap help to: COLUMNS when set, else the terminal's, else 80; kept within 40 to 120. */
export function helpWidth(env: Record<string, string | undefined>, terminalColumns?: number): number {
  const fromEnv = Number(env.COLUMNS);
  const width = Number.isInteger(fromEnv) && fromEnv > 0 ? fromEnv : (terminalColumns ?? DEFAULT_WIDTH);
  return Math.min(MAX_WIDTH, Math.max(MIN_WIDTH, width));
}

/** A paragraph as lines of at most `room` characters: words kept whole unless one is longer than a line. */
function wrapParagraph(paragraph: string, room: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const whole of paragraph.split(/[ \t\n]+/).filter(Boolean)) {
    let word = whole;
    // each pass takes a full line off a word too long for one
    while (word.length > room) {
      if (line !== "") lines.push(line);
      line = "";
      lines.push(word.slice(0, room));
      word = word.slice(room);
    }
    if (word === "") continue;
    if (line === "") line = word;
    else if (line.length + 1 + word.length <= room) line += ` ${word}`;
    else {
      lines.push(line);
      line = word;
    }
  }
  if (line !== "") lines.push(line);
  return lines;
}

/** `text` as lines of at most `width` characters, `indent` included; paragraphs (split by a blank line) stay apart. */
export function wrap(text: string, width: number, indent = 0): string[] {
  const pad = " ".repeat(indent);
  return text
    .split(/\n\s*\n/)
    .flatMap((paragraph, index) => [
      ...(index > 0 ? [""] : []),
      ...wrapParagraph(paragraph, Math.max(1, width - indent)).map((line) => pad + line.replaceAll(NBSP, " ")),
    ]);
}

/** The name an argument shows as: FILE, DRIVE. */
function argumentName(name: string, arg: HelpArg): string {
  return arg.valueHint ?? name.toUpperCase();
}

const isRequired = (arg: HelpArg) => arg.required !== false && arg.default === undefined;

/** A flag as it can be written: its aliases, then its name (`-c`, `--chunk`). */
export function flagSpellings(name: string, arg: HelpArg): string[] {
  const alias = "alias" in arg ? arg.alias : undefined;
  const aliases = alias === undefined ? [] : Array.isArray(alias) ? alias : [alias];
  return [...aliases, name].map((spelling) => (spelling.length === 1 ? `-${spelling}` : `--${spelling}`));
}

/** `-c, --chunk SIZE`, `--format raw|gzip|zstd`, `-z, --gzipped`. */
export function flagSpec(name: string, arg: HelpArg): string {
  const spellings = flagSpellings(name, arg);
  const value =
    arg.type === "enum" ? (arg.options ?? []).join("|") : arg.type === "string" ? (arg.valueHint ?? "VALUE") : "";
  return `${spellings.join(", ")}${value ? ` ${value}` : ""}`;
}

/** A flag's description with its default where it has one. */
function describe(arg: HelpArg): string {
  const text = arg.description ?? "";
  if (arg.default === undefined || arg.default === false) return text;
  const shown = arg.default === true ? "on" : String(arg.default);
  return `${text}${text ? " " : ""}[default:${NBSP}${shown}]`;
}

const flagEntry = ([name, arg]: [string, HelpArg]): [string, string] => [flagSpec(name, arg), describe(arg)];

/** A heading, then each entry's first line at 2 and its description wrapped under it at 6. */
function section(title: string, entries: Array<[string, string]>, width: number): string[] {
  const lines = [`${title}:`];
  for (const [spec, text] of entries) {
    lines.push(...wrap(spec, width, FLAG_INDENT));
    if (text) lines.push(...wrap(text, width, TEXT_INDENT));
  }
  return lines;
}

function examplesSection(program: string, examples: readonly Example[], width: number): string[] {
  const lines = ["Examples:"];
  const pad = " ".repeat(FLAG_INDENT);
  for (const example of examples) {
    lines.push(...wrap(example.about, width - 2, FLAG_INDENT).map((line) => `${pad}# ${line.slice(FLAG_INDENT)}`));
    const command = [example.pipe ? `${example.pipe} |` : "", program, example.args].filter(Boolean).join(" ");
    lines.push(...commandLines(command, width));
  }
  return lines;
}

/** A command line that does not fit goes on over more lines, each but the last ending in a backslash. */
function commandLines(command: string, width: number): string[] {
  // room for the indent, the continuation's further indent and the " \\" at the end
  const lines = wrap(command, width - FLAG_INDENT - 4, 0);
  const pad = " ".repeat(FLAG_INDENT);
  return lines.map((line, i) => `${pad}${i > 0 ? "  " : ""}${line}${i < lines.length - 1 ? " \\" : ""}`);
}

/** The whole --help of an operation, run as `program` (`upload.ts`, `drivekit upload`). */
export function renderHelp(
  meta: HelpMeta,
  args: Readonly<Record<string, HelpArg>>,
  options: { program: string; width: number },
): string {
  const { program, width } = options;
  const entries = Object.entries(args);
  const positionals = entries.filter(([, arg]) => arg.type === "positional");
  const flags = entries.filter(([, arg]) => arg.type !== "positional");
  const usage = [
    program,
    ...(flags.length > 0 ? ["[OPTIONS]"] : []),
    ...positionals.map(([name, arg]) => (isRequired(arg) ? argumentName(name, arg) : `[${argumentName(name, arg)}]`)),
  ].join(" ");
  const lines = [...wrap(`Usage: ${usage}`, width)];
  if (meta.description) lines.push("", ...wrap(meta.description, width));
  if (positionals.length > 0) {
    lines.push(
      "",
      ...section(
        "Arguments",
        positionals.map(([name, arg]) => [argumentName(name, arg), describe(arg)]),
        width,
      ),
    );
  }
  // the flags of no group first (what the operation is about), closed by --help; alone, --help goes last
  const ungrouped = flags.filter(([, arg]) => arg.group === undefined);
  const optionsSection = section("Options", [...ungrouped.map(flagEntry), ["-h, --help", "Show this help"]], width);
  if (ungrouped.length > 0) lines.push("", ...optionsSection);
  for (const [group, title] of Object.entries(GROUPS)) {
    const members = flags.filter(([, arg]) => arg.group === group);
    if (members.length > 0) lines.push("", ...section(title, members.map(flagEntry), width));
  }
  if (ungrouped.length === 0) lines.push("", ...optionsSection);
  if (meta.examples && meta.examples.length > 0) lines.push("", ...examplesSection(program, meta.examples, width));
  return `${lines.map((line) => line.trimEnd()).join("\n")}\n`;
}

export interface OperationSummary {
  name: string;
  summary: string;
}

/** `drivekit --help`: the operations, each with its summary, in two columns. */
export function renderCommandHelp(
  intro: { program: string; description: string; examples: readonly Example[] },
  operations: readonly OperationSummary[],
  commands: readonly OperationSummary[],
  width: number,
): string {
  const { program } = intro;
  const lines = [
    ...wrap(`Usage: ${program} OPERATION [ARGUMENTS] [OPTIONS]`, width),
    "",
    ...wrap(intro.description, width),
  ];
  const column = Math.max(...[...operations, ...commands].map((entry) => entry.name.length)) + FLAG_INDENT + 2;
  const table = (title: string, entries: readonly OperationSummary[]) => {
    lines.push("", `${title}:`);
    for (const { name, summary } of entries) {
      const text = wrap(summary, width, column);
      const first = text[0]?.slice(column) ?? "";
      lines.push(`${" ".repeat(FLAG_INDENT)}${name.padEnd(column - FLAG_INDENT)}${first}`, ...text.slice(1));
    }
  };
  table("Operations", operations);
  table("Other commands", commands);
  lines.push(
    "",
    ...section(
      "Options",
      [
        ["-h, --help", "Show this help"],
        ["-V, --version", `Print ${program}'s version`],
      ],
      width,
    ),
  );
  lines.push("", ...examplesSection(program, intro.examples, width));
  return `${lines.map((line) => line.trimEnd()).join("\n")}\n`;
}
