// The streamed POST behind the API 2.0 upload: exact bytes, Content-Length, early answers, https.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { streamPost } from "../lib/socket-post.ts";
import { parseAnswer, preconnect } from "../lib/wire.ts";
import { SocketPool } from "../lib/socket-pool.ts";
import { waitFor } from "./faults/support.ts";
import { makeCertificates, type Certificates } from "./certificates.ts";

function pattern(size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = (i * 31 + (i >>> 11)) & 0xff;
  return bytes;
}

const filler = (bytes: Uint8Array) => (buffer: Uint8Array, offset: number, length: number) => {
  const piece = bytes.subarray(offset, offset + length);
  buffer.set(piece);
  return piece.length;
};

/** A server that hashes what it receives and answers what it saw. */
function echoServer(tls?: { key: string; cert: string }) {
  return Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    maxRequestBodySize: 2 ** 40,
    tls,
    async fetch(request) {
      if (new URL(request.url).pathname === "/early")
        return new Response("nope\n", { status: 401, headers: { "x-elastic-error": "auth" } });
      const hasher = new Bun.CryptoHasher("sha256");
      let length = 0;
      for await (const chunk of request.body ?? new ReadableStream<Uint8Array>()) {
        hasher.update(chunk);
        length += chunk.length;
      }
      return Response.json({
        length,
        sha: hasher.digest("hex"),
        contentLength: request.headers.get("content-length"),
        transferEncoding: request.headers.get("transfer-encoding"),
        custom: request.headers.get("x-test"),
      });
    },
  });
}

describe("streamPost over plain http", () => {
  const server = echoServer();
  afterAll(() => server.stop(true));

  test("sends exactly the bytes with Content-Length, in pieces, and reports progress", async () => {
    for (const size of [1, 4095, 1024 * 1024 + 7, 5 * 1024 * 1024 + 3]) {
      const bytes = pattern(size);
      const seen: number[] = [];
      const answer = await streamPost({
        url: new URL(`http://127.0.0.1:${server.port}/drives/upload/x`),
        headers: { "x-test": "yes" },
        size,
        pieceSize: 256 * 1024,
        fill: filler(bytes),
        onProgress: (sent) => seen.push(sent),
      });
      expect(answer.status).toBe(200);
      expect(answer.sent).toBe(size);
      const body = JSON.parse(answer.body);
      expect(body).toEqual({
        length: size,
        sha: new Bun.CryptoHasher("sha256").update(bytes).digest("hex"),
        contentLength: String(size),
        transferEncoding: null,
        custom: "yes",
      });
      expect(seen.at(-1)).toBe(size);
      expect(seen).toEqual([...seen].sort((a, b) => a - b));
    }
  });

  test("a body given as bytes is sent from them as it is (no fill), in pieces, exactly", async () => {
    const bytes = pattern(5 * 1024 * 1024 + 17);
    const seen: number[] = [];
    const answer = await streamPost({
      url: new URL(`http://127.0.0.1:${server.port}/`),
      headers: {},
      size: bytes.length,
      bytes,
      pieceSize: 1024 * 1024,
      onProgress: (sent) => seen.push(sent),
    });
    expect(answer.sent).toBe(bytes.length);
    expect(JSON.parse(answer.body)).toMatchObject({
      length: bytes.length,
      sha: new Bun.CryptoHasher("sha256").update(bytes).digest("hex"),
    });
    expect(seen).toEqual([1, 2, 3, 4, 5].map((n) => n * 1024 * 1024).concat(bytes.length));
  });

  test("an early answer (the server did not read the body) is returned, not a network error", async () => {
    const answer = await streamPost({
      url: new URL(`http://127.0.0.1:${server.port}/early`),
      headers: {},
      size: 64 * 1024 * 1024,
      fill: (buffer, _offset, length) => {
        buffer.fill(1, 0, length);
        return length;
      },
    });
    expect(answer.status).toBe(401);
    expect(answer.headers.get("x-elastic-error")).toBe("auth");
    expect(answer.body).toBe("nope\n");
  });

  test("connection refused is a network error with its code", async () => {
    const closed = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response() });
    const port = closed.port;
    closed.stop(true);
    const error = await streamPost({
      url: new URL(`http://127.0.0.1:${port}/`),
      headers: {},
      size: 1,
      fill: () => 1,
    }).catch((e) => e);
    expect((error as { code?: string }).code).toBe("ECONNREFUSED");
  });

  test("an abort stops the upload at once", async () => {
    const controller = new AbortController();
    const error = await streamPost({
      url: new URL(`http://127.0.0.1:${server.port}/slow`),
      headers: {},
      size: 2 ** 40,
      signal: controller.signal,
      fill: (buffer, offset, length) => {
        if (offset > 8 * 1024 * 1024) controller.abort();
        buffer.fill(0, 0, length);
        return length;
      },
    }).catch((e) => e);
    expect((error as Error).name).toBe("AbortError");
  });

  test("a header holding a line break is refused", async () => {
    const error = await streamPost({
      url: new URL(`http://127.0.0.1:${server.port}/`),
      headers: { "x-test": "a\r\nx-injected: 1" },
      size: 1,
      fill: () => 1,
    }).catch((e) => e);
    expect((error as Error).message).toContain("line break");
  });
});

test("preconnect opens connections ahead, and the POSTs after it go out on them, opening none", async () => {
  let accepted = 0;
  const server = echoServer();
  // a front that counts the connections the server gets
  const front = Bun.listen<{ upstream?: Promise<Bun.Socket> }>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(socket) {
        accepted++;
        socket.data = {
          upstream: Bun.connect({
            hostname: "127.0.0.1",
            port: server.port as number,
            socket: {
              data: (_up, data) => void socket.write(data),
              close: () => void socket.end(),
              error() {},
            },
          }),
        };
      },
      async data(socket, data) {
        (await socket.data.upstream)?.write(data);
      },
      error() {},
    },
  });
  const pool = new SocketPool();
  try {
    const url = new URL(`http://127.0.0.1:${front.port}/upload/chunk/x`);
    preconnect(url, pool, 3);
    await waitFor(() => pool.opened === 3, "three connections opened ahead");
    expect([pool.opened, accepted]).toEqual([3, 3]);
    const bytes = pattern(100_000);
    const answers = await Promise.all(
      [0, 1, 2].map(() => streamPost({ url, headers: {}, size: bytes.length, fill: filler(bytes), pool })),
    );
    expect(answers.map((answer) => answer.status)).toEqual([200, 200, 200]);
    expect([pool.opened, pool.reused, accepted]).toEqual([3, 3, 3]);
  } finally {
    pool.close();
    front.stop(true);
    server.stop(true);
  }
});

describe("parseAnswer", () => {
  test("Content-Length, chunked, close-delimited, 100 Continue first", () => {
    const parse = (text: string, ended = true) => parseAnswer(Buffer.from(text), ended);
    expect(parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")?.body).toBe("hello");
    expect(parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", false)).toBeUndefined();
    expect(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")?.body).toBe(
      "abcde",
    );
    expect(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", false)).toBeUndefined();
    expect(parse("HTTP/1.1 201 Created\r\n\r\nuuid\n")).toMatchObject({ status: 201, body: "uuid\n" });
    expect(parse("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")).toMatchObject({
      status: 200,
      body: "ok",
    });
    expect(() => parse("garbage\r\n\r\n")).toThrow("malformed answer");
  });
});

// https needs a certificate: made with openssl when it is there (the suite skips these otherwise)
const openssl = Bun.which("openssl");
describe.skipIf(!openssl)("streamPost over https", () => {
  let certs: Certificates;
  let server: ReturnType<typeof echoServer>;

  beforeAll(() => {
    certs = makeCertificates(["localhost", "127.0.0.1"]);
    server = echoServer({ key: certs.key, cert: certs.cert });
  });

  afterAll(() => {
    server?.stop(true);
    certs?.remove();
  });

  test("a trusted certificate: the bytes arrive exactly", async () => {
    const bytes = pattern(3 * 1024 * 1024 + 11);
    for (const host of ["127.0.0.1", "localhost"]) {
      const answer = await streamPost({
        url: new URL(`https://${host}:${server.port}/drives/upload/x`),
        headers: {},
        size: bytes.length,
        fill: filler(bytes),
        ca: certs.ca,
      });
      expect(answer.status).toBe(200);
      expect(JSON.parse(answer.body)).toMatchObject({
        length: bytes.length,
        sha: new Bun.CryptoHasher("sha256").update(bytes).digest("hex"),
        transferEncoding: null,
      });
    }
  });

  test("a trusted certificate for another name is refused", async () => {
    const otherCerts = makeCertificates(["other.example"]);
    const other = echoServer({ key: otherCerts.key, cert: otherCerts.cert });
    try {
      const error = await streamPost({
        url: new URL(`https://127.0.0.1:${other.port}/drives/upload/x`),
        headers: {},
        size: 10,
        fill: (_buffer, _offset, length) => length,
        ca: otherCerts.ca,
      }).catch((e) => e);
      expect(error).toBeInstanceOf(Error);
      expect(String((error as { code?: string }).code)).toMatch(/ALTNAME|HOST|CERT/);
    } finally {
      other.stop(true);
      otherCerts.remove();
    }
  });

  test("an untrusted certificate is refused before any byte of the body is sent", async () => {
    let filled = 0;
    const error = await streamPost({
      url: new URL(`https://127.0.0.1:${server.port}/drives/upload/x`),
      headers: {},
      size: 1000,
      fill: (buffer, _offset, length) => {
        filled += length;
        buffer.fill(0, 0, length);
        return length;
      },
    }).catch((e) => e);
    expect(error).toBeInstanceOf(Error);
    expect(String((error as { code?: string }).code ?? (error as Error).message)).toMatch(
      /SELF_SIGNED|CERT|VERIFY|certificate/i,
    );
    expect(filled).toBe(0);
  });
});
