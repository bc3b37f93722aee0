// Proxies: the variables and the one decision (lib/proxy.ts), then fetch (HttpClient) and the upload
// sockets (streamPost) through a CONNECT proxy the test starts, to a server name only that proxy
// resolves, TLS inside the tunnel checked for that name.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { ApiError, UsageError } from "../lib/errors.ts";
import { HttpClient } from "../lib/http.ts";
import { fetchProxyOption, parseProxy, ProxyRoutes } from "../lib/proxy.ts";
import { SocketPool } from "../lib/socket-pool.ts";
import { streamPost } from "../lib/socket-post.ts";
import { makeCertificates, type Certificates } from "./certificates.ts";
import { Front, TestProxy } from "./proxy-server.ts";

const HOST = "drives.example.test";

describe("the proxy variables", () => {
  test("a proxy URL: scheme optional, credentials decoded into Proxy-Authorization, never shown", () => {
    const proxy = parseProxy("http://us%40er:p%3Ass@proxy.corp:3128/", "HTTPS_PROXY");
    expect(proxy).toEqual({
      hostname: "proxy.corp",
      port: 3128,
      shown: "http://proxy.corp:3128",
      authorization: `Basic ${Buffer.from("us@er:p:ss").toString("base64")}`,
      variable: "HTTPS_PROXY",
    });
    expect(parseProxy("proxy.corp:8080", "http_proxy")).toMatchObject({ hostname: "proxy.corp", port: 8080 });
    expect(parseProxy("http://proxy.corp", "HTTP_PROXY").port).toBe(80);
    expect(parseProxy("http://[::1]:3128", "HTTP_PROXY").hostname).toBe("::1");
  });

  test("refused with status 2 and a line that never echoes credentials: other schemes, paths, garbage", () => {
    for (const [value, words] of [
      ["https://u:secretpw@proxy.corp:443", "only http:// proxies"],
      ["socks5://proxy.corp:1080", "only http:// proxies"],
      ["http://proxy.corp:3128/path", "must be a proxy URL"],
      ["http://u:secretpw@", "must be a proxy URL"],
      ["http://u:%zz@proxy.corp", "percent-encoding"],
    ]) {
      const error = (() => {
        try {
          return parseProxy(value as string, "HTTPS_PROXY");
        } catch (caught) {
          return caught;
        }
      })();
      expect(error).toBeInstanceOf(UsageError);
      expect((error as Error).message).toContain(words as string);
      expect((error as Error).message).not.toContain("secretpw");
    }
  });

  test("the lower-case name wins where both are set; https and http targets each read their own", () => {
    const routes = new ProxyRoutes({
      https_proxy: "http://127.0.0.1:1001",
      HTTPS_PROXY: "http://127.0.0.1:1002",
      HTTP_PROXY: "http://127.0.0.1:1003",
    });
    expect(routes.for(new URL("https://api.example.test/"))?.port).toBe(1001);
    expect(routes.for(new URL("http://127.0.0.1:9/"))?.port).toBe(1003);
    expect(new ProxyRoutes({ HTTPS_PROXY: "http://127.0.0.1:1002" }).for(new URL("http://127.0.0.1:9/"))).toBe(
      undefined,
    );
    const empty = new ProxyRoutes({ https_proxy: "", HTTPS_PROXY: "http://127.0.0.1:1002" });
    expect(empty.for(new URL("https://api.example.test/"))?.variable).toBe("HTTPS_PROXY");
    expect(new ProxyRoutes({}).any).toBe(false);
  });

  test("NO_PROXY: names and the names under them, *, host:port, addresses and ranges; no_proxy first", () => {
    const bypassed = (noProxy: string, target: string) =>
      new ProxyRoutes({
        HTTPS_PROXY: "http://127.0.0.1:3128",
        HTTP_PROXY: "http://127.0.0.1:3128",
        NO_PROXY: noProxy,
      }).bypasses(new URL(target));
    const cases: [string, string, boolean][] = [
      ["example.test", `https://${HOST}/`, true],
      [".example.test", `https://${HOST}/`, true],
      ["*.example.test", `https://${HOST}/`, true],
      ["example.test", "https://example.test/", true],
      ["EXAMPLE.test.", `https://${HOST.toUpperCase()}./`, true],
      ["xample.test", `https://${HOST}/`, false],
      ["other.test, example.test", `https://${HOST}/`, true],
      ["other.test example.test", `https://${HOST}/`, true],
      ["*", `https://${HOST}/`, true],
      [`${HOST}:443`, `https://${HOST}/`, true],
      [`${HOST}:444`, `https://${HOST}/`, false],
      [`${HOST}:444`, `https://${HOST}:444/`, true],
      ["10.1.2.3", "https://10.1.2.3/", true],
      ["10.0.0.0/8", "https://10.200.0.1/", true],
      ["10.0.0.0/8", "https://11.0.0.1/", false],
      ["127.0.0.1:8080", "http://127.0.0.1:8080/", true],
      ["127.0.0.1:8080", "http://127.0.0.1:8081/", false],
      ["::1", "http://[::1]:80/", true],
      ["[::1]:8080", "http://[::1]:8080/", true],
      ["fd00::/8", "https://[fd12::1]/", true],
      ["10.0.0.0/99", "https://10.0.0.1/", false],
      ["10.1.2.3", "https://host.10.1.2.3.example/", false],
      ["", `https://${HOST}/`, false],
    ];
    for (const [noProxy, target, expected] of cases)
      expect([noProxy, target, bypassed(noProxy, target)]).toEqual([noProxy, target, expected]);
    const both = new ProxyRoutes({ HTTPS_PROXY: "http://127.0.0.1:3128", no_proxy: HOST, NO_PROXY: "other.test" });
    expect(both.for(new URL(`https://${HOST}/`))).toBeUndefined();
  });

  test("plain http through a proxy on another host is refused (its credentials would travel in clear)", () => {
    const routes = new ProxyRoutes({ HTTP_PROXY: "http://proxy.corp:3128" });
    expect(() => routes.for(new URL("http://127.0.0.1:8080/"))).toThrow(/in clear.*NO_PROXY/);
    expect(
      new ProxyRoutes({ HTTP_PROXY: "http://proxy.corp:3128", NO_PROXY: "127.0.0.1" }).for(
        new URL("http://127.0.0.1:8080/"),
      ),
    ).toBe(undefined);
    expect(new ProxyRoutes({ HTTP_PROXY: "http://127.0.0.1:3128" }).for(new URL("http://127.0.0.1:8080/"))?.port).toBe(
      3128,
    );
  });

  test("fetch gets our decision: false (no proxy, whatever the process's variables) or the proxy with its credentials in a header", () => {
    expect(fetchProxyOption(undefined)).toBe(false);
    const routes = new ProxyRoutes({ HTTPS_PROXY: "http://u:p@127.0.0.1:3128" });
    expect(fetchProxyOption(routes.for(new URL(`https://${HOST}/`)))).toEqual({
      url: "http://127.0.0.1:3128",
      headers: { "proxy-authorization": `Basic ${Buffer.from("u:p").toString("base64")}` },
      respectNoProxy: false,
    });
    expect(routes.secrets).toContain("p");
  });
});

describe("requests through a CONNECT proxy to a name only the proxy resolves", () => {
  let certs: Certificates;
  let server: ReturnType<typeof Bun.serve>;
  let front: Front;
  let proxy: TestProxy;
  /** What the server behind the tunnel saw of each request. */
  const seen: { host: string | null; proxyAuthorization: string | null; authorization: string | null }[] = [];
  const env = () => ({ HTTPS_PROXY: proxy.url() });

  beforeAll(() => {
    certs = makeCertificates([HOST]);
    server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      async fetch(request) {
        seen.push({
          host: request.headers.get("host"),
          proxyAuthorization: request.headers.get("proxy-authorization"),
          authorization: request.headers.get("authorization"),
        });
        const body = await request.arrayBuffer();
        return Response.json({ length: body.byteLength });
      },
    });
    front = new Front(server.port as number, { tls: { key: certs.key, cert: certs.cert } });
    proxy = new TestProxy({ hosts: { [HOST]: front.port, "wrong.example.test": front.port } });
  });
  afterAll(() => {
    proxy.stop();
    front.stop();
    server.stop(true);
    certs.remove();
  });

  const post = (url: string, pool: SocketPool, size = 300_000) =>
    streamPost({
      url: new URL(url),
      headers: {},
      size,
      fill: (buffer, _offset, length) => {
        buffer.fill(1, 0, length);
        return length;
      },
      ca: certs.ca,
      pool,
    });

  test("the name does not resolve here: only the proxy reaches it", async () => {
    const error = await post(`https://${HOST}/x`, new SocketPool()).catch((caught) => caught);
    expect((error as { code?: string }).code).toMatch(/ENOTFOUND|EAI_AGAIN|DNS/);
  });

  test("streamPost: one tunnel for several POSTs, TLS for the server's name, the bytes whole", async () => {
    const tunnels = proxy.tunnels;
    const pool = new SocketPool({ proxies: new ProxyRoutes(env()) });
    for (let i = 0; i < 5; i++) {
      const answer = await post(`https://${HOST}/upload/chunk/${i}`, pool);
      expect([answer.status, JSON.parse(answer.body).length]).toEqual([200, 300_000]);
    }
    pool.close();
    expect(proxy.tunnels - tunnels).toBe(1);
    expect(proxy.requests.at(-1)).toMatchObject({ method: "CONNECT", target: `${HOST}:443` });
    expect(seen.at(-1)?.host).toBe(HOST);
  });

  test("a certificate that is not for the name asked is refused inside the tunnel", async () => {
    const pool = new SocketPool({ proxies: new ProxyRoutes(env()) });
    const error = await post("https://wrong.example.test/x", pool).catch((caught) => caught);
    expect(String((error as { code?: string }).code)).toMatch(/ALTNAME|HOST/);
  });

  test("HttpClient: fetch through the proxy with our decision, credentials to the proxy only", async () => {
    const guarded = new TestProxy({ hosts: { [HOST]: front.port }, credentials: "proxyuser:proxypass" });
    try {
      const proxies = new ProxyRoutes({ https_proxy: guarded.url("proxyuser:proxypass") });
      const client = new HttpClient(new URL(`https://${HOST}/api/`), {
        credentials: { user: "apiuser", secret: "apisecret" },
        proxies,
      });
      // fetch trusts the test CA only through NODE_EXTRA_CA_CERTS (spawned runs): here the tunnel itself is checked
      const error = await client.request("GET", "drives/").catch((caught) => caught);
      expect(guarded.tunnels).toBe(1);
      expect(guarded.requests[0]).toMatchObject({
        method: "CONNECT",
        target: `${HOST}:443`,
        proxyAuthorization: `Basic ${Buffer.from("proxyuser:proxypass").toString("base64")}`,
      });
      // the API's credentials never reached the proxy in clear
      expect(JSON.stringify(guarded.requests)).not.toContain(Buffer.from("apiuser:apisecret").toString("base64"));
      expect((error as Error).message).toMatch(/certificate|verify/i);
      expect((error as Error).message).toContain(`through the proxy http://127.0.0.1:${guarded.port}`);
    } finally {
      guarded.stop();
    }
  });

  test("the server behind the tunnel never sees Proxy-Authorization", async () => {
    const guarded = new TestProxy({ hosts: { [HOST]: front.port }, credentials: "proxyuser:proxypass" });
    try {
      const pool = new SocketPool({ proxies: new ProxyRoutes({ HTTPS_PROXY: guarded.url("proxyuser:proxypass") }) });
      const before = seen.length;
      expect((await post(`https://${HOST}/x`, pool)).status).toBe(200);
      pool.close();
      expect(seen.length - before).toBe(1);
      expect(seen.at(-1)?.proxyAuthorization).toBeNull();
    } finally {
      guarded.stop();
    }
  });

  test("a proxy that refuses (407, 403, 502) or cannot be reached: one line naming the proxy, never its credentials", async () => {
    const refusing = [
      new TestProxy({ credentials: "proxyuser:proxypass" }),
      new TestProxy({ refuse: 403 }),
      new TestProxy({ refuse: 502 }),
    ];
    const closed = new TestProxy();
    closed.stop();
    try {
      const cases = [
        { url: refusing[0]?.url("proxyuser:wrongpass"), words: "answered 407", retryable: false },
        { url: refusing[1]?.url("proxyuser:wrongpass"), words: "answered 403 Refused By Test", retryable: false },
        { url: refusing[2]?.url(), words: "answered 502", retryable: true },
        { url: closed.url("proxyuser:wrongpass"), words: "cannot reach", retryable: true },
      ];
      for (const { url, words, retryable } of cases) {
        const routes = new ProxyRoutes({ HTTPS_PROXY: url });
        const shown = (url as string).replace(/\/\/.*@/, "//");
        const errors = [
          await post(`https://${HOST}/x`, new SocketPool({ proxies: routes })).catch((caught) => caught),
          await new HttpClient(new URL(`https://${HOST}/api/`), {
            credentials: { user: "apiuser", secret: "apisecret" },
            proxies: routes,
          })
            .request("GET", "drives/")
            .catch((caught) => caught),
        ];
        for (const error of errors) {
          expect(error).toBeInstanceOf(ApiError);
          expect((error as ApiError).kind).toBe("proxy");
          expect((error as ApiError).retryable).toBe(retryable);
          expect((error as Error).message).toContain(`failed: proxy: `);
          expect((error as Error).message).toContain(`${shown} (HTTPS_PROXY)`);
          expect((error as Error).message).toContain(words);
          expect((error as Error).message).not.toMatch(/wrongpass|proxyuser/);
          expect((error as Error).message).not.toContain("\n");
        }
      }
    } finally {
      for (const each of refusing) each.stop();
    }
  });

  test("an http target through HTTP_PROXY goes in absolute form, Proxy-Authorization to the proxy", async () => {
    const guarded = new TestProxy({ credentials: "proxyuser:proxypass" });
    try {
      const pool = new SocketPool({ proxies: new ProxyRoutes({ http_proxy: guarded.url("proxyuser:proxypass") }) });
      const target = `http://127.0.0.1:${server.port}/upload/chunk/x`;
      for (let i = 0; i < 3; i++) expect((await post(target, pool)).status).toBe(200);
      pool.close();
      expect([guarded.connections, guarded.forwarded]).toEqual([1, 3]);
      expect(guarded.requests.map((request) => request.target)).toEqual([target, target, target]);
      const wrong = new SocketPool({ proxies: new ProxyRoutes({ HTTP_PROXY: guarded.url("proxyuser:nope") }) });
      const error = await post(target, wrong).catch((caught) => caught);
      expect((error as Error).message).toContain(`proxy: http://127.0.0.1:${guarded.port} (HTTP_PROXY) answered 407`);
    } finally {
      guarded.stop();
    }
  });

  test("without proxy settings a request goes direct, even when the process has HTTP_PROXY (the decision is ours)", async () => {
    const watching = new TestProxy();
    const saved = process.env.HTTP_PROXY;
    process.env.HTTP_PROXY = watching.url();
    try {
      const client = new HttpClient(new URL(`http://127.0.0.1:${server.port}/api/`), {
        credentials: { user: "apiuser", secret: "apisecret" },
      });
      expect((await client.request("GET", "drives/")).status).toBe(200);
      expect(watching.requests).toEqual([]);
    } finally {
      if (saved === undefined) delete process.env.HTTP_PROXY;
      else process.env.HTTP_PROXY = saved;
      watching.stop();
    }
  });
});
