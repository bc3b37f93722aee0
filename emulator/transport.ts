// How each origin of the emulator listens (the API origin, the download origin): Bun.serve on
// 127.0.0.1, over https when asked (emulator/tls.ts), behind a WAN front when the link is shaped
// (emulator/wan.ts), each answer a round trip late when one is set. With none of these, a plain
// Bun.serve: loopback speed unchanged.
import { makeCertificates, type Certificates, type StubTlsOptions } from "./tls.ts";
import { WanLink, type LinkOptions } from "./wan.ts";

export interface TransportOptions extends LinkOptions {
  /** Serve https with a certificate made at start, signed by a CA written beside the drives (its path: `caPath`). */
  tls?: boolean | StubTlsOptions;
}

/** What an origin answers with. */
export interface OriginHandlers {
  fetch(request: Request): Response | Promise<Response>;
  error(error: Error): Response;
  maxRequestBodySize?: number;
  idleTimeout?: number;
}

/** An origin listening: its port and base URL (`http(s)://127.0.0.1:PORT/`), and stop (every connection dropped). */
export interface Listener {
  readonly port: number;
  readonly url: string;
  stop(): void;
}

export class Transport {
  /** The WAN model every origin shares (its options can change while it runs), and what crossed it. */
  readonly link: WanLink;

  private constructor(
    options: TransportOptions,
    readonly certificates?: Certificates,
  ) {
    this.link = new WanLink(options);
  }

  /** Ready to listen: the certificates are made first (in `dir`) when serving https. */
  static start(dir: string, options: TransportOptions): Transport {
    const tls = options.tls === true ? {} : options.tls || undefined;
    return new Transport(options, tls ? makeCertificates(dir, tls) : undefined);
  }

  /** The CA a client must trust (NODE_EXTRA_CA_CERTS), when serving https. */
  get caPath(): string | undefined {
    return this.certificates?.caPath;
  }

  /** Listen on `port` (0: a free one); synchronous, so a restart never leaves the port closed to a client in this process. */
  listen(port: number, handlers: OriginHandlers): Listener {
    const shaped = this.link.shaped;
    const server = Bun.serve({
      hostname: "127.0.0.1",
      port: shaped ? 0 : port,
      tls: this.certificates ? { key: this.certificates.key, cert: this.certificates.cert } : undefined,
      maxRequestBodySize: handlers.maxRequestBodySize,
      idleTimeout: handlers.idleTimeout,
      fetch: (request) => this.answer(request, handlers),
      error: handlers.error,
    });
    const scheme = this.certificates ? "https" : "http";
    if (!shaped) {
      const bound = server.port as number;
      return { port: bound, url: `${scheme}://127.0.0.1:${bound}/`, stop: () => server.stop(true) };
    }
    const front = this.link.front(port, server.port as number);
    return {
      port: front.port,
      url: `${scheme}://127.0.0.1:${front.port}/`,
      stop: () => {
        front.stop();
        server.stop(true);
      },
    };
  }

  /** The origin's answer, one round trip after it has read the request (so the round trip adds to the body's time). */
  private answer(request: Request, handlers: OriginHandlers): Response | Promise<Response> {
    const rttMs = this.link.options.rttMs ?? 0;
    if (!(rttMs > 0)) return handlers.fetch(request);
    return Promise.resolve(handlers.fetch(request)).then(async (response) => {
      await Bun.sleep(rttMs);
      return response;
    });
  }
}
