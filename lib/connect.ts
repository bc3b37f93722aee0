// From parsed flags and the environment to a ready HTTP client, the run's proxy settings and the
// connections it keeps open (closed by close() when the run ends).
import { parseSeconds, resolveConfig, type Config } from "./config.ts";
import { HttpClient } from "./http.ts";
import { UsageError } from "./errors.ts";
import type { Context } from "./context.ts";
import { ProxyRoutes } from "./proxy.ts";
import { SocketPool } from "./socket-pool.ts";
import { DEFAULT_RETRY, type RetryPolicy } from "./retry.ts";

export interface ConnectArgs {
  uri?: string;
  "auth-file"?: string;
  timeout?: string;
  api?: string;
  location?: string;
}

export interface Connection {
  config: Config;
  client: HttpClient;
  /** API 2.0: the client for the direct (upload/download) host. */
  direct?: HttpClient;
  /** --timeout: how long to wait for an answer (or, in a long transfer, for any progress). */
  timeoutMs: number;
  /** How the transfers over this connection retry a request that may pass. */
  retry: Readonly<RetryPolicy>;
  /** HTTPS_PROXY, HTTP_PROXY, NO_PROXY (and their lower-case names) from the run's environment. */
  proxies: ProxyRoutes;
  /** The connections the upload POSTs keep open between them (fetch keeps its own). */
  sockets: SocketPool;
  /** Close what the run keeps open. */
  close(): void;
}

export async function connect(args: ConnectArgs, ctx: Context, forceApi?: 1 | 2): Promise<Connection> {
  const timeoutMs = parseSeconds(args.timeout, "--timeout");
  const config = await resolveConfig({
    env: ctx.env,
    api: forceApi ? String(forceApi) : args.api,
    uri: args.uri,
    authFile: args["auth-file"],
    location: args.location,
  });
  return connectWith(config, ctx, timeoutMs);
}

/** A copy's destination flags. */
export interface DestinationArgs {
  "to-api"?: string;
  "to-uri"?: string;
  "to-location"?: string;
  "to-auth-file"?: string;
}

/**
 * The other end of a copy, from `--to-*` and `from` (the source's connection). The same generation
 * (the default): the source's endpoint and credentials, each replaced by --to-uri (or
 * --to-location) and --to-auth-file. The other one (--to-api): its own variables (EHURI/EHAUTH or
 * CSURI/CSAUTH), each replaced the same way.
 */
export async function connectDestination(args: DestinationArgs, ctx: Context, from: Connection): Promise<Connection> {
  const given = args["to-api"];
  if (given !== undefined && given !== "1" && given !== "2")
    throw new UsageError(`invalid --to-api '${given}': expected 1 or 2`);
  const location = args["to-location"];
  if (location !== undefined && given === "1")
    throw new UsageError("--to-location names a CloudSigma (API 2.0) location: not with --to-api 1");
  const api = given === undefined ? (location !== undefined ? 2 : from.config.api) : (Number(given) as 1 | 2);
  let env = ctx.env;
  if (api === from.config.api) {
    const { base, direct, user, secret } = from.config;
    const moved = args["to-uri"] !== undefined || location !== undefined;
    env =
      api === 1
        ? { EHURI: base.href, EHAUTH: `${user}:${secret}` }
        : { CSURI: base.href, CSAUTH: `${user}:${secret}`, CSDIRECT: moved ? undefined : direct?.href };
  }
  const config = await resolveConfig({
    env,
    api: String(api),
    uri: args["to-uri"],
    authFile: args["to-auth-file"],
    location,
    flagPrefix: "--to-",
  });
  return connectWith(config, ctx, from.timeoutMs);
}

/** A connection to `config`'s endpoint: its client, the direct host's, the run's proxies and kept sockets. */
function connectWith(config: Config, ctx: Context, timeoutMs: number): Connection {
  ctx.addSecret(config.secret);
  const proxies = new ProxyRoutes(ctx.env);
  for (const secret of proxies.secrets) ctx.addSecret(secret);
  // an endpoint whose credentials a proxy would carry in clear is refused now, before anything is sent
  proxies.for(config.base);
  if (config.direct) proxies.for(config.direct);
  const options = { credentials: config, log: ctx.log, verbose: ctx.verbose, timeoutMs, proxies };
  const client = new HttpClient(config.base, options);
  const direct = config.direct ? new HttpClient(config.direct, options) : undefined;
  const sockets = new SocketPool({ proxies });
  return {
    config,
    client,
    direct,
    timeoutMs,
    retry: ctx.retry ?? DEFAULT_RETRY,
    proxies,
    sockets,
    close: () => sockets.close(),
  };
}

/** API 2.0: the client for the direct (upload/download) host. */
export function directClient(connection: Connection): HttpClient {
  if (!connection.direct) throw new UsageError("API 2.0 needs a direct host (CSDIRECT, or CSURI to derive it)");
  return connection.direct;
}
