// The GET behind the API 1.0 reads over the run's own sockets: a plain body straight into the
// caller's buffer, every other form left to fetch, errors gathered, connections kept only when
// the answer ended cleanly. A raw TCP server writes the answers byte for byte.
import { afterAll, afterEach, beforeAll, expect, test } from "bun:test";
import type { Socket, TCPSocketListener } from "bun";
import { HeldBody, HOLD_AHEAD, socketGet, type SocketGetAnswer } from "../lib/socket-get.ts";
import { SocketPool } from "../lib/socket-pool.ts";

interface Reply {
  /** The bytes written back. */
  bytes: Uint8Array | string;
  /** Close the connection after them. */
  close?: boolean;
}

/** Path -> what to answer it. */
const replies = new Map<string, (request: string) => Reply>();
let connections = 0;
let requests: string[] = [];
/** Called when the server's side of a connection closes. */
let onServerClose: (() => void) | undefined;
let server: TCPSocketListener<{ pending: string }>;

function plain(body: Uint8Array, extra = ""): Uint8Array {
  const head = `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n${extra}\r\n`;
  return Buffer.concat([Buffer.from(head), body]);
}

function pattern(size: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = (i * 131 + seed + (i >>> 9)) & 0xff;
  return bytes;
}

beforeAll(() => {
  server = Bun.listen<{ pending: string }>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(socket) {
        connections++;
        socket.data = { pending: "" };
      },
      close() {
        onServerClose?.();
      },
      data(socket: Socket<{ pending: string }>, data) {
        socket.data.pending += data.toString("latin1");
        // bounded: each turn takes one whole request head off the input
        for (
          let end = socket.data.pending.indexOf("\r\n\r\n");
          end !== -1;
          end = socket.data.pending.indexOf("\r\n\r\n")
        ) {
          const request = socket.data.pending.slice(0, end);
          socket.data.pending = socket.data.pending.slice(end + 4);
          requests.push(request);
          const path = request.split(" ")[1] ?? "";
          const reply = replies.get(path)?.(request) ?? {
            bytes: "HTTP/1.1 418 I'm a teapot\r\nContent-Length: 0\r\n\r\n",
          };
          socket.write(reply.bytes);
          if (reply.close) socket.end();
        }
      },
    },
  });
});

afterAll(() => server.stop(true));
afterEach(() => {
  onServerClose = undefined;
  replies.clear();
  connections = 0;
  requests = [];
});

const url = (path: string) => new URL(`http://127.0.0.1:${server.port}${path}`);

async function get(path: string, into: Uint8Array, pool?: SocketPool): Promise<SocketGetAnswer> {
  return socketGet({ url: url(path), headers: { authorization: "Basic eDp5" }, into, pool });
}

test("a plain body goes into the buffer whole, and the connection serves the next GET", async () => {
  const first = pattern(300_000, 1);
  const second = pattern(200_000, 2);
  replies.set("/a", () => ({ bytes: plain(first) }));
  replies.set("/b", () => ({ bytes: plain(second) }));
  const pool = new SocketPool();
  try {
    const into = new Uint8Array(300_000);
    const a = await get("/a", into, pool);
    expect(a).toMatchObject({ kind: "body", status: 200, length: 300_000 });
    expect(Buffer.from(into).equals(Buffer.from(first))).toBe(true);
    const b = await get("/b", into.subarray(0, 200_000), pool);
    expect(b).toMatchObject({ kind: "body", length: 200_000 });
    expect(Buffer.from(into.subarray(0, 200_000)).equals(Buffer.from(second))).toBe(true);
    expect(connections).toBe(1);
    expect(pool.reused).toBe(1);
    // the request as sent: origin form, Host, the caller's headers
    expect(requests[0]).toMatch(/^GET \/a HTTP\/1\.1\r\nHost: 127\.0\.0\.1:\d+\r\nauthorization: Basic eDp5$/);
  } finally {
    pool.close();
  }
});

test("progress counts the body's bytes as they come; a body shorter than the buffer says its length", async () => {
  replies.set("/short", () => ({ bytes: plain(pattern(1000, 3)) }));
  const seen: number[] = [];
  const answer = await socketGet({
    url: url("/short"),
    headers: {},
    into: new Uint8Array(4096),
    onProgress: (got) => seen.push(got),
  });
  expect(answer).toMatchObject({ kind: "body", length: 1000 });
  expect(seen.at(-1)).toBe(1000);
});

test("a body longer than the buffer is not read (its length told) and its connection is not kept", async () => {
  replies.set("/long", () => ({ bytes: plain(pattern(5000, 4)) }));
  replies.set("/next", () => ({ bytes: plain(pattern(10, 5)) }));
  const pool = new SocketPool();
  try {
    const into = new Uint8Array(4096);
    expect(await get("/long", into, pool)).toMatchObject({ kind: "body", length: 5000 });
    expect(into.every((byte) => byte === 0)).toBe(true);
    await get("/next", into, pool);
    expect(connections).toBe(2);
  } finally {
    pool.close();
  }
});

test("bytes after the body's end: the answer stands, the connection is not kept", async () => {
  replies.set("/extra", () => ({ bytes: Buffer.concat([plain(pattern(100, 6)), Buffer.from("garbage")]) }));
  replies.set("/next", () => ({ bytes: plain(pattern(10, 7)) }));
  const pool = new SocketPool();
  try {
    expect(await get("/extra", new Uint8Array(100), pool)).toMatchObject({ kind: "body", length: 100 });
    await get("/next", new Uint8Array(100), pool);
    expect(connections).toBe(2);
  } finally {
    pool.close();
  }
});

test("a redirect, a chunked body, a compressed one and one of no stated length are left to fetch", async () => {
  replies.set("/moved", () => ({ bytes: "HTTP/1.1 302 Found\r\nLocation: /a\r\nContent-Length: 0\r\n\r\n" }));
  replies.set("/chunked", () => ({
    bytes: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
  }));
  replies.set("/gzip", () => ({
    bytes: Buffer.concat([
      Buffer.from("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 23\r\n\r\n"),
      Bun.gzipSync(new Uint8Array(3)),
    ]),
  }));
  replies.set("/unsized", () => ({ bytes: "HTTP/1.1 200 OK\r\n\r\nabc", close: true }));
  const into = new Uint8Array(64);
  expect(await get("/moved", into)).toMatchObject({ kind: "elsewhere", status: 302, why: "a redirect" });
  expect(await get("/chunked", into)).toMatchObject({ kind: "elsewhere", why: "a body sent as chunked" });
  expect(await get("/gzip", into)).toMatchObject({ kind: "elsewhere", why: "a body in gzip" });
  expect(await get("/unsized", into)).toMatchObject({ kind: "elsewhere", why: "a body of no stated length" });
  expect(into.every((byte) => byte === 0)).toBe(true);
});

test("an error answer is gathered, chunked or not, with its headers; a 100 Continue before it is skipped", async () => {
  replies.set("/missing", () => ({
    bytes:
      "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nX-Elastic-Error: missing\r\nContent-Length: 15\r\n\r\nno such drive\r\n",
  }));
  replies.set("/busy", () => ({
    bytes: "HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbusy\r\n0\r\n\r\n",
  }));
  const pool = new SocketPool();
  try {
    const missing = await get("/missing", new Uint8Array(64), pool);
    expect(missing).toMatchObject({ kind: "answer", status: 404, body: "no such drive\r\n" });
    expect(missing.headers.get("x-elastic-error")).toBe("missing");
    expect(await get("/busy", new Uint8Array(64), pool)).toMatchObject({ kind: "answer", status: 503, body: "busy" });
    // both read to their end: one connection served both
    expect(connections).toBe(1);
  } finally {
    pool.close();
  }
});

test("a connection cut mid-body rejects, progress having told how much came", async () => {
  replies.set("/cut", () => ({
    bytes: Buffer.concat([Buffer.from("HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n"), pattern(1200, 8)]),
    close: true,
  }));
  let got = 0;
  const into = new Uint8Array(5000);
  const failed = socketGet({ url: url("/cut"), headers: {}, into, onProgress: (n) => (got = n) });
  await expect(failed).rejects.toThrow(/ended mid-body/);
  expect(got).toBe(1200);
});

test("a kept connection the server closed after its answer: the next GET goes on a new one, whole", async () => {
  const body = pattern(500, 9);
  replies.set("/once", () => ({ bytes: plain(body, "Connection: keep-alive\r\n"), close: true }));
  const pool = new SocketPool();
  try {
    const into = new Uint8Array(500);
    // the server ends the connection after the answer, but it said nothing of closing: kept, then found dead
    await get("/once", into, pool);
    into.fill(0);
    const again = await get("/once", into, pool);
    expect(again).toMatchObject({ kind: "body", length: 500 });
    expect(Buffer.from(into).equals(Buffer.from(body))).toBe(true);
  } finally {
    pool.close();
  }
});

test("a header holding a line break is refused before any connection opens", async () => {
  const failed = socketGet({ url: url("/a"), headers: { "x-evil": "a\r\nInjected: yes" }, into: new Uint8Array(8) });
  await expect(failed).rejects.toThrow(/line break/);
  expect(connections).toBe(0);
});

test("HeldBody keeps what comes before the buffer in order (copies), and pauses once when the limit waits", () => {
  let pauses = 0;
  const held = new HeldBody(10, () => pauses++);
  const piece = new Uint8Array([1, 2, 3, 4, 5, 6]);
  held.hold(piece);
  // the socket's buffer is reused after the callback: what was held must not change with it
  piece.fill(9);
  held.hold(new Uint8Array(0));
  expect(pauses).toBe(0);
  held.hold(new Uint8Array([7, 8, 9, 10]));
  expect({ bytes: held.bytes, paused: held.paused, pauses }).toEqual({ bytes: 10, paused: true, pauses: 1 });
  // pieces already on their way still come after the pause, and are kept
  held.hold(new Uint8Array([11]));
  expect(pauses).toBe(1);
  expect([...Buffer.concat(held.release())]).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
  expect(held.bytes).toBe(0);
  expect(held.release()).toEqual([]);
});

test("a GET asked before its buffer: the whole answer held while the server closes, then read into the buffer when it comes", async () => {
  const body = pattern(70_000, 10);
  replies.set("/early", () => ({ bytes: plain(body), close: true }));
  const closed = new Promise<void>((resolve) => {
    onServerClose = resolve;
  });
  let give!: (buffer: Uint8Array) => void;
  const buffer = new Promise<Uint8Array>((resolve) => {
    give = resolve;
  });
  let status: number | undefined;
  const answer = socketGet({
    url: url("/early"),
    headers: {},
    into: { length: body.length, buffer },
    onBody: (s) => {
      status = s;
    },
  });
  await closed;
  const into = new Uint8Array(body.length + 10);
  give(into);
  expect(await answer).toMatchObject({ kind: "body", status: 200, length: body.length });
  expect(status).toBe(200);
  expect(Buffer.from(into.subarray(0, body.length)).equals(Buffer.from(body))).toBe(true);
  // only the length asked for is the buffer's: nothing past it is touched
  expect(into.subarray(body.length).every((byte) => byte === 0)).toBe(true);
});

test("a GET asked before its buffer, far longer than what is held: paused once HOLD_AHEAD bytes wait, the body whole once the buffer comes", async () => {
  const SIZE = 8 * HOLD_AHEAD;
  const body = pattern(SIZE, 11);
  // writes as the socket takes them (again on drain)
  const pump = (socket: Socket<{ at: number }>) => {
    // bounded: each turn writes more of the body, or stops when the socket takes no more
    while (socket.data.at < SIZE) {
      socket.data.at += Math.max(0, socket.write(body.subarray(socket.data.at)));
      if (socket.data.at < SIZE) return;
    }
  };
  const streaming = Bun.listen<{ at: number }>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(socket) {
        socket.data = { at: 0 };
      },
      data(socket) {
        socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${SIZE}\r\n\r\n`);
        pump(socket);
      },
      drain: pump,
    },
  });
  try {
    let give!: (buffer: Uint8Array) => void;
    const buffer = new Promise<Uint8Array>((resolve) => {
      give = resolve;
    });
    let paused!: (bytes: number) => void;
    const pausedAt = new Promise<number>((resolve) => {
      paused = resolve;
    });
    let progress = 0;
    const answer = socketGet({
      url: new URL(`http://127.0.0.1:${streaming.port}/big`),
      headers: {},
      into: { length: SIZE, buffer },
      onProgress: (got) => {
        progress = got;
      },
      onHeld: (bytes, isPaused) => {
        if (isPaused) paused(bytes);
      },
    });
    expect(await pausedAt).toBeGreaterThanOrEqual(HOLD_AHEAD);
    // nothing went anywhere but the held pieces before the buffer came
    expect(progress).toBe(0);
    const into = new Uint8Array(SIZE);
    give(into);
    expect(await answer).toMatchObject({ kind: "body", length: SIZE });
    expect(progress).toBe(SIZE);
    expect(Buffer.from(into).equals(Buffer.from(body))).toBe(true);
  } finally {
    streaming.stop(true);
  }
});
