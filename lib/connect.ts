// From parsed flags and the environment to a ready HTTP client.
import { parseSeconds, resolveConfig, type Config } from "./config.ts";
import { HttpClient } from "./http.ts";
import { UsageError } from "./errors.ts";
import type { Context } from "./context.ts";
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
  const options = { credentials: config, log: ctx.log, verbose: ctx.verbose, timeoutMs };
  const client = new HttpClient(config.base, options);
  const direct = config.direct ? new HttpClient(config.direct, options) : undefined;
  return { config, client, direct, timeoutMs, retry: ctx.retry ?? DEFAULT_RETRY };
}

/** API 2.0: the client for the direct (upload/download) host. */
export function directClient(connection: Connection): HttpClient {
  if (!connection.direct) throw new UsageError("API 2.0 needs a direct host (CSDIRECT, or CSURI to derive it)");
  return connection.direct;
}
