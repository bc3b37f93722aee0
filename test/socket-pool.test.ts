// The connections a run keeps open between its streamed POSTs: reused where the server allows it,
// replaced where it closed them, closed with the run.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { SocketPool, type Reusable } from "../lib/socket-pool.ts";
import { streamPost, type StreamPost } from "../lib/socket-post.ts";
import { makeCertificates, type Certificates } from "./certificates.ts";
import { Front } from "./proxy-server.ts";
import { waitFor } from "./faults/support.ts";

class FakeSocket implements Reusable {
  alive = true;
  idled = false;
  closed = false;
  idle(idle: boolean) {
    this.idled = idle;
  }
  close() {
    this.closed = true;
    this.alive = false;
  }
}

describe("SocketPool", () => {
  test("gives back the most recently kept open connection, drops closed and expired ones", async () => {
    const pool = new SocketPool<FakeSocket>({ idleMs: 50 });
    const [a, b, c] = [new FakeSocket(), new FakeSocket(), new FakeSocket()];
    pool.give("k", a);
    pool.give("k", b);
    expect(a.idled && b.idled).toBe(true);
    expect(pool.take("other")).toBeUndefined();
    expect(pool.take("k")).toBe(b);
    expect(b.idled).toBe(false);
    a.alive = false; // the server closed it while it sat idle
    expect(pool.take("k")).toBeUndefined();
    expect(a.closed).toBe(true);
    pool.give("k", c, 0); // the server keeps idle connections 0 ms
    expect(pool.take("k")).toBeUndefined();
    expect(c.closed).toBe(true);
    expect(pool.reused).toBe(1);
  });

  test("keeps at most maxIdle per destination; close() closes them and any given later", () => {
    const pool = new SocketPool<FakeSocket>({ maxIdle: 2 });
    const sockets = [new FakeSocket(), new FakeSocket(), new FakeSocket()];
    for (const socket of sockets) pool.give("k", socket);
    expect(sockets.map((socket) => socket.closed)).toEqual([true, false, false]);
    pool.close();
    expect(sockets.every((socket) => socket.closed)).toBe(true);
    const late = new FakeSocket();
    pool.give("k", late);
    expect(late.closed).toBe(true);
    const none = new SocketPool<FakeSocket>({ keepAlive: false });
    const kept = new FakeSocket();
    none.give("k", kept);
    expect(kept.closed).toBe(true);
  });
});

function pattern(size: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = (i * 31 + seed + (i >>> 9)) & 0xff;
  return bytes;
}

const sha = (bytes: Uint8Array) => new Bun.CryptoHasher("sha256").update(bytes).digest("hex");

/** A server that hashes each body and answers what it saw; `close` answers `Connection: close`. */
function echoServer(options: { close?: boolean } = {}) {
  const seen = { whole: 0 };
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(request) {
      const body = new Uint8Array(await request.arrayBuffer());
      seen.whole++;
      return Response.json(
        { length: body.length, sha: sha(body) },
        { headers: options.close ? { connection: "close" } : {} },
      );
    },
  });
  return { server, seen };
}

/** `count` POSTs one after the other (each with its own bytes), checked as they come back. */
async function postMany(url: string, count: number, extra: Partial<StreamPost>): Promise<void> {
  for (let i = 0; i < count; i++) {
    const bytes = pattern(100_000 + i, i);
    const answer = await streamPost({
      url: new URL(url),
      headers: { "content-type": "application/octet-stream" },
      size: bytes.length,
      fill: (buffer, offset, length) => {
        buffer.set(bytes.subarray(offset, offset + length));
        return length;
      },
      pieceSize: 16 * 1024,
      ...extra,
    });
    expect(answer.status).toBe(200);
    expect(answer.sent).toBe(bytes.length);
    expect(JSON.parse(answer.body)).toEqual({ length: bytes.length, sha: sha(bytes) });
  }
}

describe("streamPost with a pool", () => {
  const echo = echoServer();
  const closing = echoServer({ close: true });
  let certs: Certificates;
  beforeAll(() => {
    certs = makeCertificates(["localhost"]);
  });
  afterAll(() => {
    echo.server.stop(true);
    closing.server.stop(true);
    certs.remove();
  });

  test("20 POSTs over one kept connection (plain and TLS); without a pool, one connection each", async () => {
    for (const tls of [undefined, { key: certs.key, cert: certs.cert }]) {
      const front = new Front(echo.server.port as number, { tls });
      const url = `${tls ? "https://localhost" : "http://127.0.0.1"}:${front.port}/upload/chunk/x`;
      try {
        const pool = new SocketPool();
        await postMany(url, 20, { pool, ca: certs.ca });
        expect(front.connections).toBe(1);
        expect([pool.opened, pool.reused]).toEqual([1, 19]);
        pool.close();
        await waitFor(() => front.open === 0, "the kept connection closed with the pool");
        await postMany(url, 3, { ca: certs.ca });
        expect(front.connections).toBe(4);
      } finally {
        front.stop();
      }
    }
  });

  test("a server that answers Connection: close: a new connection for each POST, every byte arrives", async () => {
    const front = new Front(closing.server.port as number);
    try {
      const pool = new SocketPool();
      await postMany(`http://127.0.0.1:${front.port}/x`, 5, { pool });
      expect(front.connections).toBe(5);
      expect(pool.reused).toBe(0);
    } finally {
      front.stop();
    }
  });

  test("a server that closes after each answer without saying so: a POST on a connection found closed goes again once", async () => {
    const front = new Front(echo.server.port as number, { closeAfterAnswer: true });
    try {
      const pool = new SocketPool();
      const before = echo.seen.whole;
      await postMany(`http://127.0.0.1:${front.port}/x`, 10, { pool, replayable: true });
      // every POST answered once: a resend happens only where no answer came
      expect(echo.seen.whole - before).toBe(10);
      expect(front.connections).toBeGreaterThanOrEqual(10);
    } finally {
      front.stop();
    }
  });

  test("a kept connection that closes on the next request unanswered: sent again once on a new one, only when replayable", async () => {
    for (const replayable of [true, false]) {
      const server = answersOncePerConnection();
      try {
        const pool = new SocketPool();
        const post = () =>
          streamPost({
            url: new URL(`http://127.0.0.1:${server.port}/x`),
            headers: {},
            size: 1000,
            fill: (buffer, _offset, length) => {
              buffer.fill(7, 0, length);
              return length;
            },
            pool,
            replayable,
          });
        expect((await post()).status).toBe(200);
        if (replayable) {
          expect((await post()).status).toBe(200);
          // the second POST went out twice: on the kept connection (unanswered), then on a new one
          expect([server.connections, server.requests]).toEqual([2, 3]);
        } else {
          const error = await post().catch((caught) => caught);
          expect((error as Error).message).toContain("closed without an answer");
          expect([server.connections, server.requests]).toEqual([1, 2]);
        }
      } finally {
        server.stop();
      }
    }
  });
});

/** A raw HTTP server that answers the first request of each connection and closes it on the next one, unanswered. */
function answersOncePerConnection() {
  const counts = { connections: 0, requests: 0 };
  const listener = Bun.listen<{ buffer: Buffer; answered: boolean }>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(socket) {
        counts.connections++;
        socket.data = { buffer: Buffer.alloc(0), answered: false };
      },
      data(socket, data) {
        const state = socket.data;
        state.buffer = Buffer.concat([state.buffer, data]);
        const end = state.buffer.indexOf("\r\n\r\n");
        if (end === -1) return;
        const length = Number(/content-length: (\d+)/i.exec(state.buffer.subarray(0, end).toString())?.[1] ?? 0);
        if (state.buffer.length < end + 4 + length) return;
        state.buffer = state.buffer.subarray(end + 4 + length);
        counts.requests++;
        if (state.answered) socket.end();
        else socket.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        state.answered = true;
      },
    },
  });
  return {
    port: listener.port,
    get connections() {
      return counts.connections;
    },
    get requests() {
      return counts.requests;
    },
    stop: () => listener.stop(true),
  };
}
