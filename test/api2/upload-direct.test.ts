// API 2.0 --direct upload (lib/api2/upload-direct.ts): one streamed POST of the image to the direct
// host, never retried; its answer, --verify against the drive read back, and what the emulator's
// upload endpoint refuses.
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { readdirSync, readFileSync } from "node:fs";
import upload from "../../scripts/upload.ts";
import download from "../../scripts/download.ts";
import { run, spawnScript } from "../helpers.ts";
import { parseUploadAnswer } from "../../lib/api2/direct-destination.ts";
import { startStub } from "../../emulator/server.ts";
import { installApi2 } from "../../emulator/api2.ts";
import {
  api2,
  dir,
  freshFolder,
  image,
  MIN_SIZE,
  randomBytes,
  stub,
  useDirectEmulator,
  UUID_LINE,
} from "./direct-emulator.ts";

useDirectEmulator();

async function uploadBytes(bytes: Uint8Array, name = `img-${bytes.length}.raw`, extra: string[] = []) {
  const path = image(name, bytes);
  const result = await run(upload, [path, "--direct", "--quiet", ...extra], { env: api2.env });
  return { path, result, uuid: result.stdout.trim() };
}

test("upload answers: JSON string, {uuid}, {objects}, plain text; anything else is refused", () => {
  const uuid = "8f9b42b1-1c5a-4a1e-9d8a-0123456789ab";
  expect(parseUploadAnswer(uuid)).toBe(uuid);
  expect(parseUploadAnswer(`${uuid.toUpperCase()}\r\n`)).toBe(uuid);
  expect(parseUploadAnswer(JSON.stringify(uuid))).toBe(uuid);
  expect(parseUploadAnswer(JSON.stringify({ uuid }))).toBe(uuid);
  expect(parseUploadAnswer(JSON.stringify({ objects: [{ uuid }] }))).toBe(uuid);
  expect(parseUploadAnswer("")).toBeUndefined();
  expect(parseUploadAnswer("OK")).toBeUndefined();
  expect(parseUploadAnswer(`${uuid} ${uuid}`)).toBeUndefined();
  expect(parseUploadAnswer(JSON.stringify({ objects: [{ uuid }, { uuid }] }))).toBeUndefined();
});

describe("upload", () => {
  test("round trips byte-identical for sizes that are not multiples of 4096, with Content-Length and no chunked encoding", async () => {
    for (const size of [1, 4095, 4097, MIN_SIZE + 1, 3 * 1024 * 1024 + 123]) {
      stub.requests.length = 0;
      const bytes = randomBytes(size);
      const { result, uuid } = await uploadBytes(bytes);
      expect({ size, status: result.status, stderr: result.stderr }).toEqual({ size, status: 0, stderr: "" });
      expect(result.stdout).toMatch(UUID_LINE);
      const drive = stub.drives.get(uuid);
      expect(drive?.size).toBe(Math.max(size, MIN_SIZE));
      expect(Buffer.from(stub.readDrive(uuid, 0, size)).equals(Buffer.from(bytes))).toBe(true);
      const posts = stub.requests.filter((r) => r.method === "POST");
      expect(posts).toHaveLength(1);
      const post = posts[0]!;
      expect(post.path).toBe(`/api/2.0/drives/upload/img-${size}.raw`);
      expect(post.headers["content-length"]).toBe(String(size));
      expect(post.headers["transfer-encoding"]).toBeUndefined();
      expect(post.headers["content-type"]).toBe("application/octet-stream");
      expect(post.headers.authorization).toStartWith("Basic ");

      const out = await freshFolder();
      const fetched = await run(download, [uuid, "--quiet"], { env: api2.env, cwd: out });
      expect(fetched.status).toBe(0);
      expect(fetched.stdout).toBe(`${join(out, uuid)}\n`);
      const back = readFileSync(join(out, uuid));
      // padded past the image by the server's minimum drive size: the rest must be zeros
      expect(back.length).toBe(Math.max(size, MIN_SIZE));
      expect(back.subarray(0, size).equals(Buffer.from(bytes))).toBe(true);
      expect(back.subarray(size).every((byte) => byte === 0)).toBe(true);
      expect(readdirSync(out)).toEqual([uuid]);
    }
  });

  test("--verify reads the drive back, tolerating the zero padding of a small image", async () => {
    const { result, uuid } = await uploadBytes(randomBytes(10_000, 7), "small.raw", ["--verify"]);
    expect(result.status).toBe(0);
    expect(stub.drives.get(uuid)?.size).toBe(MIN_SIZE);
    expect(api2.originRequests.at(-1)?.status).toBe(200);
  });

  test("--verify notices a drive that differs from the image", async () => {
    api2.originHook = (_request, drive) => {
      const bytes = stub.readDrive(drive.uuid);
      bytes[5000] = (bytes[5000] ?? 0) ^ 0xff;
      return new Response(bytes, { headers: { "content-type": "application/octet-stream" } });
    };
    const { result } = await uploadBytes(randomBytes(20_000, 8), "bad.raw", ["--verify"]);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain("verify failed");
    expect(result.stderr).toContain("at byte 5000");
  });

  test("--verify notices non-zero bytes in the padding", async () => {
    api2.originHook = (_request, drive) => {
      const bytes = stub.readDrive(drive.uuid);
      bytes[bytes.length - 1] = 1;
      return new Response(bytes);
    };
    const { result } = await uploadBytes(randomBytes(1000, 9), "pad.raw", ["--verify"]);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain("non-zero bytes past the image's end");
  });

  test("--verbose shows the exchange with the credentials masked", async () => {
    const path = image("verbose.raw", randomBytes(3000, 6));
    const result = await run(upload, [path, "--direct", "--quiet", "--verbose", "--verify"], { env: api2.env });
    expect(result.status).toBe(0);
    expect(result.stderr).toContain("> POST http://127.0.0.1:");
    expect(result.stderr).toContain("authorization: Basic ****");
    expect(result.stderr).toContain("content-length: 3000");
    expect(result.stderr).toContain("< 200");
    expect(result.stderr).not.toContain(stub.secret);
    expect(result.stderr).not.toContain(Buffer.from(`${stub.user}:${stub.secret}`).toString("base64"));
  });

  test("a plain-text UUID answer is accepted too", async () => {
    api2.options.answer = "plain";
    const { result, uuid } = await uploadBytes(randomBytes(5000, 3), "plain.raw");
    expect(result.status).toBe(0);
    expect(stub.drives.has(uuid)).toBe(true);
  });

  test("-n NAME goes into the upload path, percent-encoded (the server ignores it, its logs show it)", async () => {
    stub.requests.length = 0;
    const { result, uuid } = await uploadBytes(randomBytes(100, 17), "named.raw", ["-n", "web 01/root?#"]);
    expect(result.status).toBe(0);
    expect(stub.requests.find((r) => r.method === "POST")?.path).toBe("/api/2.0/drives/upload/web%2001%2Froot%3F%23");
    expect(stub.drives.get(uuid)?.fields.name).toBe("web 01/root?#");
  });

  test("--json prints {drive}", async () => {
    const { result } = await uploadBytes(randomBytes(100, 4), "json.raw", ["--json"]);
    expect(result.status).toBe(0);
    expect(JSON.parse(result.stdout).drive).toMatch(/^[0-9a-f-]{36}$/);
  });

  test("progress goes to stderr with bytes, percent, rate and ETA; stdout holds only the UUID", async () => {
    const path = image("progress.raw", randomBytes(2 * 1024 * 1024, 5));
    // a slow link (about 0.7 s for the image), so the 200 ms live line shows at least once
    const slow = await startStub({ bandwidth: 3_000_000 });
    const slowApi2 = await installApi2(slow);
    const result = await run(upload, [path, "--direct"], { env: slowApi2.env, stderrIsTTY: true }).finally(async () => {
      slowApi2.stop();
      await slow.stop();
    });
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(UUID_LINE);
    expect(result.stderr).toMatch(/upload .* \/ 2\.0 MiB {2}\d+\.\d% {2}\d+\.\d MB\/s {2}ETA/);
    expect(result.stderr).toContain("done: uploaded 2.0 MiB as drive");
  });

  test("a failed upload is not retried: exit 1, says so", async () => {
    stub.requests.length = 0;
    stub.fault({
      method: "POST",
      path: /^\/api\/2\.0\/drives\/upload/,
      action: { status: 500, kind: "system", message: "disk on fire" },
    });
    const before = stub.drives.size;
    const { result } = await uploadBytes(randomBytes(300_000, 11), "fail.raw");
    expect(result.status).toBe(1);
    expect(result.stdout).toBe("");
    expect(result.stderr).toContain("not retried");
    expect(result.stderr.trim().split("\n")).toHaveLength(1);
    expect(stub.count("POST")).toBe(1);
    expect(stub.drives.size).toBe(before);
  });

  test("a failed upload names the drive when the server gave one", async () => {
    const partial = crypto.randomUUID();
    stub.handlers.unshift(async (request, path) => {
      if (request.method !== "POST" || !path.includes("/upload/")) return undefined;
      await request.arrayBuffer();
      return Response.json(
        { error_type: "backend", error_message: `Upload of drive ${partial} failed` },
        { status: 500 },
      );
    });
    stub.requests.length = 0;
    const { result } = await uploadBytes(randomBytes(50_000, 12), "partial.raw");
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(partial);
    expect(result.stderr).toContain("not retried");
    expect(stub.count("POST")).toBe(1);
  });

  test("a dropped connection is not retried either", async () => {
    stub.requests.length = 0;
    stub.fault({ method: "POST", path: /upload/, action: { reset: true } });
    const { result } = await uploadBytes(randomBytes(50_000, 13), "reset.raw");
    expect(result.status).toBe(1);
    expect(result.stderr).toContain("not retried");
    expect(stub.count("POST")).toBe(1);
  });

  test("an answer without a UUID is an error, not a guess", async () => {
    stub.handlers.unshift(async (request, path) => {
      if (request.method !== "POST" || !path.includes("/upload/")) return undefined;
      await request.arrayBuffer();
      return new Response("accepted\n");
    });
    const { result } = await uploadBytes(randomBytes(1000, 14), "nouuid.raw");
    expect(result.status).toBe(1);
    expect(result.stderr).toContain("holds no drive UUID: 'accepted'");
  });

  test("wrong calls exit 2 and send nothing", async () => {
    stub.requests.length = 0;
    const empty = image("empty.raw", new Uint8Array());
    const good = image("good.raw", randomBytes(10));
    const cases: string[][] = [
      [join(dir, "missing.raw")],
      [empty],
      [dir],
      [good, "-d", crypto.randomUUID()],
      [good, "-o", "4096"],
    ];
    for (const argv of cases) {
      const result = await run(upload, [...argv, "--direct"], { env: api2.env });
      expect({ argv, status: result.status }).toEqual({ argv, status: 2 });
    }
    // plain http to a host other than loopback: credentials would travel in clear
    const result = await run(upload, [good, "--direct"], {
      env: { ...api2.env, CSDIRECT: "http://192.0.2.10/api/2.0/" },
    });
    expect(result.status).toBe(2);
    expect(result.stderr).toContain("plain http");
    const viaUri = await run(download, [crypto.randomUUID()], {
      env: { ...api2.env, CSURI: "http://example.com/api/2.0/" },
    });
    expect(viaUri.status).toBe(2);
    expect(stub.requests).toHaveLength(0);
  });

  test("a stalled server is given up on after --timeout, and the upload is not retried", async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    stub.handlers.unshift(async (request, path) => {
      if (request.method !== "POST" || !path.includes("/upload/")) return undefined;
      await request.arrayBuffer();
      await held;
      return new Response(crypto.randomUUID());
    });
    const path = image("stall.raw", randomBytes(1000, 15));
    const result = await run(upload, [path, "--direct", "--quiet", "--timeout", "0.3"], { env: api2.env });
    release();
    expect(result.status).toBe(1);
    expect(result.stderr).toContain("timeout");
    expect(result.stderr).toContain("not retried");
  });
});

test("a server that stops reading the body mid-upload is given up on after --timeout", async () => {
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  stub.handlers.unshift(async (request, path) => {
    if (request.method !== "POST" || !path.includes("/upload/")) return undefined;
    await held; // never reads the body: the socket fills and the client cannot send more
    await request.body?.cancel().catch(() => undefined);
    return new Response("late\n", { status: 500 });
  });
  const path = image("stuck.raw", randomBytes(64 * 1024 * 1024, 16));
  const result = await run(upload, [path, "--direct", "--quiet", "--timeout", "0.5"], { env: api2.env });
  release();
  expect(result.status).toBe(1);
  expect(result.stderr).toContain("timeout: nothing moved for");
  expect(result.stderr).toContain("not retried");
});

describe("the emulator's upload endpoint", () => {
  const auth = () => `Basic ${Buffer.from(`${stub.user}:${stub.secret}`).toString("base64")}`;

  test("411 without Content-Length (a chunked body)", async () => {
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new Uint8Array(100));
        controller.close();
      },
    });
    const response = await fetch(`${api2.uri}drives/upload/x`, {
      method: "POST",
      body,
      headers: { authorization: auth() },
    });
    expect(response.status).toBe(411);
  });

  test("401 without credentials", async () => {
    const response = await fetch(`${api2.uri}drives/upload/x`, { method: "POST", body: "abc" });
    expect(response.status).toBe(401);
  });

  test("400 on a short body, and no drive is left behind", async () => {
    const before = api2.uploads.length;
    const drives = stub.drives.size;
    const socket = await Bun.connect({
      hostname: "127.0.0.1",
      port: stub.port,
      socket: { data() {}, error() {} },
    });
    socket.write(
      `POST /api/2.0/drives/upload/short HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: ${auth()}\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n`,
    );
    socket.write(new Uint8Array(5000).fill(1));
    socket.end();
    const outcome = await api2.waitForUploads(before + 1);
    expect(outcome).toMatchObject({ status: 400, received: 5000, expected: 100000 });
    expect(stub.drives.size).toBe(drives);
  });
});

describe("spawned scripts", () => {
  test("upload then download as real processes", async () => {
    const bytes = randomBytes(700_001, 21);
    const path = image("spawned.raw", bytes);
    const up = await spawnScript("upload", [path, "--direct", "--verify"], { env: api2.env });
    expect(up.status).toBe(0);
    expect(up.stdout).toMatch(UUID_LINE);
    expect(up.stderr).toContain("verified drive");
    const uuid = up.stdout.trim();
    const out = await freshFolder();
    const down = await spawnScript("download", [uuid, "back.raw"], { env: api2.env, cwd: out });
    expect(down.status).toBe(0);
    expect(down.stdout).toBe(`${join(out, "back.raw")}\n`);
    const back = readFileSync(join(out, "back.raw"));
    expect(back.subarray(0, bytes.length).equals(Buffer.from(bytes))).toBe(true);
    expect(back.length).toBe(Math.max(bytes.length, MIN_SIZE));
  });
});
