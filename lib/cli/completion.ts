// Shell completion scripts for the drivekit command, generated from the operations' flags: the
// operations, then each one's flags (long, short, --no-X where on by default), the choices of an
// enum flag, files where a value or an argument is a file.
import { flagSpellings, type HelpArg } from "./help.ts";

export interface CompletedOperation {
  name: string;
  summary: string;
  args: Readonly<Record<string, HelpArg>>;
}

export const SHELLS = ["bash", "zsh"] as const;
export type Shell = (typeof SHELLS)[number];

interface Flag {
  /** Every spelling: --chunk, -c. */
  spellings: string[];
  description: string;
  /** enum: its choices; a file or path: "files"; another value: "value"; none: undefined. */
  value?: readonly string[] | "files" | "value";
  /** What the value is: SIZE, DRIVE. */
  hint?: string;
}

const isFileHint = (hint: string | undefined) => hint === "FILE" || hint === "PATH";

function flagsOf(args: Readonly<Record<string, HelpArg>>): Flag[] {
  const flags: Flag[] = [];
  for (const [name, arg] of Object.entries(args)) {
    if (arg.type === "positional") continue;
    const spellings = flagSpellings(name, arg);
    const value =
      arg.type === "enum"
        ? (arg.options ?? [])
        : arg.type === "string"
          ? isFileHint(arg.valueHint)
            ? "files"
            : "value"
          : undefined;
    const hint = "valueHint" in arg && arg.valueHint ? arg.valueHint : name;
    flags.push({ spellings, description: arg.description ?? "", value, hint });
    if (arg.type === "boolean" && arg.default === true)
      flags.push({ spellings: [`--no-${name}`], description: `Not ${name}` });
  }
  return flags;
}

/** The positional arguments, each with whether it is a file. */
function positionalsOf(
  args: Readonly<Record<string, HelpArg>>,
): Array<{ name: string; file: boolean; optional: boolean }> {
  return Object.entries(args)
    .filter(([, arg]) => arg.type === "positional")
    .map(([name, arg]) => ({
      name: arg.valueHint ?? name.toUpperCase(),
      file: name === "file" || isFileHint(arg.valueHint),
      optional: arg.required === false,
    }));
}

/** A name a shell function can carry. */
const functionName = (program: string) => `_${program.replace(/[^A-Za-z0-9_]/g, "_")}`;

export function bashCompletion(program: string, operations: readonly CompletedOperation[], commands: string[]): string {
  const fn = functionName(program);
  const words = [...operations.map((op) => op.name), ...commands, "--help", "--version"].join(" ");
  const cases = operations.map((op) => {
    const flags = flagsOf(op.args);
    const valueCases = flags
      .filter((flag) => Array.isArray(flag.value))
      .map((flag) => `        ${flag.spellings.join("|")}) words="${(flag.value as string[]).join(" ")}" ;;`);
    // a flag that takes a value: nothing but files (bash's default) after it
    const takesValue = flags.filter((flag) => flag.value === "value" || flag.value === "files");
    return [
      `    ${op.name})`,
      `      case "$prev" in`,
      ...valueCases,
      ...(takesValue.length > 0
        ? [`        ${takesValue.flatMap((flag) => flag.spellings).join("|")}) return ;;`]
        : []),
      `        *) [[ "$cur" == -* ]] && words="${flags.flatMap((flag) => flag.spellings).join(" ")} --help" ;;`,
      "      esac",
      "      ;;",
    ].join("\n");
  });
  return `# bash completion for ${program}: eval "$(${program} completion bash)" in ~/.bashrc, or write it to
# ~/.local/share/bash-completion/completions/${program}
${fn}() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" prev="\${COMP_WORDS[COMP_CWORD-1]}" words=""
  COMPREPLY=()
  if [[ $COMP_CWORD -eq 1 ]]; then
    words="${words}"
  else
    case "\${COMP_WORDS[1]}" in
${cases.join("\n")}
    completion) [[ $COMP_CWORD -eq 2 ]] && words="bash zsh" ;;
    help) [[ $COMP_CWORD -eq 2 ]] && words="${operations.map((op) => op.name).join(" ")}" ;;
    esac
  fi
  [[ -n "$words" ]] && COMPREPLY=($(compgen -W "$words" -- "$cur"))
  return 0
}
complete -o default -F ${fn} ${program}
`;
}

/** Text for a zsh single-quoted word: ' closed, escaped and reopened. */
const zshQuoted = (text: string) => `'${text.replace(/'/g, `'\\''`)}'`;

/** A description short enough for a completion menu: without its asides in brackets, its first clause, at most 70 characters. */
export function shortDescription(text: string): string {
  let plain = "";
  let depth = 0;
  for (const char of text) {
    if (char === "(") depth++;
    else if (char === ")" && depth > 0) depth--;
    else if (depth === 0) plain += char;
  }
  const first = (plain.split(/; |\. /)[0] ?? "")
    .replace(/\s+/g, " ")
    .replace(/\s+([:,])/g, "$1")
    .trim();
  return first.length <= 70 ? first : `${first.slice(0, 67).replace(/\s+\S*$/, "")}...`;
}

/** `(-c --chunk)--chunk=[Bytes per chunk]:SIZE: ` for _arguments. */
function zshFlagSpecs(flag: Flag): string[] {
  const description = shortDescription(flag.description).replace(/([[\]\\:])/g, "\\$1");
  const exclusive = flag.spellings.length > 1 ? `(${flag.spellings.join(" ")})` : "";
  const value =
    flag.value === undefined
      ? ""
      : flag.value === "files"
        ? `:${flag.hint}:_files`
        : flag.value === "value"
          ? `:${flag.hint}: `
          : `:${flag.hint}:(${flag.value.join(" ")})`;
  return flag.spellings.map((spelling) => {
    const equals = value && spelling.startsWith("--") ? "=" : "";
    return zshQuoted(`${exclusive}${spelling}${equals}[${description}]${value}`);
  });
}

export function zshCompletion(program: string, operations: readonly CompletedOperation[], commands: string[]): string {
  const fn = functionName(program);
  const described = [
    ...operations.map((op) => `${op.name}:${shortDescription(op.summary)}`),
    ...commands.map(
      (command) =>
        `${command}:${command === "completion" ? "Print a shell completion script" : "Show an operation's help"}`,
    ),
  ];
  const cases = operations.map((op) => {
    const specs = [
      ...flagsOf(op.args).flatMap(zshFlagSpecs),
      // both spellings, by zsh's brace expansion
      "'(- *)'{-h,--help}'[Show this help]'",
      ...positionalsOf(op.args).map((positional, index) =>
        zshQuoted(
          `${index + 1}:${positional.optional ? ":" : ""}${positional.name}:${positional.file ? "_files" : " "}`,
        ),
      ),
    ];
    return `    ${op.name})\n      _arguments -s \\\n        ${specs.join(" \\\n        ")}\n      ;;`;
  });
  return `#compdef ${program}
# zsh completion for ${program}: write it as ${fn} into a folder of your $fpath, or
# source <(${program} completion zsh) in ~/.zshrc (after compinit)
${fn}() {
  local -a operations
  operations=(
    ${described.map(zshQuoted).join("\n    ")}
  )
  if (( CURRENT == 2 )); then
    _describe -t operations '${program} operation' operations
    return
  fi
  local operation=\${words[2]}
  shift words
  (( CURRENT-- ))
  case $operation in
${cases.join("\n")}
    completion) _arguments '1:shell:(bash zsh)' ;;
    help) _arguments '1:operation:(${operations.map((op) => op.name).join(" ")})' ;;
  esac
}
if [[ "\${funcstack[1]}" == "${fn}" ]]; then
  ${fn} "$@"
else
  compdef ${fn} ${program}
fi
`;
}

export function completionScript(
  shell: Shell,
  program: string,
  operations: readonly CompletedOperation[],
  commands: string[],
): string {
  return shell === "bash"
    ? bashCompletion(program, operations, commands)
    : zshCompletion(program, operations, commands);
}
