// One API 1.0 read over the run's own sockets, against a raw TCP server that writes each answer
// byte for byte: the same errors as a read through fetch (a cut body, a short one, a long one, the
// API's own error), a stall as "nothing moved", and an answer in another form left to fetch.
import { afterAll, afterEach, beforeAll, expect, test } from "bun:test";
import type { TCPSocketListener } from "bun";
import { SocketReads } from "../../lib/api1/socket-read.ts";
import { ApiError } from "../../lib/errors.ts";
import { HttpClient } from "../../lib/http.ts";
import { SocketPool } from "../../lib/socket-pool.ts";

const DRIVE = "0a83d5ee-d933-41f3-9440-1608a88dbfff";
/** What the server writes back for the next read: the bytes, then whether it closes or leaves the connection hanging. */
let reply: { bytes: Uint8Array | string; after?: "close" | "hang" } = { bytes: "" };
let seen: string[] = [];
let server: TCPSocketListener<undefined>;
let pool: SocketPool;

beforeAll(() => {
  server = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      data(socket, data) {
        seen.push(data.toString("latin1"));
        socket.write(reply.bytes);
        if (reply.after === "close") socket.end();
      },
    },
  });
});
afterAll(() => server.stop(true));
afterEach(() => {
  pool?.close();
  seen = [];
});

function reads(timeoutMs = 10_000): SocketReads {
  const client = new HttpClient(new URL(`http://127.0.0.1:${server.port}/`), {
    credentials: { user: "user", secret: "secret" },
  });
  pool = new SocketPool();
  return new SocketReads(client, { sockets: pool, timeoutMs });
}

const head = (status: string, length: number, extra = "") =>
  `HTTP/1.1 ${status}\r\nContent-Length: ${length}\r\n${extra}\r\n`;

async function failure(promise: Promise<unknown>): Promise<ApiError> {
  const error = await promise.then(
    () => undefined,
    (error: unknown) => error,
  );
  expect(error).toBeInstanceOf(ApiError);
  return error as ApiError;
}

test("a whole answer fills the buffer; the request carries Basic auth and nothing of fetch's", async () => {
  const bytes = new Uint8Array(4096).map((_, i) => i & 0xff);
  reply = { bytes: Buffer.concat([Buffer.from(head("200 OK", 4096)), bytes]) };
  const buffer = new Uint8Array(8192);
  expect(await reads().readInto(DRIVE, 8192, 4096, buffer)).toBe(true);
  expect(Buffer.from(buffer.subarray(0, 4096)).equals(Buffer.from(bytes))).toBe(true);
  expect(seen[0]).toBe(
    `GET /drives/${DRIVE}/read/8192/4096 HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\nauthorization: Basic ${btoa("user:secret")}\r\n\r\n`,
  );
});

test("a body cut mid-way: a network error that may pass, saying how much came", async () => {
  reply = { bytes: Buffer.concat([Buffer.from(head("200 OK", 4096)), new Uint8Array(1000)]), after: "close" };
  const error = await failure(reads().readInto(DRIVE, 0, 4096, new Uint8Array(4096)));
  expect(error.kind).toBe("network");
  expect(error.retryable).toBe(true);
  expect(error.message).toMatch(/answer cut after 1000 of 4096 bytes/);
});

test("a whole answer shorter than asked: a short answer that may pass", async () => {
  reply = { bytes: Buffer.concat([Buffer.from(head("200 OK", 1000)), new Uint8Array(1000)]) };
  const error = await failure(reads().readInto(DRIVE, 0, 4096, new Uint8Array(4096)));
  expect(error.kind).toBe("protocol");
  expect(error.retryable).toBe(true);
  expect(error.message).toMatch(/short answer: 1000 of 4096 bytes/);
});

test("an answer longer than asked: never tried again, nothing of it read", async () => {
  reply = { bytes: Buffer.concat([Buffer.from(head("200 OK", 5000)), new Uint8Array(5000).fill(9)]) };
  const buffer = new Uint8Array(4096);
  const error = await failure(reads().readInto(DRIVE, 0, 4096, buffer));
  expect(error.kind).toBe("protocol");
  expect(error.retryable).toBe(false);
  expect(error.message).toMatch(/the server sent more than the 4096 bytes asked/);
  expect(buffer.every((byte) => byte === 0)).toBe(true);
});

test("the API's own error comes through as through fetch (its X-Elastic-Error and message)", async () => {
  const message = "Drive could not be found";
  reply = { bytes: `${head("404 Not Found", message.length, "X-Elastic-Error: missing\r\n")}${message}` };
  const error = await failure(reads().readInto(DRIVE, 0, 4096, new Uint8Array(4096)));
  expect(error.status).toBe(404);
  expect(error.kind).toBe("missing");
  expect(error.message).toContain(message);
});

test("a redirect: left to fetch, and so is every later read", async () => {
  reply = { bytes: `${head("302 Found", 0, "Location: /elsewhere\r\n")}` };
  const socketReads = reads();
  expect(await socketReads.readInto(DRIVE, 0, 4096, new Uint8Array(4096))).toBe(false);
  expect(socketReads.fellBack).toBe("a redirect");
  expect(await socketReads.readInto(DRIVE, 4096, 4096, new Uint8Array(4096))).toBe(false);
  expect(seen).toHaveLength(1);
});

test("an answer that stops coming: a timeout after --timeout without progress", async () => {
  reply = { bytes: Buffer.concat([Buffer.from(head("200 OK", 4096)), new Uint8Array(100)]), after: "hang" };
  const error = await failure(reads(1000).readInto(DRIVE, 0, 4096, new Uint8Array(4096)));
  expect(error.kind).toBe("timeout");
  expect(error.message).toMatch(/nothing moved for 1 s/);
});
