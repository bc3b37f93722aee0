// A refused server certificate says which check failed (unknown CA, another name, expired) and, for
// an unknown CA, how to trust one; it is final (no retries), one line, status 1, on the fetch path
// (lib/http.ts) and on the upload socket (lib/socket-post.ts, the --direct upload).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startStub, type DriveStub } from "../emulator/server.ts";
import { installApi2, type Api2Stub } from "../emulator/api2.ts";
import type { StubTlsOptions } from "../emulator/tls.ts";
import { networkError } from "../lib/http.ts";
import { describeTlsFailure } from "../lib/tls-failure.ts";
import { spawnScript } from "./helpers.ts";

const url = new URL("https://api.example.com:8443/api/2.0/");
const failure = (code: string, message = "") => Object.assign(new Error(message), { code });

describe("describeTlsFailure", () => {
  test("an unknown CA: says so and how to trust one", () => {
    for (const code of [
      "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
      "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
      "SELF_SIGNED_CERT_IN_CHAIN",
    ])
      expect(describeTlsFailure(failure(code, "unable to verify the first certificate"), url)).toBe(
        `the certificate of api.example.com:8443 is not signed by a CA this machine trusts (${code}): ` +
          "if the server uses a private CA, trust it with NODE_EXTRA_CA_CERTS=/path/to/ca.pem",
      );
    expect(describeTlsFailure(failure("DEPTH_ZERO_SELF_SIGNED_CERT"), url)).toContain(
      "is self-signed (DEPTH_ZERO_SELF_SIGNED_CERT): to trust it, set NODE_EXTRA_CA_CERTS",
    );
  });

  test("another name: the names when the error lists them", () => {
    expect(describeTlsFailure(failure("ERR_TLS_CERT_ALTNAME_INVALID"), url)).toBe(
      "the certificate of api.example.com:8443 does not name api.example.com (ERR_TLS_CERT_ALTNAME_INVALID); use a host name it holds",
    );
    const socket = failure(
      "ERR_TLS_CERT_ALTNAME_INVALID",
      "TLS: Hostname/IP does not match certificate's altnames: Host: api.example.com. is not in the cert's altnames: DNS:other.example",
    );
    expect(describeTlsFailure(socket, url)).toContain(
      "does not name api.example.com (ERR_TLS_CERT_ALTNAME_INVALID): it names DNS:other.example;",
    );
  });

  test("expired, not valid yet, other refusals; anything else is not a certificate failure", () => {
    expect(describeTlsFailure(failure("CERT_HAS_EXPIRED"), url)).toBe(
      "the certificate of api.example.com:8443 has expired (CERT_HAS_EXPIRED): the server must renew it, or this machine's clock is wrong",
    );
    expect(describeTlsFailure(failure("CERT_NOT_YET_VALID"), url)).toContain("is not valid yet (CERT_NOT_YET_VALID)");
    expect(describeTlsFailure(failure("CERT_REVOKED", "TLS: certificate revoked"), url)).toBe(
      "the certificate of api.example.com:8443 was refused: certificate revoked (CERT_REVOKED)",
    );
    expect(describeTlsFailure(failure("ECONNREFUSED"), url)).toBeUndefined();
    expect(describeTlsFailure(new Error("no code"), url)).toBeUndefined();
    expect(describeTlsFailure(undefined, url)).toBeUndefined();
  });

  test("networkError: a refused certificate is final (kind tls), anything else a network error that may pass", () => {
    const tls = networkError(failure("CERT_HAS_EXPIRED"), url, "GET", "/api/2.0/drives/");
    expect(tls.kind).toBe("tls");
    expect(tls.retryable).toBe(false);
    expect(tls.message).toStartWith(
      "GET /api/2.0/drives/ failed: tls: the certificate of api.example.com:8443 has expired",
    );
    const reset = networkError(failure("ECONNRESET"), url, "GET", "/api/2.0/drives/");
    expect(reset.kind).toBe("network");
    expect(reset.retryable).toBe(true);
  });
});

/** What each run must say, in its one line. */
const CASES: { title: string; tls: StubTlsOptions; trusted: boolean; says: RegExp }[] = [
  {
    title: "an unknown CA",
    tls: {},
    trusted: false,
    says: /tls: the certificate of 127\.0\.0\.1:\d+ is not signed by a CA this machine trusts \(UNABLE_TO_VERIFY_LEAF_SIGNATURE\): if the server uses a private CA, trust it with NODE_EXTRA_CA_CERTS=\/path\/to\/ca\.pem/,
  },
  {
    title: "a certificate for another name",
    tls: { names: ["other.example"] },
    trusted: true,
    says: /tls: the certificate of 127\.0\.0\.1:\d+ does not name 127\.0\.0\.1 \(ERR_TLS_CERT_ALTNAME_INVALID\)/,
  },
  {
    title: "an expired certificate",
    tls: { expired: true },
    trusted: true,
    says: /tls: the certificate of 127\.0\.0\.1:\d+ has expired \(CERT_HAS_EXPIRED\)/,
  },
];

let work: string;
let image: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "drivekit-tls-failure-"));
  image = join(work, "disk.img");
  await Bun.write(image, crypto.getRandomValues(new Uint8Array(65536)));
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

for (const { title, tls, trusted, says } of CASES) {
  describe(`${title}: status 1 and one line that says so`, () => {
    let stub: DriveStub;
    let api2: Api2Stub;
    let env: Record<string, string>;

    beforeAll(async () => {
      stub = await startStub({ tls });
      api2 = await installApi2(stub);
      // the emulator's CA is trusted where the case is about something else than trust
      env = trusted ? { NODE_EXTRA_CA_CERTS: stub.caPath as string } : {};
    });

    afterAll(async () => {
      api2.stop();
      await stub.stop();
    });

    async function fails(script: string, argv: string[], scriptEnv: Record<string, string>) {
      const result = await spawnScript(script, argv, { env: { ...env, ...scriptEnv }, cwd: work });
      expect(result.status).toBe(1);
      expect(result.stdout).toBe("");
      const lines = result.stderr.trimEnd().split("\n");
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(says);
      return lines[0] as string;
    }

    test("fetch: API 2.0 and API 1.0 calls, the 1.0 upload not retried", async () => {
      expect(await fails("list", [], api2.env)).toStartWith("list: error: GET /api/2.0/drives/?limit=0 failed: tls: ");
      expect(await fails("list", [], stub.env)).toStartWith("list: error: GET /drives/list failed: tls: ");
      expect(await fails("upload", ["--quiet", image], stub.env)).toStartWith(
        "upload: error: POST /drives/create failed: tls: ",
      );
      expect(stub.requests).toHaveLength(0);
    });

    test("the upload socket: the single POST is refused before any byte is sent", async () => {
      const line = await fails("upload", ["--quiet", image, "--direct"], api2.env);
      expect(line).toContain("POST /api/2.0/drives/upload/disk.img failed: tls: ");
      expect(line).toContain("so the server made no drive");
      expect(api2.uploads).toHaveLength(0);
      expect(stub.requests).toHaveLength(0);
    });
  });
}
