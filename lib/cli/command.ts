// A drivekit operation: citty's command, with what --help and shell completion read beside it:
// the heading each flag goes under (`group`) and examples (`meta.examples`).
import { defineCommand as defineCittyCommand, type CommandDef } from "citty";
import type { Example, HelpArg } from "./help.ts";

/** Flags and arguments as citty takes them, each with the --help heading it goes under. */
export type OptionsDef = Record<string, HelpArg>;

export interface OperationMeta {
  name: string;
  /** Paragraphs split by a blank line; the first one is the summary `drivekit --help` lists. */
  description: string;
  examples: readonly Example[];
}

export type Operation<T extends OptionsDef = OptionsDef> = Omit<CommandDef<T>, "meta" | "args"> & {
  meta: OperationMeta;
  args: T;
};

/** Any operation, whatever its flags (a command's run() takes its own flags' types). */
// biome-ignore lint/suspicious/noExplicitAny: an operation of any flag set
export type AnyOperation = Operation<any>;

/** citty's defineCommand, typed so that every operation has its description, examples and flag headings. */
export function defineCommand<const T extends OptionsDef>(def: Operation<T>): Operation<T> {
  return defineCittyCommand(def as CommandDef<T>) as Operation<T>;
}

/** The summary of an operation: its description's first paragraph. */
export function summaryOf(meta: { description: string }): string {
  return (meta.description.split(/\n\s*\n/)[0] ?? "").replace(/\s+/g, " ").trim();
}
