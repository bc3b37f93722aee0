// What a download answer's headers say of its body: the range a 206 holds, the length it announces.
/** `bytes START-END/TOTAL` of a 206 answer. */
export function parseContentRange(header: string | null): { start: number; end: number; total: number } | undefined {
  const match = /^\s*bytes\s+(\d+)-(\d+)\/(\d+)\s*$/i.exec(header ?? "");
  if (!match) return undefined;
  const [start, end, total] = [Number(match[1]), Number(match[2]), Number(match[3])];
  if (!Number.isSafeInteger(total) || start > end || end >= total) return undefined;
  return { start, end, total };
}

export function contentLength(response: Response): number | undefined {
  const text = response.headers.get("content-length");
  if (text === null || !/^\d+$/.test(text.trim())) return undefined;
  const value = Number(text);
  return Number.isSafeInteger(value) ? value : undefined;
}
