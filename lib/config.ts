// Endpoint and credentials: environment first (the vendor tools' EHURI/EHAUTH, CSURI/CSAUTH), --uri
// and --auth-file override.
// The secret never comes from argv and is never printed.
import { UsageError } from "./errors.ts";

export type Api = 1 | 2;

/** --timeout's default: how long to wait for an answer (in a long transfer: for any progress). */
export const DEFAULT_TIMEOUT_SECONDS = 120;
export type Env = Record<string, string | undefined>;

export interface Credentials {
  user: string;
  secret: string;
}

export interface Config extends Credentials {
  api: Api;
  /** The API base, always ending in `/`: `https://api-lon-p.elastichosts.com/`, `https://zrh.cloudsigma.com/api/2.0/`. */
  base: URL;
  /** API 2.0 only: where uploads and downloads go (`https://direct.zrh.cloudsigma.com/api/2.0/`). */
  direct?: URL;
}

export interface ConfigInput {
  env: Env;
  api?: string;
  uri?: string;
  authFile?: string;
  /** API 2.0: a CloudSigma location such as `zrh`, short for `https://zrh.cloudsigma.com/api/2.0/`. */
  location?: string;
  /** How messages name the flags that gave uri, authFile and location: `--` (default), `--to-` (a copy's destination). */
  flagPrefix?: "--" | "--to-";
}

export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, "").toLowerCase();
  return host === "localhost" || host === "::1" || /^127(\.\d{1,3}){3}$/.test(host);
}

/** Credentials travel in Basic auth: plain http is only acceptable on this machine. */
export function checkTransport(url: URL, what: string): void {
  if (url.protocol === "https:") return;
  if (url.protocol === "http:") {
    if (isLoopbackHost(url.hostname)) return;
    throw new UsageError(`${what} ${url.origin} uses plain http: credentials would travel in clear (use https)`);
  }
  throw new UsageError(`${what} '${url.href}' must be an https:// URL`);
}

function parseBase(text: string, what: string): URL {
  let url: URL;
  try {
    url = new URL(text.trim());
  } catch {
    throw new UsageError(`${what} '${text}' is not a URL`);
  }
  if (url.username || url.password)
    throw new UsageError(`${what} must not hold credentials (use the auth variable or --auth-file)`);
  if (url.search || url.hash) throw new UsageError(`${what} must not have a query or fragment`);
  checkTransport(url, what);
  if (!url.pathname.endsWith("/")) url.pathname += "/";
  return url;
}

export function parseCredentials(text: string, source: string): Credentials {
  const line = text.replace(/\r?\n$/, "");
  const colon = line.indexOf(":");
  if (colon <= 0 || colon === line.length - 1 || /[\r\n]/.test(line)) {
    throw new UsageError(`${source} must hold one line 'user:secret'`);
  }
  return { user: line.slice(0, colon), secret: line.slice(colon + 1) };
}

export async function readAuthFile(path: string): Promise<Credentials> {
  const file = Bun.file(path);
  if (!(await file.exists())) throw new UsageError(`auth file ${path} does not exist`);
  return parseCredentials(await file.text(), `auth file ${path}`);
}

export function pickApi(input: Pick<ConfigInput, "api" | "env" | "location">): Api {
  if (input.api === undefined || input.api === "") return input.env.CSURI || input.location ? 2 : 1;
  if (input.api === "1" || input.api === "2") return Number(input.api) as Api;
  throw new UsageError(`invalid --api '${input.api}': expected 1 or 2`);
}

/** `direct.` + the host for CloudSigma names, else the API origin itself (the CloudSigma convention; loopback, IP literals and other hosts serve both). */
export function deriveDirect(base: URL): URL {
  const direct = new URL(base.href);
  const host = direct.hostname.toLowerCase();
  if (host.endsWith(".cloudsigma.com") && !host.startsWith("direct.")) direct.hostname = `direct.${host}`;
  return direct;
}

export async function resolveConfig(input: ConfigInput): Promise<Config> {
  const api = pickApi(input);
  const flag = input.flagPrefix ?? "--";
  const [uriVar, authVar] = api === 1 ? ["EHURI", "EHAUTH"] : ["CSURI", "CSAUTH"];
  let uriText = input.uri || input.env[uriVar];
  if (api === 2 && !input.uri && input.location) {
    if (!/^[a-z0-9-]{2,32}$/i.test(input.location)) throw new UsageError(`invalid ${flag}location '${input.location}'`);
    uriText = `https://${input.location.toLowerCase()}.cloudsigma.com/api/2.0/`;
  }
  if (!uriText) throw new UsageError(`no endpoint: set ${uriVar} or pass ${flag}uri`);
  const base = parseBase(uriText, input.uri ? `${flag}uri` : uriVar);
  let credentials: Credentials;
  if (input.authFile) credentials = await readAuthFile(input.authFile);
  else if (input.env[authVar]) credentials = parseCredentials(input.env[authVar] as string, authVar);
  else throw new UsageError(`no credentials: set ${authVar} or pass ${flag}auth-file PATH`);
  const config: Config = { api, base, ...credentials };
  if (api === 2) {
    const directText = input.env.CSDIRECT;
    config.direct = directText && !input.location ? parseBase(directText, "CSDIRECT") : deriveDirect(base);
  }
  return config;
}

/** A positive number of seconds (fractions allowed), as milliseconds. */
export function parseSeconds(text: string | undefined, what: string, fallback = DEFAULT_TIMEOUT_SECONDS): number {
  if (text === undefined || text === "") return fallback * 1000;
  if (!/^\d+(\.\d+)?$/.test(text) || Number(text) <= 0)
    throw new UsageError(`invalid ${what} '${text}': expected a positive number of seconds`);
  return Math.round(Number(text) * 1000);
}
