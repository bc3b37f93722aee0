// A copy's destination (lib/connect.ts connectDestination), from --to-* and the source's connection:
// the same generation keeps the source's endpoint and credentials unless --to-uri / --to-location
// and --to-auth-file replace them; the other generation takes its own variables; wrong values are
// refused naming the --to- flag. Nothing is sent: connecting only resolves the configuration.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createConsola } from "consola";
import { connect, connectDestination, type Connection, type DestinationArgs } from "../lib/connect.ts";
import type { Context } from "../lib/context.ts";

const dir = mkdtempSync(join(tmpdir(), "drivekit-to-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const authFile = join(dir, "b.auth");
writeFileSync(authFile, "b@example.com:second-account\n");

const ENV = {
  EHURI: "https://api-lon-p.elastichosts.com/",
  EHAUTH: "eh-user:eh-secret",
  CSURI: "https://zrh.cloudsigma.com/api/2.0/",
  CSAUTH: "me@example.com:cs-secret",
  CSDIRECT: "https://up.zrh.example/api/2.0/",
};

function context(env: Record<string, string | undefined>): Context {
  return {
    log: createConsola({ level: 0 }),
    verbose: false,
    cwd: dir,
    env,
    addSecret: () => undefined,
    progress: () => ({ update: () => undefined, finish: () => undefined }),
  };
}

async function destination(
  source: { api?: string; location?: string },
  to: DestinationArgs,
  env: Record<string, string | undefined> = ENV,
): Promise<{ from: Connection; to: Connection }> {
  const ctx = context(env);
  const from = await connect(source, ctx);
  return { from, to: await connectDestination(to, ctx, from) };
}

const shown = (connection: Connection) => ({
  api: connection.config.api,
  base: connection.config.base.href,
  direct: connection.config.direct?.href,
  user: connection.config.user,
  secret: connection.config.secret,
});

test("the same generation by default: the source's endpoint, direct host and credentials", async () => {
  const { from, to } = await destination({}, {});
  expect(shown(to)).toEqual(shown(from));
  expect(shown(to)).toMatchObject({ api: 2, direct: "https://up.zrh.example/api/2.0/" });
});

test("--to-location: another CloudSigma location, the same credentials, its own direct host", async () => {
  const { to } = await destination({ location: "zrh" }, { "to-location": "fra" });
  expect(shown(to)).toEqual({
    api: 2,
    base: "https://fra.cloudsigma.com/api/2.0/",
    direct: "https://direct.fra.cloudsigma.com/api/2.0/",
    user: "me@example.com",
    secret: "cs-secret",
  });
});

test("--to-auth-file: another account on the same endpoint; --to-uri: another endpoint, the source's credentials", async () => {
  const other = await destination({}, { "to-auth-file": authFile });
  expect(shown(other.to)).toMatchObject({
    base: ENV.CSURI,
    user: "b@example.com",
    secret: "second-account",
  });
  const moved = await destination({ api: "1" }, { "to-uri": "https://api.other.example/" });
  expect(shown(moved.to)).toEqual({
    api: 1,
    base: "https://api.other.example/",
    direct: undefined,
    user: "eh-user",
    secret: "eh-secret",
  });
});

test("the other generation (--to-api, or --to-location from API 1.0): its own variables, each replaceable", async () => {
  const up = await destination({ api: "1" }, { "to-api": "2" });
  expect(shown(up.to)).toMatchObject({ api: 2, base: ENV.CSURI, user: "me@example.com", secret: "cs-secret" });
  const located = await destination({ api: "1" }, { "to-location": "fra", "to-auth-file": authFile });
  expect(shown(located.to)).toMatchObject({
    api: 2,
    base: "https://fra.cloudsigma.com/api/2.0/",
    user: "b@example.com",
  });
  const down = await destination({ api: "2" }, { "to-api": "1" });
  expect(shown(down.to)).toMatchObject({ api: 1, base: ENV.EHURI, user: "eh-user", secret: "eh-secret" });
});

test("wrong values: status 2 naming the --to- flag", async () => {
  const refused = (source: { api?: string }, to: DestinationArgs, env: Record<string, string | undefined> = ENV) =>
    destination(source, to, env);
  await expect(refused({}, { "to-api": "3" })).rejects.toThrow("invalid --to-api '3': expected 1 or 2");
  await expect(refused({}, { "to-api": "1", "to-location": "fra" })).rejects.toThrow(
    "--to-location names a CloudSigma (API 2.0) location: not with --to-api 1",
  );
  await expect(refused({}, { "to-uri": "http://api.example.com/" })).rejects.toThrow(
    "--to-uri http://api.example.com uses plain http",
  );
  await expect(refused({}, { "to-location": "not a place" })).rejects.toThrow("invalid --to-location 'not a place'");
  await expect(refused({}, { "to-auth-file": join(dir, "missing") })).rejects.toThrow(/auth file \S+ does not exist/);
  const { CSURI: _uri, CSAUTH: _auth, ...only1 } = ENV;
  await expect(refused({ api: "1" }, { "to-api": "2" }, only1)).rejects.toThrow(
    "no endpoint: set CSURI or pass --to-uri",
  );
  await expect(refused({ api: "1" }, { "to-api": "2" }, { ...only1, CSURI: ENV.CSURI })).rejects.toThrow(
    "no credentials: set CSAUTH or pass --to-auth-file PATH",
  );
});
