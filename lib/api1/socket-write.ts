// One API 1.0 write (`POST drives/UUID/write/OFFSET`) through a socket of the run's pool rather than
// fetch. fetch copies a body it sends, so each write in flight held its chunk twice
// (bench/RESULTS.md, "Figures the code relies on": fetchedChunk); here the socket takes the chunk's
// own bytes, and the window keeps more writes in flight in the same memory (on a far link the bytes
// in flight per round trip are the speed). The same request otherwise: Basic auth to the API's origin
// only, the run's proxy settings, --timeout as the time without progress, errors as fetch's.
import { answerError, type HttpClient } from "../http.ts";
import { streamPost, type StreamPostAnswer } from "../socket-post.ts";
import type { OwnSockets } from "../socket-pool.ts";
import { Watchdog } from "../watchdog.ts";

/** Bytes of a write's body handed to the socket at a time (progress, for --timeout, is seen at this step). */
export const WRITE_PIECE = 1024 * 1024;

export async function writePieceOnSocket(
  client: HttpClient,
  writes: OwnSockets,
  drive: string,
  offset: number,
  body: Uint8Array,
  { gzipped, signal }: { gzipped?: boolean; signal?: AbortSignal },
): Promise<void> {
  const path = `drives/${drive}/write/${offset}`;
  const url = client.url(path);
  const headers: Record<string, string> = {
    "content-type": "application/octet-stream",
    ...(gzipped ? { "content-encoding": "gzip" } : {}),
    ...client.authorizationFor(url),
  };
  client.trace(`> POST ${url.href}`, { ...headers, "content-length": String(body.length) });
  const watchdog = new Watchdog(writes.timeoutMs);
  let answer: StreamPostAnswer;
  try {
    answer = await streamPost({
      url,
      headers,
      size: body.length,
      bytes: body,
      signal: signal ? AbortSignal.any([signal, watchdog.signal]) : watchdog.signal,
      pool: writes.sockets,
      // the body is in memory: a kept connection the server had closed is tried again on a new one
      replayable: true,
      pieceSize: WRITE_PIECE,
      onProgress: () => watchdog.touch(),
    });
  } catch (error) {
    if (signal?.aborted) throw error;
    throw watchdog.unanswered(error, "POST", url, url.pathname);
  } finally {
    watchdog.stop();
  }
  client.trace(`< ${answer.status} ${answer.statusText}`, Object.fromEntries(answer.headers));
  if (answer.status >= 200 && answer.status < 300) return;
  throw answerError(answer.status, answer.headers, answer.body, "POST", url.pathname);
}
