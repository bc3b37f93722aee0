// The API 2.0 download's links asked for ahead (lib/api2/download-links.ts): the policy with a
// fake client and clock, then ranged downloads against the emulator: each link used once, a link
// that fails followed afresh, a server that answers the download path itself asked no more.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import download from "../../scripts/download.ts";
import { DownloadLinks, LINK_FRESH_MS } from "../../lib/api2/download-links.ts";
import type { HttpClient } from "../../lib/http.ts";
import { run } from "../helpers.ts";
import {
  api2,
  content,
  drive,
  freshFolder,
  SIZE,
  stub,
  useDirectEmulator,
  useDownloadDrive,
} from "./direct-emulator.ts";

/** A client whose redirectOf answers when the test says so; and a clock the test moves. */
function fakeClient() {
  const pending: Array<{
    settle: (target: URL | undefined) => void;
    fail: (error: Error) => void;
    signal?: AbortSignal;
  }> = [];
  let served = 0;
  const client = {
    redirectOf: (_path: string, options: { signal?: AbortSignal }) =>
      new Promise<URL | undefined>((settle, fail) => {
        pending.push({ settle, fail, signal: options.signal });
      }),
  } as unknown as HttpClient;
  const clock = { ms: 0 };
  /** Answer every link asked for so far with a new target (or `target`), and let the answers land. */
  const answerAll = async (target?: URL | null) => {
    for (const ask of pending.splice(0))
      ask.settle(target === null ? undefined : (target ?? new URL(`https://direct.test/${++served}`)));
    // the links' own then/finally run before the test looks
    for (let i = 0; i < 5; i++) await Promise.resolve();
  };
  return { client, clock, pending, answerAll };
}

describe("the policy", () => {
  test("asks for as many links as reads in flight, never beyond the reads still to come; nothing ready: undefined", async () => {
    const { client, clock, pending, answerAll } = fakeClient();
    const links = new DownloadLinks(client, "drives/x/download/", () => clock.ms);
    expect(links.take(1, 10)).toBeUndefined();
    expect(pending).toHaveLength(1);
    expect(links.take(4, 10)).toBeUndefined();
    expect(pending).toHaveLength(4);
    await answerAll();
    // one link used once; one asked again in its place
    const first = links.take(4, 10);
    expect(first?.href).toBe("https://direct.test/1");
    expect(links.take(4, 10)?.href).toBe("https://direct.test/2");
    expect(links.count).toBe(4);
    // two reads left: no more links than that
    links.take(4, 0);
    expect(links.count).toBeLessThanOrEqual(3);
    links.stop();
  });

  test("a link older than LINK_FRESH_MS is never used, nor one that failed", async () => {
    const { client, clock, answerAll, pending } = fakeClient();
    const links = new DownloadLinks(client, "drives/x/download/", () => clock.ms);
    links.take(2, 10);
    await answerAll();
    clock.ms += LINK_FRESH_MS + 1;
    expect(links.take(2, 10)).toBeUndefined();
    for (const ask of pending.splice(0)) ask.fail(new Error("503"));
    for (let i = 0; i < 5; i++) await Promise.resolve();
    expect(links.take(2, 10)).toBeUndefined();
    await answerAll();
    expect(links.take(2, 10)?.href).toStartWith("https://direct.test/");
    links.stop();
  });

  test("a server that answers the download path itself (no redirect): nothing more is asked for", async () => {
    const { client, clock, pending, answerAll } = fakeClient();
    const links = new DownloadLinks(client, "drives/x/download/", () => clock.ms);
    links.take(3, 10);
    await answerAll(null);
    expect(links.take(3, 10)).toBeUndefined();
    expect(pending).toHaveLength(0);
    expect(links.count).toBe(0);
  });

  test("stop: the links still asked for are aborted", () => {
    const { client, clock, pending } = fakeClient();
    const links = new DownloadLinks(client, "drives/x/download/", () => clock.ms);
    links.take(3, 10);
    expect(pending.map((ask) => ask.signal?.aborted)).toEqual([false, false, false]);
    links.stop();
    expect(pending.map((ask) => ask.signal?.aborted)).toEqual([true, true, true]);
    expect(links.take(3, 10)).toBeUndefined();
    expect(pending).toHaveLength(3);
  });
});

describe("against the emulator", () => {
  useDirectEmulator();
  useDownloadDrive();

  const RANGED = ["--quiet", "-c", "64k", "--concurrency", "3"];
  const CHUNKS = Math.ceil(SIZE / 65536);
  const asks = () => stub.requests.filter((r) => r.path.endsWith("/download/") && r.headers.range === "bytes=0-0");

  test("ranged GETs go to links asked for ahead, each used once: identical, the origin asked once a chunk", async () => {
    const out = await freshFolder();
    stub.requests.length = 0;
    api2.originRequests.length = 0;
    const result = await run(download, [drive, "ahead.raw", ...RANGED], { env: api2.env, cwd: out });
    expect(result.status).toBe(0);
    expect(Buffer.from(readFileSync(join(out, "ahead.raw"))).equals(Buffer.from(content))).toBe(true);
    const tokens = api2.originRequests.map((r) => r.path);
    expect(tokens).toHaveLength(CHUNKS);
    expect(new Set(tokens).size).toBe(CHUNKS);
    // links were asked for ahead (their one-byte Range), no more than one a chunk and the window's
    expect(asks().length).toBeGreaterThan(0);
    const apiGets = stub.requests.filter((r) => r.path === `/api/2.0/drives/${drive}/download/`);
    expect(apiGets.length).toBeLessThanOrEqual(CHUNKS + 3);
    expect(api2.originRequests.every((r) => r.headers.authorization === undefined)).toBe(true);
  });

  test("links that fail (expired, gone) are followed afresh: identical, no retry", async () => {
    const out = await freshFolder();
    // every link asked for ahead points at a link the origin does not know (404)
    stub.handlers.unshift((request, path) =>
      path.endsWith("/download/") && request.headers.get("range") === "bytes=0-0"
        ? new Response(null, { status: 302, headers: { location: `${api2.originUrl}download/${crypto.randomUUID()}` } })
        : undefined,
    );
    api2.originRequests.length = 0;
    const result = await run(download, [drive, "stale.raw", ...RANGED.filter((f) => f !== "--quiet")], {
      env: api2.env,
      cwd: out,
    });
    expect(result.status).toBe(0);
    expect(result.stderr).not.toMatch(/retry/);
    expect(Buffer.from(readFileSync(join(out, "stale.raw"))).equals(Buffer.from(content))).toBe(true);
    expect(api2.originRequests.filter((r) => r.status === 404).length).toBeGreaterThan(0);
    expect(api2.originRequests.filter((r) => r.status === 206)).toHaveLength(CHUNKS);
  });

  test("a server that answers the download path itself: asked once, then never again; identical", async () => {
    const out = await freshFolder();
    // the API host serves the bytes itself, honouring Range (no redirect)
    stub.handlers.unshift((request, path) => {
      if (!path.endsWith("/download/")) return undefined;
      const range = /^bytes=(\d+)-(\d+)$/.exec(request.headers.get("range") ?? "");
      if (!range) return new Response(stub.readDrive(drive));
      const [start, end] = [Number(range[1]), Math.min(Number(range[2]), SIZE - 1)];
      return new Response(stub.readDrive(drive, start, end - start + 1), {
        status: 206,
        headers: { "content-range": `bytes ${start}-${end}/${SIZE}` },
      });
    });
    stub.requests.length = 0;
    const result = await run(download, [drive, "itself.raw", ...RANGED], { env: api2.env, cwd: out });
    expect(result.status).toBe(0);
    expect(Buffer.from(readFileSync(join(out, "itself.raw"))).equals(Buffer.from(content))).toBe(true);
    // the first reads each asked at most once before the first answer said "no redirect"
    expect(asks().length).toBeLessThanOrEqual(3);
  });
});
