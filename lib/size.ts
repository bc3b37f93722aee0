// Sizes and offsets as the drive API writes them: bytes, optionally with a binary k/M/G/T suffix.
import { UsageError } from "./errors.ts";

const SUFFIX_SHIFT: Record<string, bigint> = { "": 0n, k: 10n, K: 10n, M: 20n, G: 30n, T: 40n };
const MAX = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * Parse `123`, `4k`, `4M`, `1G`, `2T` (binary multiples, as the API and its recorded bodies use).
 * Refuses signs, fractions, unknown suffixes and values beyond 2^53 - 1 with a UsageError.
 */
export function parseSize(input: string, what = "size"): number {
  const text = String(input).trim();
  const match = /^(\d+)([a-zA-Z]?)$/.exec(text);
  if (!match) {
    const why = /^-/.test(text)
      ? "must not be negative"
      : /^\d*[.,]\d/.test(text)
        ? "must be a whole number of bytes"
        : "expected a whole number of bytes, optionally with k, M, G or T";
    throw new UsageError(`invalid ${what} '${input}': ${why}`);
  }
  const [, digits = "", suffix = ""] = match;
  const shift = SUFFIX_SHIFT[suffix];
  if (shift === undefined) {
    throw new UsageError(`invalid ${what} '${input}': unknown suffix '${suffix}' (use k, M, G or T)`);
  }
  const value = BigInt(digits) << shift;
  if (value > MAX) throw new UsageError(`invalid ${what} '${input}': larger than 2^53 - 1 bytes`);
  return Number(value);
}

/** The shortest exact form, for sending: 4194304 -> "4M", 1536 -> "1536" (no fractions). */
export function formatSize(bytes: number): string {
  if (!Number.isSafeInteger(bytes) || bytes < 0) throw new RangeError(`not a size: ${bytes}`);
  for (const [suffix, shift] of [
    ["T", 40],
    ["G", 30],
    ["M", 20],
    ["k", 10],
  ] as const) {
    const unit = 2 ** shift;
    if (bytes >= unit && bytes % unit === 0) return `${bytes / unit}${suffix}`;
  }
  return String(bytes);
}

/** Human-friendly approximation for logs and progress: 1.5 GiB, 320 MiB, 12 KiB. */
export function humanBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value < 10 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
}

/** "12.3 s, 87.0 MB/s" for `bytes` moved since `startedMs` (a performance.now() reading). */
export function formatRate(bytes: number, startedMs: number): string {
  const seconds = Math.max(0.001, (performance.now() - startedMs) / 1000);
  return `${seconds.toFixed(1)} s, ${(bytes / 1e6 / seconds).toFixed(1)} MB/s`;
}
