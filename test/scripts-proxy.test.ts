// Every transfer path and the drive calls through a proxy: spawned scripts over https to a server
// name only the test's CONNECT proxy resolves (the emulator behind a TLS front whose certificate,
// from a CA the scripts trust through NODE_EXTRA_CA_CERTS, is for that name); in-process runs over
// plain http to the emulator on loopback through HTTP_PROXY. Also NO_PROXY, the lower-case names,
// a proxy that refuses, the proxy's credentials (to the proxy alone, masked everywhere), and the
// connections a chunked upload keeps open.
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import upload from "../scripts/upload.ts";
import download from "../scripts/download.ts";
import list from "../scripts/list.ts";
import create from "../scripts/create.ts";
import copy from "../scripts/copy.ts";
import { openApi2RangedDrive, PROXIED_SPAN, SPANS_GC_EVERY } from "../lib/api2/drive-source.ts";
import { GC_EVERY } from "../lib/chunks/engine.ts";
import { connect } from "../lib/connect.ts";
import { isAllZero } from "../lib/bytes.ts";
import { HOLD_AHEAD } from "../lib/socket-get.ts";
import { PROXIED_RECEIVE } from "../lib/wire.ts";
import { imageBytes, sameBytes } from "./images.ts";
import { quietContext, run, spawnScript, type RunResult } from "./helpers.ts";
import { makeCertificates, type Certificates } from "./certificates.ts";
import { Front, TestProxy } from "./proxy-server.ts";
import { Emulator, errorLines } from "./faults/support.ts";

const HOST = "drives.example.test";
const CHUNK = 64 * 1024;
/** 40 chunks and a tail. */
const SIZE = 40 * CHUNK + 1000;
const PROXY_USER = "proxyuser";
const PROXY_PASSWORD = "pr0xy-s3cret-pw";

const emulator = new Emulator();
let certs: Certificates;
let front: Front;
let dir: string;

beforeAll(async () => {
  await emulator.start();
  certs = makeCertificates([HOST]);
  front = new Front(emulator.stub.port, { tls: { key: certs.key, cert: certs.cert } });
});
afterAll(async () => {
  front.stop();
  certs.remove();
  await emulator.stop();
});
beforeEach(async () => {
  emulator.clear();
  dir = await mkdtemp(join(tmpdir(), "drivekit-proxy-"));
  return () => rm(dir, { recursive: true, force: true });
});

/** The API at the made-up name, both generations, trusted through the test CA. */
function remoteEnv(proxyVariables: Record<string, string>): Record<string, string> {
  const auth = `${emulator.stub.user}:${emulator.stub.secret}`;
  return {
    EHURI: `https://${HOST}/`,
    EHAUTH: auth,
    CSURI: `https://${HOST}/api/2.0/`,
    CSAUTH: auth,
    NODE_EXTRA_CA_CERTS: certs.caPath,
    ...proxyVariables,
  };
}

function imageFile(seed: number): { path: string; bytes: Uint8Array } {
  const bytes = imageBytes(SIZE, seed);
  const path = join(dir, `image-${seed}.img`);
  writeFileSync(path, bytes);
  return { path, bytes };
}

/** A downloaded copy: the image, then only zeros (an API 2.0 drive may be rounded up to a KiB). */
function copyHolds(file: string, bytes: Uint8Array): boolean {
  const copy = new Uint8Array(readFileSync(join(dir, file)));
  return (
    copy.length >= bytes.length &&
    sameBytes(copy.subarray(0, bytes.length), bytes) &&
    isAllZero(copy.subarray(bytes.length))
  );
}

function driveHolds(result: RunResult, bytes: Uint8Array): boolean {
  const uuid = result.stdout.trim();
  return emulator.stub.drives.has(uuid) && sameBytes(emulator.stub.readDrive(uuid, 0, bytes.length), bytes);
}

/** What must hold after any run through the proxy: the server saw only tunnelled requests, never a Proxy-Authorization. */
function expectTunnelled(): void {
  const requests = emulator.stub.requests;
  expect(requests.length).toBeGreaterThan(0);
  expect(requests.filter((request) => request.headers.host !== HOST)).toEqual([]);
  expect(requests.filter((request) => "proxy-authorization" in request.headers)).toEqual([]);
}

describe("spawned scripts through a CONNECT proxy, to a name only the proxy resolves", () => {
  let proxy: TestProxy;
  beforeAll(() => {
    proxy = new TestProxy({ hosts: { [HOST]: front.port } });
  });
  afterAll(() => proxy.stop());

  test("the drive calls: create and list over API 1.0 and 2.0", async () => {
    const env = remoteEnv({ HTTPS_PROXY: proxy.url() });
    const tunnels = proxy.tunnels;
    const made = await spawnScript("create", ["--api", "1", "--name", "via-proxy", "--size", "1M"], { env });
    expect([made.status, made.stderr]).toEqual([0, expect.stringContaining("created drive")]);
    const listed = await spawnScript("list", ["--api", "2"], { env });
    expect(listed.status).toBe(0);
    expect(listed.stdout.trim().split("\n")).toContain(/^drive (\S+)$/m.exec(made.stdout)?.[1] as string);
    expect(proxy.tunnels - tunnels).toBeGreaterThanOrEqual(2);
    expectTunnelled();
  });

  test("1.0 upload and download", async () => {
    const env = remoteEnv({ HTTPS_PROXY: proxy.url() });
    const image = imageFile(1);
    const argv = ["--api", "1", "-c", "64k", "--concurrency", "2"];
    const up = await spawnScript("upload", [image.path, ...argv], { env, cwd: dir });
    expect(up.status).toBe(0);
    expect(driveHolds(up, image.bytes)).toBe(true);
    const down = await spawnScript("download", [up.stdout.trim(), "copy.img", ...argv], { env, cwd: dir });
    expect(down.status).toBe(0);
    expect(copyHolds("copy.img", image.bytes)).toBe(true);
    expectTunnelled();
    // through a proxy the reads go over the run's own tunnels (fetch's would carry a User-Agent)
    const reads = emulator.stub.requests.filter((r) => r.method === "GET" && /\/read\//.test(r.path));
    expect(reads.length).toBeGreaterThan(0);
    expect(reads.filter((r) => r.headers["user-agent"])).toEqual([]);
  });

  test("2.0 chunked upload: 40 chunks over a few kept connections (far fewer than chunks)", async () => {
    const env = remoteEnv({ HTTPS_PROXY: proxy.url() });
    const image = imageFile(2);
    const [tunnels, connections] = [proxy.tunnels, front.connections];
    const up = await spawnScript("upload", [image.path, "-c", "64k", "--concurrency", "2"], { env, cwd: dir });
    expect([up.status, up.stderr]).toEqual([0, expect.stringContaining("40 chunks sent")]);
    expect(driveHolds(up, image.bytes)).toBe(true);
    expect(emulator.api2.chunked.chunkPosts.filter((post) => post.status === 200)).toHaveLength(40);
    // 81 requests (40 links, 40 chunks, the drive calls): fetch keeps its connections, the chunk POSTs theirs
    expect(emulator.stub.requests.length).toBeGreaterThan(80);
    expect(front.connections - connections).toBeLessThanOrEqual(8);
    expect(proxy.tunnels - tunnels).toBe(front.connections - connections);
    expectTunnelled();
  });

  test("2.0 --direct upload, and 2.0 download (its redirect to a plain-http origin through HTTP_PROXY), lower-case names", async () => {
    const env = remoteEnv({ https_proxy: proxy.url(), http_proxy: proxy.url() });
    const image = imageFile(3);
    const up = await spawnScript("upload", [image.path, "--direct"], { env, cwd: dir });
    expect(up.status).toBe(0);
    expect(driveHolds(up, image.bytes)).toBe(true);
    const forwarded = proxy.forwarded;
    const down = await spawnScript("download", ["--api", "2", up.stdout.trim(), "copy.img"], { env, cwd: dir });
    expect(down.status).toBe(0);
    expect(copyHolds("copy.img", image.bytes)).toBe(true);
    // the origin's GET went through the proxy too
    expect(proxy.forwarded - forwarded).toBe(emulator.api2.originRequests.length);
    expect(emulator.api2.originRequests.length).toBeGreaterThan(0);
    // in ranged GETs (over the run's own connections) as well, each through the proxy
    const origin = emulator.api2.originRequests.length;
    const ranged = await spawnScript(
      "download",
      ["--api", "2", up.stdout.trim(), "ranged.img", "-c", "64k", "--concurrency", "2"],
      { env, cwd: dir },
    );
    expect([ranged.status, ranged.stderr]).toEqual([0, expect.stringContaining("downloaded")]);
    expect(copyHolds("ranged.img", image.bytes)).toBe(true);
    const rangedGets = emulator.api2.originRequests.slice(origin);
    expect(rangedGets.filter((request) => request.status === 206).length).toBeGreaterThanOrEqual(40);
    expect(proxy.forwarded - forwarded).toBe(emulator.api2.originRequests.length);
    expectTunnelled();
  });

  test("a server that closes every connection after one answer: the chunked upload still arrives whole", async () => {
    const closing = new Front(emulator.stub.port, {
      tls: { key: certs.key, cert: certs.cert },
      closeAfterAnswer: true,
    });
    const via = new TestProxy({ hosts: { [HOST]: closing.port } });
    try {
      const image = imageFile(4);
      const up = await spawnScript("upload", [image.path, "-c", "64k", "--concurrency", "2"], {
        env: remoteEnv({ HTTPS_PROXY: via.url() }),
        cwd: dir,
      });
      expect([up.status, up.stderr]).toEqual([0, expect.stringContaining("40 chunks sent")]);
      expect(driveHolds(up, image.bytes)).toBe(true);
      expect(closing.connections).toBeGreaterThanOrEqual(emulator.stub.requests.length);
    } finally {
      via.stop();
      closing.stop();
    }
  });

  test("NO_PROXY bypasses it (.example.test): the name is then not found, and the proxy sees nothing", async () => {
    const requests = proxy.requests.length;
    const settings: Record<string, string>[] = [
      { NO_PROXY: ".example.test" },
      { no_proxy: HOST, NO_PROXY: "other.test" },
    ];
    for (const variables of settings) {
      const result = await spawnScript("list", ["--api", "2"], {
        env: remoteEnv({ HTTPS_PROXY: proxy.url(), ...variables }),
      });
      expect(result.status).toBe(1);
      const { errors, stack } = errorLines(result);
      expect(errors).toHaveLength(1);
      expect(stack).toBe(false);
      expect(errors[0]).toContain(HOST);
      expect(errors[0]).toMatch(/not found|lookup/);
    }
    expect(proxy.requests.length).toBe(requests);
  });

  test("a proxy that refuses CONNECT or is not there: status 1, one line naming it (no credentials)", async () => {
    const refusing = new TestProxy({ refuse: 403 });
    const gone = new TestProxy();
    gone.stop();
    try {
      const image = imageFile(5);
      for (const [url, words] of [
        [refusing.url(`${PROXY_USER}:${PROXY_PASSWORD}`), "answered 403"],
        [gone.url(), "cannot reach"],
      ] as const) {
        for (const argv of [
          ["list", "--api", "2"],
          ["upload", image.path, "--direct"],
        ]) {
          const [script, ...args] = argv as [string, ...string[]];
          const result = await spawnScript(script, args, { env: remoteEnv({ HTTPS_PROXY: url }), cwd: dir });
          expect(result.status).toBe(1);
          const { errors, stack } = errorLines(result);
          expect(errors).toHaveLength(1);
          expect(stack).toBe(false);
          expect(errors[0]).toContain(`${url.replace(/\/\/.*@/, "//")} (HTTPS_PROXY)`);
          expect(errors[0]).toContain(words);
          if (script === "upload") expect(errors[0]).toContain("the proxy let nothing through to the server");
          expect(result.stderr).not.toContain(PROXY_PASSWORD);
        }
      }
      expect(emulator.stub.requests).toEqual([]);
    } finally {
      refusing.stop();
    }
  });

  test("the proxy's credentials go to the proxy alone, and show nowhere (output, --verbose, journal)", async () => {
    const guarded = new TestProxy({ hosts: { [HOST]: front.port }, credentials: `${PROXY_USER}:${PROXY_PASSWORD}` });
    const basic = Buffer.from(`${PROXY_USER}:${PROXY_PASSWORD}`).toString("base64");
    try {
      const env = remoteEnv({ HTTPS_PROXY: guarded.url(`${PROXY_USER}:${PROXY_PASSWORD}`) });
      const image = imageFile(6);
      const argv = [image.path, "-c", "64k", "--concurrency", "2", "--verbose"];
      // the 10th chunk is refused for good: the run stops, its journal kept
      emulator.stub.fault({
        method: "POST",
        path: /^\/api\/2\.0\/upload\/chunk\//,
        every: 10,
        times: 1,
        action: { status: 403 },
      });
      const stopped = await spawnScript("upload", argv, { env, cwd: dir });
      expect(stopped.status).toBe(1);
      const kept = readdirSync(dir).filter((name) => name.startsWith(".drivekit-journal-"));
      expect(kept.length).toBeGreaterThanOrEqual(1);
      const journals = kept.map((name) => readFileSync(join(dir, name), "utf8"));
      emulator.stub.faults.length = 0;
      const again = await spawnScript("upload", argv, { env, cwd: dir });
      expect(again.status).toBe(0);
      expect(driveHolds(again, image.bytes)).toBe(true);
      expect(again.stderr).toContain(`(through the proxy http://127.0.0.1:${guarded.port})`);
      // an API 1.0 drive read back over the run's own tunnels, traced with the proxy's name only
      const up1 = await spawnScript("upload", ["--api", "1", image.path, "-c", "64k"], { env, cwd: dir });
      expect(up1.status).toBe(0);
      const down1 = await spawnScript(
        "download",
        ["--api", "1", up1.stdout.trim(), "guarded.img", "-c", "64k", "--verbose"],
        {
          env,
          cwd: dir,
        },
      );
      expect(down1.status).toBe(0);
      expect(copyHolds("guarded.img", image.bytes)).toBe(true);
      expect(down1.stderr).toContain(`(own connection, through the proxy http://127.0.0.1:${guarded.port})`);
      const wrong = await spawnScript("list", ["--api", "2", "--verbose"], {
        env: remoteEnv({ HTTPS_PROXY: guarded.url(`${PROXY_USER}:not-${PROXY_PASSWORD}`) }),
      });
      expect(wrong.status).toBe(1);
      expect(errorLines(wrong).errors[0]).toContain("answered 407");
      for (const text of [
        stopped.stdout,
        stopped.stderr,
        again.stdout,
        again.stderr,
        down1.stdout,
        down1.stderr,
        wrong.stderr,
        ...journals,
      ]) {
        expect(text).not.toContain(PROXY_PASSWORD);
        expect(text).not.toContain(basic);
      }
      // sent to the proxy, with each tunnel; never to the server
      expect(guarded.requests.filter((request) => request.proxyAuthorization === `Basic ${basic}`).length).toBe(
        guarded.tunnels,
      );
      expect(JSON.stringify(emulator.stub.requests)).not.toContain(PROXY_PASSWORD);
      expectTunnelled();
    } finally {
      guarded.stop();
    }
  });
});

describe("in-process runs over plain http on loopback, through HTTP_PROXY", () => {
  let proxy: TestProxy;
  beforeAll(() => {
    proxy = new TestProxy();
  });
  afterAll(() => proxy.stop());

  /** Every request the emulator (and its download origin) saw came through the proxy. */
  async function throughProxy(body: () => Promise<void>): Promise<void> {
    const forwarded = proxy.forwarded;
    await body();
    const seen = emulator.stub.requests.length + emulator.api2.originRequests.length;
    expect(seen).toBeGreaterThan(0);
    expect(proxy.forwarded - forwarded).toBe(seen);
  }

  test("every path: drive calls, 1.0 upload and download, 2.0 chunked and --direct upload, 2.0 download", async () => {
    const image = imageFile(7);
    const env1 = { ...emulator.stub.env, HTTP_PROXY: proxy.url() };
    const env2 = { ...emulator.api2.env, http_proxy: proxy.url() };
    const chunked = ["-c", "64k", "--concurrency", "2"];
    await throughProxy(async () => {
      expect((await run(create, ["--name", "x", "--size", "1M"], { env: env1 })).status).toBe(0);
      expect((await run(list, [], { env: env2 })).status).toBe(0);
    });
    for (const [env, extra] of [
      [env1, chunked],
      [env2, chunked],
      [env2, ["--direct"]],
    ] as const) {
      emulator.forget();
      let uuid = "";
      await throughProxy(async () => {
        const up = await run(upload, [image.path, ...extra], { env, cwd: dir });
        expect(up.status).toBe(0);
        expect(driveHolds(up, image.bytes)).toBe(true);
        uuid = up.stdout.trim();
      });
      emulator.forget();
      await throughProxy(async () => {
        const down = await run(download, [uuid, "copy.img", "--force"], { env, cwd: dir });
        expect(down.status).toBe(0);
        expect(copyHolds("copy.img", image.bytes)).toBe(true);
      });
    }
  });

  test("a 2.0 drive read in order goes through a proxy in spans (the runtime holds a proxied answer whole): download --concurrency 1 and copy, byte for byte", async () => {
    const size = 2 * PROXIED_SPAN + 12_345;
    const bytes = imageBytes(size, 31);
    const drive = emulator.stub.addDrive(size, {}, bytes).uuid;
    const env = { ...emulator.api2.env, HTTP_PROXY: proxy.url() };
    const spans = [
      `bytes=0-${PROXIED_SPAN - 1}`,
      `bytes=${PROXIED_SPAN}-${2 * PROXIED_SPAN - 1}`,
      `bytes=${2 * PROXIED_SPAN}-`,
    ];
    emulator.forget();
    await throughProxy(async () => {
      const down = await run(download, [drive, "spans.img", "--concurrency", "1", "--quiet"], { env, cwd: dir });
      expect(down.status).toBe(0);
      expect(copyHolds("spans.img", bytes)).toBe(true);
    });
    // the spans, and nothing larger (through this test proxy the origin may record a GET twice)
    const asked = () => [...new Set(emulator.api2.originRequests.map((request) => request.headers.range))];
    expect(asked()).toEqual(spans);
    emulator.forget();
    await throughProxy(async () => {
      const copied = await run(copy, [drive, "--quiet"], { env, cwd: dir });
      expect(copied.status).toBe(0);
      expect(sameBytes(emulator.stub.readDrive(copied.stdout.trim(), 0, size), bytes)).toBe(true);
    });
    expect(asked()).toEqual(spans);
  });

  test("a drive read in spans asks for a full collection every SPANS_GC_EVERY (each span's answer is garbage once read); one GET through a pipe never", async () => {
    const drive = emulator.stub.addDrive(PROXIED_SPAN + 1, {}, imageBytes(PROXIED_SPAN + 1, 5)).uuid;
    const gcEvery = async (env: Record<string, string | undefined>, concurrency: number) => {
      const ctx = quietContext(env, { cwd: dir });
      const connection = await connect({}, ctx);
      try {
        const source = await openApi2RangedDrive(connection, drive, ctx.log, concurrency);
        await source.close();
        return source.gcEvery;
      } finally {
        connection.close();
      }
    };
    const proxied = { ...emulator.api2.env, HTTP_PROXY: proxy.url() };
    expect(await gcEvery(proxied, 1)).toBe(SPANS_GC_EVERY);
    expect(await gcEvery(emulator.api2.env, 1)).toBe(Number.POSITIVE_INFINITY);
    expect(await gcEvery(proxied, 2)).toBe(GC_EVERY);
  });

  test("a ranged 2.0 read in flight counts its chunk, what the GET asked ahead holds, and through a proxy what its connection holds", async () => {
    const MiB = 1024 * 1024;
    const drive = emulator.stub.addDrive(65536, {}, imageBytes(65536, 6)).uuid;
    const held = async (env: Record<string, string | undefined>) => {
      const ctx = quietContext(env, { cwd: dir });
      const connection = await connect({}, ctx);
      try {
        const source = await openApi2RangedDrive(connection, drive, ctx.log, 2);
        await source.close();
        return source.heldPerRead(4 * MiB);
      } finally {
        connection.close();
      }
    };
    expect(await held(emulator.api2.env)).toBe(4 * MiB + HOLD_AHEAD);
    expect(await held({ ...emulator.api2.env, HTTP_PROXY: proxy.url() })).toBe(4 * MiB + HOLD_AHEAD + PROXIED_RECEIVE);
  });

  test("NO_PROXY (and no_proxy) naming the server: the proxy sees nothing", async () => {
    const image = imageFile(8);
    for (const variables of [
      { HTTP_PROXY: proxy.url(), NO_PROXY: "127.0.0.1" },
      { http_proxy: proxy.url(), no_proxy: `localhost,127.0.0.1:${emulator.stub.port}` },
      { HTTP_PROXY: proxy.url(), NO_PROXY: "127.0.0.0/8" },
    ]) {
      const requests = proxy.requests.length;
      const up = await run(upload, [image.path, "-c", "64k"], {
        env: { ...emulator.api2.env, ...variables },
        cwd: dir,
      });
      expect(up.status).toBe(0);
      expect(driveHolds(up, image.bytes)).toBe(true);
      expect(proxy.requests.length).toBe(requests);
    }
  });

  test("plain http through a proxy on another host: refused with status 2, nothing sent", async () => {
    const result = await run(list, [], { env: { ...emulator.api2.env, HTTP_PROXY: "http://proxy.example.test:3128" } });
    expect(result.status).toBe(2);
    expect(result.stderr).toContain("NO_PROXY");
    expect(emulator.stub.requests).toEqual([]);
  });
});
