// The emulator's API 2.0 chunked upload, spoken to directly: initupload, one-time links, 416 for
// chunks held, the chunk grid (the last chunk larger), expiry, auth, JSON errors, 418.
import { afterAll, afterEach, beforeAll, expect, test } from "bun:test";
import { startStub, type DriveStub } from "../../emulator/server.ts";
import { installApi2, type Api2Stub } from "../../emulator/api2.ts";
import { imageBytes, sameBytes } from "../images.ts";

const CHUNK = 4096;
let stub: DriveStub;
let api2: Api2Stub;
let auth: string;

beforeAll(async () => {
  stub = await startStub();
  api2 = await installApi2(stub);
  auth = `Basic ${Buffer.from(`${stub.user}:${stub.secret}`).toString("base64")}`;
});
afterAll(async () => {
  api2.stop();
  await stub.stop();
});
afterEach(() => {
  stub.faults.length = 0;
  api2.chunked.options.roundToKiB = undefined;
  api2.chunked.options.now = undefined;
});

const post = (path: string, body: unknown, withAuth = true) =>
  fetch(`${api2.uri}${path}`, {
    method: "POST",
    body: JSON.stringify(body),
    headers: { "content-type": "application/json", ...(withAuth ? { authorization: auth } : {}) },
  });

async function init(size: number): Promise<string> {
  const response = await post("initupload/", { name: "disk", size, media: "disk" });
  expect(response.status).toBeLessThan(300);
  return ((await response.json()) as { objects: Array<{ uuid: string }> }).objects[0]!.uuid;
}

async function link(uuid: string, chunk: number, chunkSize = CHUNK): Promise<Response> {
  return post(`drives/${uuid}/action/?do=upload_chunk`, { chunk_number: chunk, chunk_size: chunkSize });
}

async function sendChunk(uuid: string, chunk: number, bytes: Uint8Array): Promise<Response> {
  const answer = (await (await link(uuid, chunk)).json()) as { link: string };
  return fetch(new URL(answer.link, stub.url), {
    method: "POST",
    body: bytes,
    headers: { "content-type": "application/octet-stream" },
  });
}

test("initupload needs credentials: 401 with a JSON error list and X-REQUEST-ID", async () => {
  const response = await post("initupload/", { name: "x", size: 10 }, false);
  expect(response.status).toBe(401);
  expect(response.headers.get("x-request-id")).toBeTruthy();
  const body = (await response.json()) as Array<{ error_type: string }>;
  expect(body[0]?.error_type).toBe("auth");
});

test("initupload makes a drive in status uploading, of exactly the size declared by default", async () => {
  const uuid = await init(5000);
  const drive = stub.drives.get(uuid)!;
  expect(drive.status).toBe("uploading");
  expect(drive.size).toBe(5000);
  expect(drive.fields.media).toBe("disk");
});

test("initupload rounds the size up to a KiB when rounding is on", async () => {
  api2.chunked.options.roundToKiB = true;
  const uuid = await init(5000);
  expect(stub.drives.get(uuid)!.size).toBe(5120);
});

test("every chunk in: the bytes land, the last chunk larger, and the drive turns unmounted", async () => {
  const size = 3 * CHUNK + 1000;
  const bytes = imageBytes(size, 3);
  const uuid = await init(size);
  for (const [index, start, end] of [
    [0, 0, CHUNK],
    [1, CHUNK, 2 * CHUNK],
    [2, 2 * CHUNK, size],
  ] as const) {
    expect(stub.drives.get(uuid)!.status).toBe("uploading");
    expect((await sendChunk(uuid, index, bytes.subarray(start, end))).status).toBe(200);
  }
  expect(stub.drives.get(uuid)!.status).toBe("unmounted");
  expect(sameBytes(stub.readDrive(uuid, 0, size), bytes)).toBe(true);
});

test("a chunk already held answers 416", async () => {
  const uuid = await init(2 * CHUNK);
  expect((await sendChunk(uuid, 1, imageBytes(CHUNK, 1))).status).toBe(200);
  const again = await link(uuid, 1);
  expect(again.status).toBe(416);
  expect(again.headers.get("x-request-id")).toBeTruthy();
});

test("a chunk of the wrong length is refused with 400 and a JSON error", async () => {
  const uuid = await init(3 * CHUNK);
  const response = await sendChunk(uuid, 0, imageBytes(CHUNK - 1, 1));
  expect(response.status).toBe(400);
  const body = (await response.json()) as Array<{ error_message: string }>;
  expect(body[0]?.error_message).toContain(`exactly ${CHUNK} bytes`);
  expect(api2.chunked.held(uuid)).toEqual([]);
});

test("the link needs no credentials and serves once", async () => {
  const uuid = await init(2 * CHUNK);
  const { link: path } = (await (await link(uuid, 0)).json()) as { link: string };
  const first = await fetch(new URL(path, stub.url), { method: "POST", body: imageBytes(CHUNK, 2) });
  expect(first.status).toBe(200);
  const second = await fetch(new URL(path, stub.url), { method: "POST", body: imageBytes(CHUNK, 2) });
  expect(second.status).toBe(404);
});

test("a link used after its time answers 410", async () => {
  let now = 1_000_000;
  api2.chunked.options.now = () => now;
  const uuid = await init(2 * CHUNK);
  const { link: path } = (await (await link(uuid, 0)).json()) as { link: string };
  now += 5 * 60_000 + 1;
  const response = await fetch(new URL(path, stub.url), { method: "POST", body: imageBytes(CHUNK, 2) });
  expect(response.status).toBe(410);
});

test("chunk numbers outside the grid and a changed chunk_size are refused", async () => {
  const uuid = await init(3 * CHUNK + 10);
  expect((await link(uuid, 3)).status).toBe(400);
  expect((await link(uuid, 0)).status).toBe(200);
  expect((await link(uuid, 0, 2 * CHUNK)).status).toBe(400);
});

test("faults are injected on the chunk calls like on any other", async () => {
  const uuid = await init(CHUNK);
  stub.fault({ method: "POST", path: /\/action\/$/, times: 1, action: { status: 503, kind: "backend" } });
  expect((await link(uuid, 0)).status).toBe(503);
  expect((await link(uuid, 0)).status).toBe(200);
});

test("anything unexpected gets 418", async () => {
  const response = await post("drives/not-a-uuid/action/?do=upload_chunk", {});
  expect(response.status).toBe(418);
});
