// Which requests go through a proxy, decided here for every request of a run (fetch and the upload
// sockets alike) from the run's environment: `https_proxy` / `HTTPS_PROXY` for https targets,
// `http_proxy` / `HTTP_PROXY` for http ones, `no_proxy` / `NO_PROXY` for the hosts that bypass
// them (the lower-case name first where both are set, as curl and Bun read them).
//
// Bun's fetch reads these variables from the process by itself (and applies NO_PROXY even to a
// proxy passed explicitly); every fetch here gets our decision instead (`proxy: false`, or the proxy
// with `respectNoProxy: false`), so a run with its own environment (a test's) and the upload
// sockets, which fetch does not carry, go the same way.
import type { BlockList } from "node:net";
import { nodeNet } from "./builtins.ts";
import { isLoopbackHost, type Env } from "./config.ts";
import { ApiError, UsageError } from "./errors.ts";

export interface ProxyServer {
  /** Where to connect. */
  hostname: string;
  port: number;
  /** The proxy as messages show it: its origin, never its credentials. */
  shown: string;
  /** `Basic ...` from the URL's `user:password`, sent to the proxy alone (Proxy-Authorization). */
  authorization?: string;
  /** The variable it came from. */
  variable: string;
}

/** The names read for each kind of target, the one that wins first. */
const VARIABLES = {
  "https:": ["https_proxy", "HTTPS_PROXY"],
  "http:": ["http_proxy", "HTTP_PROXY"],
  no: ["no_proxy", "NO_PROXY"],
} as const;

function firstSet(env: Env, names: readonly string[]): { name: string; value: string } | undefined {
  for (const name of names) {
    const value = env[name]?.trim();
    if (value) return { name, value };
  }
  return undefined;
}

const defaultPort = (protocol: string) => (protocol === "https:" ? 443 : 80);

/** A proxy URL as curl takes it: `http://[user:password@]host[:port]`, the scheme optional. */
export function parseProxy(value: string, variable: string): ProxyServer {
  const expected = `${variable} must be a proxy URL like http://[user:password@]host:port`;
  let url: URL;
  try {
    url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? value : `http://${value}`);
  } catch {
    throw new UsageError(expected);
  }
  const shown = `${url.protocol}//${url.host}`;
  if (url.protocol !== "http:")
    throw new UsageError(
      `${variable} names a ${url.protocol.slice(0, -1)} proxy (${shown}): only http:// proxies are supported (https targets still go through a CONNECT tunnel, encrypted end to end)`,
    );
  if (!url.hostname || (url.pathname !== "/" && url.pathname !== "") || url.search || url.hash)
    throw new UsageError(expected);
  const proxy: ProxyServer = {
    hostname: url.hostname.replace(/^\[|\]$/g, ""),
    port: Number(url.port || defaultPort(url.protocol)),
    shown,
    variable,
  };
  if (url.username || url.password) {
    let pair: string;
    try {
      pair = `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`;
    } catch {
      throw new UsageError(`${variable}: the proxy's user or password is not valid percent-encoding`);
    }
    proxy.authorization = `Basic ${Buffer.from(pair).toString("base64")}`;
  }
  return proxy;
}

interface Bypass {
  /** A host name and the names under it; undefined for an address entry. */
  name?: string;
  /** An address or a CIDR range. */
  addresses?: BlockList;
  port?: number;
}

/**
 * NO_PROXY entries, separated by commas or spaces: `*` (every host), a host name (also every name
 * under it; a leading `.` or `*.` means the same), an IP address or CIDR range (`10.0.0.0/8`,
 * `::1`), any of them with `:port`. Names are compared as written, never resolved.
 */
export function parseNoProxy(value: string): { all: boolean; entries: Bypass[] } {
  const entries: Bypass[] = [];
  let all = false;
  for (const raw of value.toLowerCase().split(/[\s,]+/)) {
    if (!raw) continue;
    if (raw === "*") {
      all = true;
      continue;
    }
    let host = raw;
    let port: number | undefined;
    const withPort = /^\[([^\]]+)\](?::(\d+))?$/.exec(raw) ?? (/^([^:]+):(\d+)$/.exec(raw) as RegExpExecArray | null);
    if (withPort) {
      host = withPort[1] as string;
      port = withPort[2] ? Number(withPort[2]) : undefined;
    }
    const [address = "", prefix] = host.split("/");
    const family = nodeNet().isIP(address);
    if (family) {
      const addresses = new (nodeNet().BlockList)();
      const type = family === 4 ? "ipv4" : "ipv6";
      const bits = prefix === undefined ? undefined : Number(prefix);
      if (bits !== undefined && Number.isInteger(bits) && bits >= 0 && bits <= (family === 4 ? 32 : 128))
        addresses.addSubnet(address, bits, type);
      else if (prefix === undefined) addresses.addAddress(address, type);
      else continue; // a malformed range bypasses nothing
      entries.push({ addresses, port });
      continue;
    }
    const name = host.replace(/^\*?\./, "").replace(/\.$/, "");
    if (name) entries.push({ name, port });
  }
  return { all, entries };
}

/** The run's proxy settings and the one decision every request asks for. */
export class ProxyRoutes {
  private readonly proxies: Partial<Record<"https:" | "http:", ProxyServer>> = {};
  private readonly bypass: { all: boolean; entries: Bypass[] };
  /** What no message may show: the proxies' passwords (as written and decoded). */
  readonly secrets: string[] = [];

  /** Read the variables (a malformed one is a wrong call: UsageError, nothing sent). */
  constructor(env: Env = {}) {
    for (const protocol of ["https:", "http:"] as const) {
      const found = firstSet(env, VARIABLES[protocol]);
      if (!found) continue;
      this.proxies[protocol] = parseProxy(found.value, found.name);
      const password = /\/\/[^/@]*:([^/@]*)@/.exec(found.value)?.[1];
      if (password) {
        this.secrets.push(password);
        try {
          this.secrets.push(decodeURIComponent(password));
        } catch {
          // parseProxy refused it already
        }
      }
    }
    this.bypass = parseNoProxy(firstSet(env, VARIABLES.no)?.value ?? "");
  }

  /** Whether any proxy is set at all. */
  get any(): boolean {
    return Boolean(this.proxies["https:"] || this.proxies["http:"]);
  }

  /**
   * The proxy a request to `target` goes through, or undefined to connect directly. A plain-http
   * target (loopback only: the API is refused over http elsewhere) through a proxy on another host
   * would carry its credentials in clear to that host: refused, naming NO_PROXY as the way out.
   */
  for(target: URL): ProxyServer | undefined {
    const proxy = this.proxies[target.protocol as "https:" | "http:"];
    if (!proxy || this.bypasses(target)) return undefined;
    if (target.protocol === "http:" && !isLoopbackHost(proxy.hostname))
      throw new UsageError(
        `${target.origin} is plain http: through the proxy ${proxy.shown} (${proxy.variable}) its credentials would travel in clear; add ${target.hostname} to NO_PROXY`,
      );
    return proxy;
  }

  /** Whether NO_PROXY lets `target` bypass the proxies. */
  bypasses(target: URL): boolean {
    if (this.bypass.all) return true;
    const host = target.hostname
      .replace(/^\[|\]$/g, "")
      .replace(/\.$/, "")
      .toLowerCase();
    const port = Number(target.port || defaultPort(target.protocol));
    const family = nodeNet().isIP(host);
    return this.bypass.entries.some((entry) => {
      if (entry.port !== undefined && entry.port !== port) return false;
      if (entry.addresses) return family !== 0 && entry.addresses.check(host, family === 4 ? "ipv4" : "ipv6");
      const name = entry.name as string;
      return family === 0 && (host === name || host.endsWith(`.${name}`));
    });
  }
}

/** fetch's `proxy` option for a request whose proxy `for()` chose: always ours, never Bun's own reading of the environment. */
export function fetchProxyOption(proxy: ProxyServer | undefined): Bun.FetchProxyOption {
  if (!proxy) return false;
  return {
    url: proxyUrl(proxy),
    headers: proxy.authorization ? { "proxy-authorization": proxy.authorization } : undefined,
    respectNoProxy: false,
  };
}

/** The proxy's URL without credentials (they go in a header). */
export function proxyUrl(proxy: ProxyServer): string {
  const host = nodeNet().isIP(proxy.hostname) === 6 ? `[${proxy.hostname}]` : proxy.hostname;
  return `http://${host}:${proxy.port}`;
}

/**
 * A proxy that did not let a request through, as one line naming the proxy (never its
 * credentials) and what it answered: its refusals (4xx: 407 credentials, 403 policy) are final,
 * its failures to reach the server (5xx) and being unreachable itself may pass.
 */
export function proxyError(
  proxy: ProxyServer,
  what: { status?: number; reason?: string; unreachable?: string },
  request: { method: string; path: string; cause?: unknown },
): ApiError {
  const message = what.unreachable
    ? `cannot reach ${proxy.shown} (${proxy.variable}): ${what.unreachable}`
    : `${proxy.shown} (${proxy.variable}) answered ${what.status}${what.reason ? ` ${printable(what.reason)}` : ""}` +
      (what.status === 407 ? " (check the user and password in the proxy URL)" : "");
  const retryable = what.unreachable !== undefined || (what.status !== undefined && what.status >= 500);
  return new ApiError({ kind: "proxy", message, retryable, ...request });
}

/** A proxy's reason phrase, shown in one line: printable and short. */
function printable(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, "").slice(0, 100);
}
