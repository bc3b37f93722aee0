// API 2.0 ranged GETs over the run's own sockets (lib/socket-get.ts), each range's body going
// straight into its chunk's buffer: a GET in flight holds its chunk once, where through fetch it
// held it about twice (the runtime's copy of the body), so a far download's window holds twice the
// GETs in the same memory (bench/RESULTS-speed.md, "Figures the code relies on"). A GET may be asked
// before its buffer exists (early-gets.ts): socket-get.ts holds what comes meanwhile, and pauses.
//
// The same request as through fetch otherwise: to a download link asked for ahead (download-links.ts)
// or, with none ready, where the download path redirects (asked through fetch, one small answer);
// Basic auth to the API's origin only; redirects checked as http.ts checks them; the run's proxy
// settings; --timeout as the time without progress. A 2xx in a form it does not read itself (a
// chunked or compressed body) is handed back for the caller to read another way.
import { ApiError } from "../errors.ts";
import { answerError, checkRedirectTarget, type HttpClient } from "../http.ts";
import { proxyError } from "../proxy.ts";
import { socketGet, type LaterBuffer, type SocketGetAnswer } from "../socket-get.ts";
import type { OwnSockets } from "../socket-pool.ts";
import { NO_TOTAL_LIMIT, type Watchdog } from "../watchdog.ts";
import { cutAnswer, parseContentRange, refusedAnswer } from "./content-range.ts";

export type RangeAnswer =
  /** The range, whole, is in the buffer. */
  | { kind: "read" }
  /** The server answered with something else (the whole drive, another range): none of it is to be used. */
  | { kind: "ignored"; status: number }
  /** A 2xx in a form only fetch reads (chunked, compressed): not read. */
  | { kind: "elsewhere"; why: string };

export interface RangeGet {
  position: number;
  length: number;
  /** The buffer (at least `length` bytes), or one that comes later. */
  into: Uint8Array | LaterBuffer;
  /** Includes the watchdog's signal. */
  signal: AbortSignal;
  /** Bounds the time without progress; its stall becomes a timeout. */
  watchdog: Watchdog;
  /** A download link asked for ahead, tried first. */
  link?: URL;
  /** The answer's head came (the time to it measures the link's round trip). */
  onHead?(): void;
  /** Bytes of the body in the buffer so far. */
  onProgress?(got: number): void;
}

/** One drive's ranged GETs over the run's sockets. */
export class SocketRanges {
  /** The download path answered itself (no redirect): it is asked directly from then on. */
  private answersItself = false;
  /** The path failures name: the API's (a link's own path is a one-time token, nothing to show). */
  private readonly shown: string;

  constructor(
    private readonly client: HttpClient,
    private readonly own: OwnSockets,
    private readonly path: string,
    private readonly drive: string,
    private readonly size: number,
  ) {
    this.shown = client.url(path).pathname;
  }

  /** The GETs go through a proxy (the download path's route: its links' is not known ahead). */
  get proxied(): boolean {
    return this.own.sockets.proxies.for(this.client.url(this.path)) !== undefined;
  }

  /** GET `length` bytes from `position`: to the link if given (a fresh redirect should it fail), else a fresh one. */
  async get(request: RangeGet): Promise<RangeAnswer> {
    if (request.link) {
      try {
        return await this.follow(request.link, request);
      } catch (error) {
        // a link that expired or went: the redirect is asked afresh, unless the body had begun
        if (request.signal.aborted || !(error instanceof LinkFailed)) throw unwrap(error);
      }
    }
    return unwrapping(this.follow(await this.target(request), request));
  }

  /**
   * Where the download path leads now (or the path itself, if it answers itself). Asked as the GET
   * itself (its Range): what a server answers is the same as for the GET; one that answers itself
   * has that answer dropped once (no more is asked that way).
   */
  private async target(request: RangeGet): Promise<URL> {
    const own = this.client.url(this.path);
    if (this.answersItself) return own;
    const target = await this.client.redirectOf(this.path, {
      headers: rangeHeaders(request),
      signal: request.signal,
      timeoutMs: NO_TOTAL_LIMIT,
    });
    if (target) return target;
    this.answersItself = true;
    return own;
  }

  /** The GET to `url`, following its redirects; a failure before any body byte is a LinkFailed. */
  private async follow(start: URL, request: RangeGet): Promise<RangeAnswer> {
    let url = start;
    // bounded: checkRedirectTarget refuses past http.ts's number of hops
    for (let hop = 1; ; hop++) {
      const answer = await this.exchange(url, request);
      const location = answer.headers.get("location");
      if (answer.kind === "elsewhere" && answer.status >= 300 && answer.status < 400 && location) {
        url = checkRedirectTarget(new URL(location, url), hop, {
          status: answer.status,
          method: "GET",
          path: this.shown,
        });
        continue;
      }
      if (answer.kind === "elsewhere") return { kind: "elsewhere", why: answer.why };
      if (answer.kind === "answer")
        throw new LinkFailed(answerError(answer.status, answer.headers, answer.body, "GET", this.shown));
      return this.checked(answer, request);
    }
  }

  /** One GET over a socket of the run's (credentials to the API's origin only). */
  private async exchange(url: URL, request: RangeGet): Promise<SocketGetAnswer> {
    const { client, own } = this;
    const { position, watchdog } = request;
    const headers = { ...client.authorizationFor(url), ...rangeHeaders(request) };
    const proxy = own.sockets.proxies.for(url);
    client.trace(`> GET ${url.href} (own connection${proxy ? `, through the proxy ${proxy.shown}` : ""})`, headers);
    let got = 0;
    let inBody = false;
    try {
      const answer = await socketGet({
        url,
        headers,
        into: request.into,
        signal: request.signal,
        pool: own.sockets,
        onBody: () => {
          inBody = true;
          request.onHead?.();
        },
        onProgress: (sofar) => {
          got = sofar;
          request.onProgress?.(sofar);
        },
      });
      client.trace(`< ${answer.status} ${answer.statusText}`, Object.fromEntries(answer.headers));
      if (proxy && answer.status === 407 && url.protocol === "http:")
        throw proxyError(proxy, { status: 407, reason: answer.statusText }, { method: "GET", path: this.shown });
      return answer;
    } catch (error) {
      if (error instanceof ApiError) throw error;
      const { signal } = request;
      if (signal.aborted && !watchdog.stalled) throw error;
      const failure = watchdog.unanswered(error, "GET", url, this.shown);
      // a body under way when the connection failed: where it stopped is told
      if (inBody && failure instanceof ApiError && failure.kind === "network")
        throw cutAnswer(position + got, this.size, this.shown, error);
      throw inBody ? failure : new LinkFailed(failure);
    }
  }

  /** A 2xx body: this range of this drive, whole, or not the range asked (ignored). */
  private checked(answer: SocketGetAnswer & { kind: "body" }, request: RangeGet): RangeAnswer {
    const { position, length } = request;
    const last = position + length - 1;
    const range = answer.status === 206 ? parseContentRange(answer.headers.get("content-range")) : undefined;
    if (!range || range.start !== position || range.end !== last) return { kind: "ignored", status: answer.status };
    if (range.total !== this.size) throw refusedAnswer(this.drive, this.size, `announced ${range.total} bytes`);
    if (answer.length !== length)
      throw refusedAnswer(this.drive, this.size, `answered bytes ${position}-${last} with ${answer.length} bytes`);
    return { kind: "read" };
  }
}

/** The range asked for, its bytes as they are stored (the length must match, and the offsets). */
function rangeHeaders({ position, length }: RangeGet): Record<string, string> {
  return { range: `bytes=${position}-${position + length - 1}`, "accept-encoding": "identity" };
}

/** A GET that failed before any of its body came: another target may serve it. */
class LinkFailed extends Error {
  constructor(readonly failure: unknown) {
    super("link failed");
  }
}

function unwrap(error: unknown): unknown {
  return error instanceof LinkFailed ? error.failure : error;
}

async function unwrapping<T>(promise: Promise<T>): Promise<T> {
  try {
    return await promise;
  } catch (error) {
    throw unwrap(error);
  }
}
