// One API 1.0 read (`GET drives/UUID/read/OFFSET/SIZE`) through a socket of the run's pool rather
// than fetch, its body going straight into the chunk's buffer (lib/socket-get.ts): a read in flight
// holds its chunk once, not twice, so the window keeps twice as many in the same memory (on a far
// link the bytes in flight per round trip are the speed). The same request otherwise: Basic auth to
// the API's origin only, the run's proxy settings, --timeout as the time without progress, the same
// errors as a read through fetch (drives.ts readFailure). An answer it does not read itself (a
// redirect, a compressed or chunked body) is asked for again through fetch (drives.ts readInto), and
// so is every later read of the run.
import { ApiError } from "../errors.ts";
import { answerError, type HttpClient } from "../http.ts";
import { proxyError } from "../proxy.ts";
import { socketGet, type SocketGetAnswer } from "../socket-get.ts";
import type { OwnSockets } from "../socket-pool.ts";
import { Watchdog } from "../watchdog.ts";
import { checkRead, readFailure } from "./drives.ts";

/** The run's API 1.0 reads over its own sockets, until an answer says fetch must take over. */
export class SocketReads {
  /** Why the reads went back to fetch (an answer of a form read only there), once one did. */
  fellBack?: string;

  constructor(
    private readonly client: HttpClient,
    private readonly own: OwnSockets,
  ) {}

  /**
   * Read `length` bytes at `position` into `buffer`; false when the answer was left to fetch (the
   * caller reads again through it: a GET is safe to send twice).
   */
  async readInto(
    drive: string,
    position: number,
    length: number,
    buffer: Uint8Array,
    signal?: AbortSignal,
  ): Promise<boolean> {
    if (this.fellBack) return false;
    checkRead(length, buffer);
    const { client, own } = this;
    const path = `drives/${drive}/read/${position}/${length}`;
    const shown = `/${path}`;
    const url = client.url(path);
    const headers = client.authorizationFor(url);
    const proxy = own.sockets.proxies.for(url);
    // reads go one way or the other (drive-source.ts): --verbose says which
    client.trace(`> GET ${url.href} (own connection${proxy ? `, through the proxy ${proxy.shown}` : ""})`, headers);
    const watchdog = new Watchdog(own.timeoutMs);
    let got = 0;
    let bodyStatus: number | undefined;
    let answer: SocketGetAnswer;
    try {
      answer = await socketGet({
        url,
        headers,
        into: buffer.subarray(0, length),
        signal: signal ? AbortSignal.any([signal, watchdog.signal]) : watchdog.signal,
        pool: own.sockets,
        onBody: (status) => {
          bodyStatus = status;
        },
        onProgress: (sofar) => {
          got = sofar;
          watchdog.touch();
        },
      });
    } catch (error) {
      if (signal?.aborted) throw error;
      const failure = watchdog.unanswered(error, "GET", url, shown);
      // a body under way when the connection failed: how much of it came is told, as through fetch
      if (bodyStatus !== undefined && failure instanceof ApiError && failure.kind === "network")
        throw readFailure.cut(got, length, bodyStatus, shown, error);
      throw failure;
    } finally {
      watchdog.stop();
    }
    client.trace(`< ${answer.status} ${answer.statusText}`, Object.fromEntries(answer.headers));
    if (answer.kind === "elsewhere") {
      this.fellBack = answer.why;
      client.trace(`(${answer.why}: this read and the next ones go through fetch)`, {});
      return false;
    }
    if (proxy && answer.status === 407 && url.protocol === "http:")
      throw proxyError(proxy, { status: 407, reason: answer.statusText }, { method: "GET", path: shown });
    if (answer.kind === "answer") throw answerError(answer.status, answer.headers, answer.body, "GET", shown);
    if (answer.length > length) throw readFailure.tooLong(length, answer.status, shown);
    if (answer.length !== length) throw readFailure.short(answer.length, length, answer.status, shown);
    return true;
  }
}
