// The emulator's far, shaped link (emulator/wan.ts): bytes paced per connection and on one shared
// budget, the connect cost paid once per connection, a round trip per answer, on both origins,
// answers keeping their Content-Length, TLS passing through. Only lower bounds on time are
// asserted: a loaded machine can only make things slower.
import { afterEach, describe, expect, test } from "bun:test";
import { startStub, type DriveStub, type StubOptions } from "../../emulator/server.ts";
import { installApi2, type Api2Stub } from "../../emulator/api2.ts";
import { imageBytes } from "../images.ts";

const MiB = 1024 * 1024;

const sha = (bytes: Uint8Array) => new Bun.CryptoHasher("sha256").update(bytes).digest("hex");

let running: { stub: DriveStub; api2: Api2Stub }[] = [];

afterEach(async () => {
  for (const { stub, api2 } of running) {
    api2.stop();
    await stub.stop();
  }
  running = [];
});

/** An emulator with both APIs on the link `options` describe; fetch with its credentials (and CA). */
async function emulator(options: StubOptions) {
  const stub = await startStub(options);
  const api2 = await installApi2(stub);
  running.push({ stub, api2 });
  const authorization = `Basic ${Buffer.from(`${stub.user}:${stub.secret}`).toString("base64")}`;
  const ca = stub.caPath ? await Bun.file(stub.caPath).text() : undefined;
  /** One exchange, timed from the request to the answer's last byte. */
  async function timed(url: string, init: RequestInit = {}) {
    const started = performance.now();
    const response = await fetch(url, { ...init, headers: { authorization }, tls: ca ? { ca } : undefined });
    const body = new Uint8Array(await response.arrayBuffer());
    return { response, body, ms: performance.now() - started };
  }
  return { stub, api2, timed };
}

describe("off by default", () => {
  test("no front: the origins are Bun.serve itself, and nothing crosses a link", async () => {
    const { stub, api2, timed } = await emulator({});
    const drive = stub.addDrive(MiB, {}, imageBytes(MiB, 1));
    expect(stub.transport.link.shaped).toBe(false);
    const read = await timed(`${stub.url}drives/${drive.uuid}/read/0/1M`);
    const download = await timed(`${api2.uri}drives/${drive.uuid}/download/`);
    expect(sha(read.body)).toBe(sha(imageBytes(MiB, 1)));
    expect(sha(download.body)).toBe(sha(imageBytes(MiB, 1)));
    expect(stub.transport.link.stats).toEqual({ connections: 0, bytesUp: 0, bytesDown: 0 });
  });
});

describe("bandwidth", () => {
  test("a connection's answer is paced, keeps its Content-Length and its bytes (1.0 read, 2.0 download)", async () => {
    const rate = 4_000_000;
    const { stub, api2, timed } = await emulator({ connBandwidth: rate });
    const bytes = imageBytes(2 * MiB, 2);
    const drive = stub.addDrive(bytes.length, {}, bytes);
    const read = await timed(`${stub.url}drives/${drive.uuid}/read/0/2M`);
    expect(read.response.status).toBe(200);
    expect(read.response.headers.get("content-length")).toBe(String(bytes.length));
    expect(read.response.headers.get("transfer-encoding")).toBeNull();
    expect(sha(read.body)).toBe(sha(bytes));
    expect(read.ms).toBeGreaterThanOrEqual((bytes.length / rate) * 1000);
    // the download's redirect target is the second origin, behind its own front
    const download = await timed(`${api2.uri}drives/${drive.uuid}/download/`);
    expect(download.response.status).toBe(200);
    expect(download.response.url.startsWith(api2.originUrl)).toBe(true);
    expect(download.response.headers.get("content-length")).toBe(String(bytes.length));
    expect(sha(download.body)).toBe(sha(bytes));
    expect(download.ms).toBeGreaterThanOrEqual((bytes.length / rate) * 1000);
    expect(stub.transport.link.stats.bytesDown).toBeGreaterThan(2 * bytes.length);
  });

  test("request bodies are paced too: a 1.0 write, a 2.0 single POST, a 2.0 chunk", async () => {
    const rate = 4_000_000;
    const { stub, api2, timed } = await emulator({ connBandwidth: rate });
    const bytes = imageBytes(MiB + 17, 3);
    const least = (bytes.length / rate) * 1000;
    const drive = stub.addDrive(bytes.length);
    const write = await timed(`${stub.url}drives/${drive.uuid}/write/0`, { method: "POST", body: bytes });
    expect(write.response.status).toBe(204);
    expect(write.ms).toBeGreaterThanOrEqual(least);
    expect(sha(stub.readDrive(drive.uuid))).toBe(sha(bytes));

    const post = await timed(`${api2.uri}drives/upload/x`, { method: "POST", body: bytes });
    expect(post.response.status).toBe(200);
    expect(post.ms).toBeGreaterThanOrEqual(least);
    const posted = (JSON.parse(new TextDecoder().decode(post.body)) as { uuid: string }).uuid;
    expect(sha(stub.readDrive(posted))).toBe(sha(bytes));

    const target = api2.chunked.begin("chunked", bytes.length);
    const linkAnswer = await timed(`${api2.uri}drives/${target.uuid}/action/?do=upload_chunk`, {
      method: "POST",
      body: JSON.stringify({ chunk_number: 0, chunk_size: bytes.length }),
    });
    const { link } = JSON.parse(new TextDecoder().decode(linkAnswer.body)) as { link: string };
    const chunk = await timed(new URL(link, stub.url).href, { method: "POST", body: bytes });
    expect(chunk.response.status).toBe(200);
    expect(chunk.ms).toBeGreaterThanOrEqual(least);
    expect(sha(stub.readDrive(target.uuid, 0, bytes.length))).toBe(sha(bytes));
  });

  test("the shared bandwidth is shared by connections to both origins", async () => {
    const rate = 4_000_000;
    const { stub, api2, timed } = await emulator({ bandwidth: rate });
    const bytes = imageBytes(MiB, 4);
    const drive = stub.addDrive(bytes.length, {}, bytes);
    // alone, each would take 262 ms; together they share the one link
    const started = performance.now();
    const [read, download] = await Promise.all([
      timed(`${stub.url}drives/${drive.uuid}/read/0/1M`),
      timed(`${api2.uri}drives/${drive.uuid}/download/`),
    ]);
    const both = performance.now() - started;
    expect(sha(read.body)).toBe(sha(bytes));
    expect(sha(download.body)).toBe(sha(bytes));
    expect(both).toBeGreaterThanOrEqual(((2 * bytes.length) / rate) * 1000);
    expect(stub.transport.link.stats.connections).toBeGreaterThanOrEqual(2);
  });
});

describe("connect cost and round trip", () => {
  test("a new connection pays the connect cost once; requests reusing it do not count again", async () => {
    const { stub, api2, timed } = await emulator({ connectCostMs: 300 });
    const drive = stub.addDrive(MiB, {}, imageBytes(MiB, 5));
    const first = await timed(`${stub.url}drives/${drive.uuid}/info`);
    expect(first.response.status).toBe(200);
    expect(first.ms).toBeGreaterThanOrEqual(300);
    for (let i = 0; i < 3; i++) expect((await timed(`${stub.url}drives/${drive.uuid}/info`)).response.status).toBe(200);
    expect(stub.transport.link.stats.connections).toBe(1);
    // the download reuses the API connection for its 302, then opens one to the second origin
    const download = await timed(`${api2.uri}drives/${drive.uuid}/download/`);
    expect(sha(download.body)).toBe(sha(imageBytes(MiB, 5)));
    expect(download.ms).toBeGreaterThanOrEqual(300);
    expect(stub.transport.link.stats.connections).toBe(2);
  });

  test("each answer costs one round trip, added to the time its body takes", async () => {
    const rate = 4_000_000;
    const { stub, timed } = await emulator({ rttMs: 150, connBandwidth: rate });
    const drive = stub.addDrive(MiB);
    for (let i = 0; i < 2; i++)
      expect((await timed(`${stub.url}drives/${drive.uuid}/info`)).ms).toBeGreaterThanOrEqual(150);
    const write = await timed(`${stub.url}drives/${drive.uuid}/write/0`, { method: "POST", body: imageBytes(MiB, 6) });
    expect(write.response.status).toBe(204);
    expect(write.ms).toBeGreaterThanOrEqual(150 + (MiB / rate) * 1000);
  });

  test("TLS passes through the front: its handshake pays the connect cost, the bytes arrive unchanged", async () => {
    const { stub, api2, timed } = await emulator({ tls: true, connectCostMs: 200, bandwidth: 8_000_000 });
    expect(stub.url).toStartWith("https://127.0.0.1:");
    expect(api2.originUrl).toStartWith("https://127.0.0.1:");
    const bytes = imageBytes(MiB, 7);
    const drive = stub.addDrive(bytes.length, {}, bytes);
    const read = await timed(`${stub.url}drives/${drive.uuid}/read/0/1M`);
    expect(read.ms).toBeGreaterThanOrEqual(200 + (MiB / 8_000_000) * 1000);
    expect(read.response.headers.get("content-length")).toBe(String(MiB));
    expect(sha(read.body)).toBe(sha(bytes));
    const download = await timed(`${api2.uri}drives/${drive.uuid}/download/`);
    expect(sha(download.body)).toBe(sha(bytes));
    expect(stub.transport.link.stats.connections).toBe(2);
  });
});

describe("connections ending", () => {
  test("a connection the origin drops is dropped for the client; a restart keeps the port", async () => {
    const { stub, timed } = await emulator({ connectCostMs: 20, bandwidth: 50_000_000 });
    const drive = stub.addDrive(MiB, {}, imageBytes(MiB, 8));
    stub.fault({ path: /\/read\//, times: 1, action: { reset: true } });
    const dropped = await timed(`${stub.url}drives/${drive.uuid}/read/0/1M`).catch((error: Error) => error);
    expect(dropped).toBeInstanceOf(Error);
    const url = stub.url;
    await stub.restart();
    expect(stub.url).toBe(url);
    const kept = stub.addDrive(MiB, {}, imageBytes(MiB, 9));
    const read = await timed(`${stub.url}drives/${kept.uuid}/read/0/1M`);
    expect(sha(read.body)).toBe(sha(imageBytes(MiB, 9)));
  });
});
