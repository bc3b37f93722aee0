import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { createConsola } from "consola";
import { ApiError } from "../lib/errors.ts";
import { classifyError, HttpClient } from "../lib/http.ts";
import { ProxyRoutes } from "../lib/proxy.ts";
import { startStub, type DriveStub } from "../emulator/server.ts";
import { waitFor } from "./faults/support.ts";
import { Front, TestProxy } from "./proxy-server.ts";

let stub: DriveStub;
let client: HttpClient;
beforeAll(async () => {
  stub = await startStub();
  client = new HttpClient(new URL(stub.url), {
    credentials: { user: stub.user, secret: stub.secret },
    timeoutMs: 5000,
  });
});
afterAll(() => stub.stop());
beforeEach(() => stub.reset());

async function failure(promise: Promise<unknown>): Promise<ApiError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof ApiError) return error;
    throw error;
  }
  throw new Error("expected an ApiError");
}

// Every row of the error table of the ElasticStack API documentation: status, X-Elastic-Error kind, retry or not.
const TABLE = [
  [400, "usage", false],
  [401, "auth", false],
  [402, "billing", false],
  [404, "missing", false],
  [405, "method", false],
  [409, "busy", true],
  [500, "failed", true],
  [500, "system", true],
  [507, "full", false],
] as const;

describe("the error table", () => {
  for (const [status, kind, retryable] of TABLE) {
    test(`${status} ${kind}`, async () => {
      stub.fault({ path: /\/drives\/list/, action: { status, kind, message: `the ${kind} message` } });
      const error = await failure(client.text("GET", "drives/list"));
      expect(error.kind).toBe(kind);
      expect(error.status).toBe(status);
      expect(error.serverMessage).toBe(`the ${kind} message`);
      expect(error.retryable).toBe(retryable);
      expect(error.message).toBe(`GET /drives/list failed: ${status} ${kind}: the ${kind} message`);
    });
  }

  test("a 400 that says 'could not be found' is missing", async () => {
    stub.handlers.push(
      () => new Response("Drive 8f9b42b1-0000 could not be found. Please re-validate your entry.", { status: 400 }),
    );
    const error = await failure(client.text("GET", "drives/list"));
    expect(error.kind).toBe("missing");
    expect(error.retryable).toBe(false);
  });

  test("the kind comes from the body when the header is absent, else from the status", () => {
    expect(classifyError(500, null, "errors:system Drive x could not be imaged")).toEqual({
      kind: "system",
      message: "Drive x could not be imaged",
    });
    expect(classifyError(402, null, "Balance too low")).toEqual({ kind: "billing", message: "Balance too low" });
    expect(classifyError(503, null, "")).toEqual({ kind: "system", message: "" });
    expect(classifyError(418, null, "teapot")).toEqual({ kind: "unexpected", message: "teapot" });
    expect(classifyError(404, "missing", "errors:system Drive 8f9b42b1 could not be found.").kind).toBe("missing");
    expect(classifyError(400, "usage", "line one\nline two\u001b[31m").message).toBe("line one line two[31m");
  });

  test("the real stub answers a missing drive as the API does", async () => {
    const error = await failure(client.text("GET", `drives/${crypto.randomUUID()}/info`));
    expect(error.kind).toBe("missing");
    expect(error.status).toBe(404);
    expect(error.serverMessage).toMatch(/could not be found/);
  });

  test("wrong credentials are auth, a GET on a POST call is method", async () => {
    const wrong = new HttpClient(new URL(stub.url), { credentials: { user: stub.user, secret: "wrong" } });
    expect((await failure(wrong.text("GET", "drives/list"))).kind).toBe("auth");
    expect((await failure(client.text("GET", "drives/create"))).kind).toBe("method");
  });
});

describe("network failures", () => {
  test("a dropped connection is a retryable network error", async () => {
    stub.fault({ path: /list/, action: { reset: true } });
    const error = await failure(client.text("GET", "drives/list"));
    expect(error.kind).toBe("network");
    expect(error.retryable).toBe(true);
  });

  test("a slow answer times out", async () => {
    stub.fault({ path: /list/, action: { delayMs: 2000 } });
    const error = await failure(client.text("GET", "drives/list", { timeoutMs: 100 }));
    expect(error.kind).toBe("timeout");
    expect(error.retryable).toBe(true);
  });

  test("nobody listening is a network error", async () => {
    const other = await startStub();
    const url = other.url;
    await other.stop();
    const closed = new HttpClient(new URL(url), { credentials: { user: "a", secret: "b" }, timeoutMs: 2000 });
    expect((await failure(closed.text("GET", "drives/list"))).kind).toBe("network");
  });
});

describe("redirects and credentials", () => {
  test("same origin keeps Basic auth; another origin never sees it", async () => {
    const seen: (string | null)[] = [];
    const other = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: (request) => {
        seen.push(request.headers.get("authorization"));
        return new Response("moved data");
      },
    });
    try {
      stub.handlers.push((request, path) => {
        if (path === "/drives/hop/a")
          return new Response(null, { status: 302, headers: { location: "/drives/hop/b" } });
        if (path === "/drives/hop/b") {
          seen.push(request.headers.get("authorization"));
          return new Response(null, { status: 307, headers: { location: `http://127.0.0.1:${other.port}/data` } });
        }
        return undefined;
      });
      expect(await client.text("GET", "drives/hop/a")).toBe("moved data");
      expect(seen[0]).toStartWith("Basic ");
      expect(seen[1]).toBeNull();
    } finally {
      other.stop(true);
    }
  });

  test("a redirect to plain http elsewhere is refused; loops are bounded", async () => {
    stub.handlers.push((_request, path) => {
      if (path === "/drives/away")
        return new Response(null, { status: 302, headers: { location: "http://example.com/x" } });
      if (path === "/drives/loop") return new Response(null, { status: 302, headers: { location: "/drives/loop" } });
      return undefined;
    });
    expect((await failure(client.text("GET", "drives/away"))).message).toMatch(/not https/);
    expect((await failure(client.text("GET", "drives/loop"))).message).toMatch(/more than 5 redirects/);
    expect(stub.count("GET", /\/drives\/loop/)).toBe(6);
  });
});

test("--verbose logs the exchange with the credentials masked", async () => {
  const lines: string[] = [];
  const log = createConsola({ level: 4, reporters: [{ log: (entry) => void lines.push(entry.args.join(" ")) }] });
  const verbose = new HttpClient(new URL(stub.url), {
    credentials: { user: stub.user, secret: stub.secret },
    log,
    verbose: true,
  });
  await verbose.text("GET", "drives/list");
  const text = lines.join("\n");
  expect(text).toContain("> GET");
  expect(text).toContain("authorization: Basic ****");
  expect(text).toContain("< 200");
  expect(text).not.toContain(stub.secret);
  expect(text).not.toContain(Buffer.from(`${stub.user}:${stub.secret}`).toString("base64"));
});

describe("preconnect: the connections of the requests to come, opened ahead", () => {
  // Bun 1.4.5 opens one connection a call only while the process has sent no request yet (after
  // that, calls for an origin with a connection open add none), which is where the scripts call it:
  // so this runs in a process of its own
  test("in a fresh process: opens as many as asked, and the requests then use them (no new connection)", async () => {
    const front = new Front(stub.port);
    try {
      const http = new URL("../lib/http.ts", import.meta.url).pathname;
      const code = `
        const { HttpClient } = await import(${JSON.stringify(http)});
        const { PROBE_URL, PROBE_USER, PROBE_SECRET } = process.env;
        const client = new HttpClient(new URL(PROBE_URL), { credentials: { user: PROBE_USER, secret: PROBE_SECRET } });
        client.preconnect(3);
        for await (const line of console) break;
        await Promise.all([0, 1, 2].map(() => client.text("GET", "drives/list")));
        console.log("done");`;
      const child = Bun.spawn(["bun", "-e", code], {
        stdin: "pipe",
        stdout: "pipe",
        env: {
          ...process.env,
          PROBE_URL: `http://127.0.0.1:${front.port}/`,
          PROBE_USER: stub.user,
          PROBE_SECRET: stub.secret,
        },
      });
      await waitFor(() => front.connections === 3, "3 connections opened ahead");
      expect(stub.requests).toHaveLength(0);
      child.stdin.write("go\n");
      await child.stdin.end();
      expect(await new Response(child.stdout).text()).toBe("done\n");
      expect(await child.exited).toBe(0);
      expect(stub.requests).toHaveLength(3);
      expect(front.connections).toBe(3);
    } finally {
      front.stop();
    }
  });

  test("not through a proxy: the proxy's tunnels are opened by the requests themselves", async () => {
    const front = new Front(stub.port);
    const proxy = new TestProxy();
    try {
      const proxied = new HttpClient(new URL(`http://127.0.0.1:${front.port}/`), {
        credentials: { user: stub.user, secret: stub.secret },
        proxies: new ProxyRoutes({ HTTP_PROXY: proxy.url() }),
      });
      proxied.preconnect(3);
      await proxied.text("GET", "drives/list");
      // the one request's connection, from the proxy; none straight from the client
      expect(front.connections).toBe(1);
      expect(proxy.forwarded).toBe(1);
    } finally {
      proxy.stop();
      front.stop();
    }
  });
});
