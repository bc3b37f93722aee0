// What a download answer's headers say of its body (the range a 206 holds, the length it announces),
// and the failures when the body is not what was asked: the same words whichever way it was read
// (one stream through fetch, ranged GETs over the run's sockets).
import { ApiError, OperationError } from "../errors.ts";

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

/** An answer that announced something that is not drive `drive` of `size` bytes: final, nothing of it is used. */
export function refusedAnswer(drive: string, size: number, said: string): OperationError {
  return new OperationError(`the server ${said} for drive ${drive}, which holds ${size} bytes: refusing it`);
}

/** A body that ended before the bytes asked (cleanly, or cut by the network): a failure that may pass. */
export function cutAnswer(at: number, size: number, path: string, cause?: unknown): ApiError {
  return new ApiError({
    kind: "network",
    message: `the answer ended at byte ${at} of ${size}`,
    method: "GET",
    path,
    cause,
  });
}
