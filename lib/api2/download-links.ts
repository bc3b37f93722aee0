// A drive's download links asked for ahead. `GET drives/UUID/download/` answers with a redirect to
// where the bytes are (the direct host's own link); following it costs a round trip before each
// ranged GET's first byte, and on a far link the GETs in flight finish together, so that round trip
// leaves the whole link idle once a chunk. So the links are asked for a window ahead, as the
// chunked upload asks for its one-time links, and each is used once (a link may be one-time): a GET
// goes straight to one that came back recently, else follows the redirect as before. A server that
// answers the download path itself (no redirect) gets no more asking.
import type { HttpClient } from "../http.ts";

/** A link older than this is not used: a server's links may expire (the GET follows the redirect afresh). */
export const LINK_FRESH_MS = 10_000;

interface Link {
  target?: URL;
  settled: boolean;
  at: number;
}

export class DownloadLinks {
  private readonly links: Link[] = [];
  /** False once the server answered the download path itself, or refused it: nothing more is asked ahead. */
  private redirects = true;
  /** Aborts the links still asked for when the run no longer wants them (they must not hold the process). */
  private readonly controller = new AbortController();
  /** Reads still to come after the ones in flight: no link is asked for beyond them. */
  private left = Number.POSITIVE_INFINITY;

  /** How many links to keep asked for: as many as reads in flight. */
  private ahead = 0;

  constructor(
    private readonly client: HttpClient,
    private readonly path: string,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /**
   * A link that came back and is still fresh, used once; undefined: none ready (follow the redirect).
   * Then keeps as many asked for as `inFlight` reads will want next, but not beyond the `left` still to come.
   */
  take(inFlight: number, left: number): URL | undefined {
    this.ahead = Math.max(1, inFlight);
    this.left = left;
    let found: URL | undefined;
    for (let i = 0; i < this.links.length; ) {
      const link = this.links[i] as Link;
      const stale = link.settled && (!link.target || this.now() - link.at > LINK_FRESH_MS);
      if (stale || (link.settled && found === undefined)) {
        this.links.splice(i, 1);
        if (!stale) found = link.target;
        continue;
      }
      i++;
    }
    this.topUp();
    return found;
  }

  /** Links asked for or ready (tests, --verbose). */
  get count(): number {
    return this.links.length;
  }

  /** Ask for no more links (the run ended, or the drive is read in one stream). */
  stop(): void {
    this.redirects = false;
    this.links.length = 0;
    this.controller.abort();
  }

  private topUp(): void {
    // bounded: each pass adds one link until `ahead` are asked for
    while (this.redirects && this.links.length < Math.min(this.ahead, this.left)) {
      const link: Link = { settled: false, at: this.now() };
      this.links.push(link);
      // one byte: a server that answers the path itself sends (at most) that much
      this.client
        .redirectOf(this.path, {
          headers: { range: "bytes=0-0", "accept-encoding": "identity" },
          signal: this.controller.signal,
        })
        .then(
          (target) => {
            link.target = target;
            if (!target) this.redirects = false;
          },
          // a failure here is not the run's: the GET that would have used this link follows the redirect itself
          () => undefined,
        )
        .finally(() => {
          link.settled = true;
          link.at = this.now();
        });
    }
  }
}
