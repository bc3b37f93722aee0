// The one request path every script uses: Basic auth, timeouts, safe redirects, typed errors.
import type { ConsolaInstance } from "consola";
import { ApiError, messageOf, SERVER_KINDS, type ErrorKind, type ServerKind } from "./errors.ts";
import { checkTransport, DEFAULT_TIMEOUT_SECONDS, isLoopbackHost, type Credentials } from "./config.ts";
import { parseRecord, parseRecords, type KvRecord } from "./kv.ts";
import { fetchProxyOption, proxyError, proxyUrl, ProxyRoutes, type ProxyServer } from "./proxy.ts";
import { describeTlsFailure } from "./tls-failure.ts";

export interface HttpOptions {
  credentials: Credentials;
  log?: ConsolaInstance;
  /** Log each exchange (credentials masked). */
  verbose?: boolean;
  /** Per-request timeout; each request may pass its own. */
  timeoutMs?: number;
  /** The run's proxy settings, asked for every request (a redirect target too); default: none. */
  proxies?: ProxyRoutes;
}

export interface RequestOptions {
  body?: RequestInit["body"];
  headers?: Record<string, string>;
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Statuses that are not errors (default: any 2xx). */
  ok?: (status: number) => boolean;
  /** A redirect is not followed: its target (checked) is handed here and the 3xx answer returned, its body dropped. */
  stopAt?: (target: URL) => void;
}

const STATUS_KIND: Record<number, ServerKind> = {
  400: "usage",
  401: "auth",
  402: "billing",
  403: "auth",
  404: "missing",
  405: "method",
  409: "busy",
  429: "busy",
  500: "failed",
  502: "system",
  503: "system",
  504: "system",
  507: "full",
};
const MAX_REDIRECTS = 5;
/** The most connections preconnect opens at once (a window's worth). */
const MAX_PRECONNECT = 16;

/** A redirect target may be followed: within MAX_REDIRECTS hops, and https (plain http to loopback only). */
export function checkRedirectTarget(
  next: URL,
  hop: number,
  answer: { status?: number; method: string; path: string },
): URL {
  if (hop >= MAX_REDIRECTS)
    throw new ApiError({ kind: "protocol", message: `more than ${MAX_REDIRECTS} redirects`, ...answer });
  if (next.protocol !== "https:" && !(next.protocol === "http:" && isLoopbackHost(next.hostname)))
    throw new ApiError({ kind: "protocol", message: `refusing redirect to ${next.origin} (not https)`, ...answer });
  return next;
}
const MAX_ERROR_BODY = 64 * 1024;

function isServerKind(text: string): text is ServerKind {
  return (SERVER_KINDS as readonly string[]).includes(text);
}

/** One line, printable, bounded: a server's message ends up in a terminal. */
function oneLine(text: string): string {
  return text
    .replace(/\s*[\r\n]+\s*/g, " ")
    .replace(/[\x00-\x1f\x7f]/g, "")
    .slice(0, 500);
}

/** An API 2.0 error body: `[{"error_point": null, "error_type": "backend", "error_message": "..."}]` (or one such object). */
export function parseJsonErrors(body: string): { type?: string; message: string } | undefined {
  const text = body.trim();
  if (!text.startsWith("[") && !text.startsWith("{")) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return undefined;
  }
  const items = (Array.isArray(parsed) ? parsed : [parsed]).filter(
    (item): item is Record<string, unknown> =>
      typeof item === "object" && item !== null && ("error_message" in item || "error_type" in item),
  );
  if (items.length === 0) return undefined;
  const str = (value: unknown) => (typeof value === "string" || typeof value === "number" ? String(value) : "");
  const types = [...new Set(items.map((item) => str(item.error_type)).filter(Boolean))];
  const messages = items.map((item) => {
    const point = str(item.error_point);
    const message = str(item.error_message);
    return point ? `${point}: ${message}` : message;
  });
  return {
    type: types.length ? oneLine(types.join(",")).slice(0, 60) : undefined,
    message: oneLine(messages.filter(Boolean).join("; ")),
  };
}

/** API 2.0 statuses: 401 bad credentials, 403 permission, 404 missing, 409 conflict (never retried blindly), 429 busy (retried). */
const JSON_STATUS_KIND: Record<number, ErrorKind> = {
  400: "usage",
  401: "auth",
  402: "billing",
  403: "permission",
  404: "missing",
  405: "method",
  409: "conflict",
  429: "busy",
};

/**
 * Turn a failed answer into its kind and message: an API 2.0 JSON error list first, else the
 * `X-Elastic-Error` header, then an `errors:KIND` body, then the status.
 */
export function classifyError(
  status: number,
  header: string | null,
  body: string,
): { kind: ErrorKind; message: string; errorType?: string } {
  const json = parseJsonErrors(body);
  if (json) {
    const kind = JSON_STATUS_KIND[status] ?? (status >= 500 ? "system" : status >= 400 ? "usage" : "unexpected");
    return { kind, message: json.message, errorType: json.type };
  }
  let message = body.trim();
  let bodyKind: string | undefined;
  const prefixed = /^errors?(?::([a-z]+))?\s+([\s\S]*)$/i.exec(message);
  if (prefixed) {
    bodyKind = prefixed[1]?.toLowerCase();
    message = (prefixed[2] ?? "").trim();
  }
  message = oneLine(message);
  const headerKind = header?.trim().toLowerCase();
  let kind: ErrorKind =
    headerKind && isServerKind(headerKind)
      ? headerKind
      : bodyKind && isServerKind(bodyKind)
        ? bodyKind
        : (STATUS_KIND[status] ?? (status >= 500 ? "system" : "unexpected"));
  // some servers answer 400 (or 500) with "could not be found" for a missing object (jclouds ElasticStackErrorHandler)
  if ((kind === "usage" || status === 400) && /could not be found/i.test(message)) kind = "missing";
  return { kind, message };
}

/** The answer's request id (API 2.0 `X-REQUEST-ID`), printable and short, or undefined. */
export function requestIdOf(headers: Headers): string | undefined {
  const id = headers
    .get("x-request-id")
    ?.replace(/[^\x21-\x7e]/g, "")
    .slice(0, 100);
  return id || undefined;
}

/**
 * The ApiError for a failed answer, whoever received it (fetch here, or a streamed socket POST):
 * its kind and message, the server's error type and the request id. `retryable` overrides the
 * kind's default.
 */
export function answerError(
  status: number,
  headers: Headers,
  body: string,
  method: string,
  path: string,
  retryable?: boolean,
): ApiError {
  const { kind, message, errorType } = classifyError(status, headers.get("x-elastic-error"), body);
  return new ApiError({ kind, message, status, method, path, retryable, requestId: requestIdOf(headers), errorType });
}

const NETWORK_CODES: Record<string, string> = {
  ECONNREFUSED: "connection refused",
  ECONNRESET: "connection reset",
  ENOTFOUND: "host not found",
  EAI_AGAIN: "host name lookup failed",
  ETIMEDOUT: "connection timed out",
  EHOSTUNREACH: "host unreachable",
  ENETUNREACH: "network unreachable",
  EPIPE: "connection closed while sending",
};

/** A network failure in a few words, with the host it concerned. */
export function describeNetworkError(error: unknown, url: URL): string {
  const code = (error as { code?: string })?.code;
  const known = code ? NETWORK_CODES[code] : undefined;
  if (known) return `${known} (${code}) by ${url.host}`;
  const message = messageOf(error);
  return `${message}${code && !message.includes(code) ? ` (${code})` : ""} (${url.host})`;
}

/**
 * The ApiError for a request that got no answer, whoever sent it (fetch here, or the upload
 * socket): a refused certificate is final (kind `tls`, worded by describeTlsFailure), any other
 * failure may pass (kind `network`).
 */
export function networkError(error: unknown, url: URL, method: string, path: string): ApiError {
  const tls = describeTlsFailure(error, url);
  return new ApiError({
    kind: tls ? "tls" : "network",
    message: tls ?? describeNetworkError(error, url),
    method,
    path,
    cause: error,
  });
}

/** Connection failures that, through a proxy, concern the proxy: fetch connects to nothing else. */
const CONNECT_FAILURES = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
]);

/** A fetch that failed through a proxy: the proxy's refusal (Bun's ERR_PROXY_TUNNEL) or absence named as such. */
function throughProxy(error: unknown, url: URL, proxy: ProxyServer, method: string, path: string): ApiError {
  const code = (error as { code?: string })?.code ?? "";
  const request = { method, path, cause: error };
  if (code === "ERR_PROXY_TUNNEL") {
    const refused = /(\d{3})\s*(.*)$/.exec(messageOf(error));
    return proxyError(proxy, { status: Number(refused?.[1] ?? 0), reason: refused?.[2] }, request);
  }
  if (CONNECT_FAILURES.has(code))
    return proxyError(proxy, { unreachable: describeNetworkError(error, new URL(proxyUrl(proxy))) }, request);
  // a certificate refused through the tunnel is worded (and final) as without a proxy
  const failed = networkError(error, url, method, path);
  return failed.with({ message: `${failed.serverMessage} (through the proxy ${proxy.shown})` });
}

export class HttpClient {
  private readonly authorization: string;
  private readonly proxies: ProxyRoutes;
  constructor(
    readonly base: URL,
    private readonly options: HttpOptions,
  ) {
    checkTransport(base, "endpoint");
    this.proxies = options.proxies ?? new ProxyRoutes();
    const { user, secret } = options.credentials;
    this.authorization = `Basic ${Buffer.from(`${user}:${secret}`).toString("base64")}`;
  }

  url(path: string): URL {
    return new URL(path.replace(/^\/+/, ""), this.base);
  }

  /** Send one request; any non-ok answer or network failure becomes an ApiError. */
  async request(method: string, path: string, options: RequestOptions = {}): Promise<Response> {
    const started = this.url(path);
    const shownPath = started.pathname + started.search;
    let url = started;
    const timeoutMs = options.timeoutMs ?? this.options.timeoutMs ?? DEFAULT_TIMEOUT_SECONDS * 1000;
    const signals = [AbortSignal.timeout(timeoutMs)];
    if (options.signal) signals.push(options.signal);
    const signal = AbortSignal.any(signals);
    for (let hop = 0; ; hop++) {
      // Credentials go only to the origin the user named; never to a redirect target elsewhere.
      const sameOrigin = url.origin === started.origin;
      const headers: Record<string, string> = { ...options.headers };
      if (sameOrigin) headers.authorization = this.authorization;
      const proxy = this.proxies.for(url);
      this.trace(`> ${method} ${url.href}${proxy ? ` (through the proxy ${proxy.shown})` : ""}`, headers);
      let response: Response;
      try {
        // fetch keeps its connections open by itself (Bun's pool: 20 requests 4 at a time took 4
        // connections, or 4 tunnels through a proxy); the proxy is ours to decide, never Bun's
        response = await fetch(url, {
          method,
          body: options.body,
          headers,
          redirect: "manual",
          signal,
          proxy: fetchProxyOption(proxy),
        });
      } catch (error) {
        const name = (error as Error)?.name;
        if (name === "TimeoutError" || (name === "AbortError" && !options.signal?.aborted)) {
          throw new ApiError({
            kind: "timeout",
            message: `no answer within ${Math.round(timeoutMs / 1000)} s`,
            method,
            path: shownPath,
          });
        }
        if (name === "AbortError") throw error;
        if (proxy) throw throughProxy(error, url, proxy, method, shownPath);
        throw networkError(error, url, method, shownPath);
      }
      this.trace(`< ${response.status} ${response.statusText}`, Object.fromEntries(response.headers));
      // through a proxy, a plain-http request's 407 is the proxy's answer, not the server's
      if (proxy && response.status === 407 && url.protocol === "http:") {
        await response.body?.cancel();
        throw proxyError(proxy, { status: 407, reason: response.statusText }, { method, path: shownPath });
      }
      const location = response.headers.get("location");
      if (response.status >= 300 && response.status < 400 && location && (method === "GET" || method === "HEAD")) {
        await response.body?.cancel();
        const next = checkRedirectTarget(new URL(location, url), hop, {
          status: response.status,
          method,
          path: shownPath,
        });
        if (options.stopAt) {
          options.stopAt(next);
          return response;
        }
        url = next;
        continue;
      }
      const ok = options.ok ? options.ok(response.status) : response.status >= 200 && response.status < 300;
      if (ok) return response;
      const body = (await response.text().catch(() => "")).slice(0, MAX_ERROR_BODY);
      throw answerError(response.status, response.headers, body, method, shownPath);
    }
  }

  /** Whether a request to `path` (of this client's origin) goes through a proxy. */
  proxied(path = ""): boolean {
    return this.proxies.for(this.url(path)) !== undefined;
  }

  /**
   * Open `count` connections to this client's origin ahead of the requests that will use them
   * (fetch keeps them in its pool): on a far link a new connection costs its handshakes before a
   * request's first byte, so the requests in flight are opened while the first API call is under
   * way. Nothing is sent. Not through a proxy (its tunnels are opened by the requests themselves).
   * Bun 1.4.5 opens one connection a call only until the process sends its first request (after
   * that, a call for an origin with a connection open adds none): so it is called before any.
   */
  preconnect(count: number): void {
    const origin = new URL(this.base.origin);
    if (this.proxies.for(origin)) return;
    for (let i = 0; i < Math.min(count, MAX_PRECONNECT); i++) fetch.preconnect(origin);
  }

  /**
   * Where a GET of `path` is redirected (checked as any redirect target); undefined when the server
   * answers it itself. `headers` go with it (a Range of one byte keeps such an answer small).
   */
  async redirectOf(path: string, options: RequestOptions = {}): Promise<URL | undefined> {
    let target: URL | undefined;
    const response = await this.request("GET", path, {
      ...options,
      ok: (status) => status < 400,
      stopAt: (to) => {
        target = to;
      },
    });
    await response.body?.cancel().catch(() => undefined);
    return target;
  }

  async text(method: string, path: string, options?: RequestOptions): Promise<string> {
    const response = await this.request(method, path, options);
    return response.text();
  }

  async record(method: string, path: string, options?: RequestOptions): Promise<KvRecord> {
    return parseRecord(await this.text(method, path, options));
  }

  async records(method: string, path: string, options?: RequestOptions): Promise<KvRecord[]> {
    return parseRecords(await this.text(method, path, options));
  }

  /** The Authorization header, for requests this client does not send itself (a streamed socket POST). */
  authorizationFor(url: URL): Record<string, string> {
    return url.origin === this.base.origin ? { authorization: this.authorization } : {};
  }

  /** With --verbose: log one side of an exchange, the Authorization value masked. */
  trace(line: string, headers: Record<string, string>): void {
    if (!this.options.verbose || !this.options.log) return;
    const shown = Object.entries(headers).map(
      ([key, value]) => `  ${key}: ${/authorization$/i.test(key) ? value.replace(/ .*/, " ****") : value}`,
    );
    this.options.log.info([line, ...shown].join("\n"));
  }
}
