// Which format a download writes, from its name or --format, and the suffix each compressed one adds.
import { humanBytes } from "../size.ts";
import type { OutputFormat } from "../transfer.ts";

export type CompressedFormat = Exclude<OutputFormat, "raw">;

export const SUFFIXES: Record<CompressedFormat, string> = { gzip: ".gz", zstd: ".zst" };

/** The format a name asks for by its suffix (.gz, .zst, any case); raw otherwise. */
export function formatOfName(name: string): OutputFormat {
  const lower = name.toLowerCase();
  for (const [format, suffix] of Object.entries(SUFFIXES))
    if (lower.endsWith(suffix)) return format as CompressedFormat;
  return "raw";
}

/** A default name (drive UUID, the server's name) with the suffix of an asked-for format, unless it has it already. */
export function withSuffix(name: string, format: OutputFormat | undefined): string {
  if (format === undefined || format === "raw" || formatOfName(name) === format) return name;
  return `${name}${SUFFIXES[format]}`;
}

/**
 * "10 MiB zstd (26.1 % of the drive; 12 of 64 pieces at the fast level)": what a compressed
 * download wrote, and how often the link outran the compressors.
 */
export function compressedSummary(
  format: CompressedFormat,
  length: number,
  size: number,
  levels?: { pieces: number; fast: number },
): string {
  const notes = [
    size > 0 ? `${((100 * length) / size).toFixed(1)} % of the drive` : "",
    levels?.fast ? `${levels.fast} of ${levels.pieces} pieces at the fast level` : "",
  ];
  const said = notes.filter(Boolean).join("; ");
  return `${humanBytes(length)} ${format}${said ? ` (${said})` : ""}`;
}
