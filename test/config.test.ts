import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { deriveDirect, isLoopbackHost, parseCredentials, resolveConfig } from "../lib/config.ts";
import { UsageError } from "../lib/errors.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

test("API 1.0 from EHURI/EHAUTH; the base always ends in /", async () => {
  const config = await resolveConfig({ env: { EHURI: "https://api-lon-p.elastichosts.com", EHAUTH: "u-1:s3cr:et" } });
  expect(config.api).toBe(1);
  expect(config.base.href).toBe("https://api-lon-p.elastichosts.com/");
  expect(config).toMatchObject({ user: "u-1", secret: "s3cr:et" });
  expect(config.direct).toBeUndefined();
});

test("API 2.0 when CSURI is set; the direct host is derived or taken from CSDIRECT", async () => {
  const env = {
    CSURI: "https://zrh.cloudsigma.com/api/2.0/",
    CSAUTH: "me@example.com:pw",
    EHURI: "https://x.example/",
    EHAUTH: "a:b",
  };
  const config = await resolveConfig({ env });
  expect(config.api).toBe(2);
  expect(config.direct?.href).toBe("https://direct.zrh.cloudsigma.com/api/2.0/");
  expect(config.user).toBe("me@example.com");
  const other = await resolveConfig({ env: { ...env, CSDIRECT: "https://up.partner.example/api/2.0" } });
  expect(other.direct?.href).toBe("https://up.partner.example/api/2.0/");
  const local = await resolveConfig({ env: { CSURI: "http://127.0.0.1:9/api/2.0/", CSAUTH: "a:b" } });
  expect(local.direct?.href).toBe("http://127.0.0.1:9/api/2.0/");
  expect((await resolveConfig({ env, api: "1" })).base.href).toBe("https://x.example/");
  const located = await resolveConfig({ env: { CSAUTH: "a:b" }, location: "sjc" });
  expect(located.base.href).toBe("https://sjc.cloudsigma.com/api/2.0/");
  expect(located.direct?.href).toBe("https://direct.sjc.cloudsigma.com/api/2.0/");
  expect(deriveDirect(new URL("https://direct.wdc.cloudsigma.com/api/2.0/")).hostname).toBe(
    "direct.wdc.cloudsigma.com",
  );
});

test("--uri and --auth-file override the environment", async () => {
  const dir = mkdtempSync(join(tmpdir(), "drivekit-config-"));
  dirs.push(dir);
  const file = join(dir, "auth");
  writeFileSync(file, "file-user:file-secret\n");
  const config = await resolveConfig({
    env: { EHURI: "https://a.example/", EHAUTH: "env:env" },
    uri: "https://b.example/x",
    authFile: file,
  });
  expect(config.base.href).toBe("https://b.example/x/");
  expect(config).toMatchObject({ user: "file-user", secret: "file-secret" });
  await expect(resolveConfig({ env: { EHURI: "https://a.example/" }, authFile: join(dir, "none") })).rejects.toThrow(
    /does not exist/,
  );
});

test("plain http only to loopback; credentials, missing settings and bad values refused", async () => {
  const auth = { EHAUTH: "a:b" };
  for (const host of ["127.0.0.1", "127.1.2.3", "localhost", "[::1]"]) {
    expect((await resolveConfig({ env: { EHURI: `http://${host}:8080/`, ...auth } })).base.protocol).toBe("http:");
  }
  for (const uri of ["http://api.example.com/", "http://10.0.0.1/", "http://192.168.1.1/", "ftp://x/"]) {
    await expect(resolveConfig({ env: { EHURI: uri, ...auth } })).rejects.toThrow(UsageError);
  }
  await expect(resolveConfig({ env: { EHURI: "http://api.example.com/", ...auth } })).rejects.toThrow(/in clear/);
  await expect(resolveConfig({ env: { EHURI: "https://u:p@x.example/", ...auth } })).rejects.toThrow(/credentials/);
  await expect(resolveConfig({ env: auth })).rejects.toThrow(/set EHURI/);
  await expect(resolveConfig({ env: { EHURI: "https://x.example/" } })).rejects.toThrow(/set EHAUTH/);
  await expect(resolveConfig({ env: { EHURI: "https://x.example/", EHAUTH: "nocolon" } })).rejects.toThrow(
    /user:secret/,
  );
  await expect(resolveConfig({ env: { EHURI: "https://x.example/", ...auth }, api: "3" })).rejects.toThrow(/--api/);
  await expect(resolveConfig({ env: { CSAUTH: "a:b" }, location: "../evil" })).rejects.toThrow(/--location/);
  expect(isLoopbackHost("127.0.0.1.example.com")).toBe(false);
});

test("the secret never appears in the messages", async () => {
  try {
    parseCredentials("secret-without-colon", "EHAUTH");
    throw new Error("not refused");
  } catch (error) {
    expect((error as Error).message).not.toContain("secret-without-colon");
  }
});
