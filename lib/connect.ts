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
