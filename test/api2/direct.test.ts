// API 2.0 direct upload and download against the emulator's 2.0 side (emulator/api2.ts).
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import upload from "../../scripts/upload.ts";
import download from "../../scripts/download.ts";
import { startStub, type DriveStub } from "../../emulator/server.ts";
import { installApi2, type Api2Stub } from "../../emulator/api2.ts";
import { run, spawnScript } from "../helpers.ts";
import { dispositionName, parseContentRange, safeFileName } from "../../lib/api2/download.ts";
import { parseUploadAnswer } from "../../lib/api2/upload-direct.ts";
import { withPolicy } from "../faults/support.ts";

/** A run that does not retry within itself: what a cut leaves for the rerun. */
const once = <T>(body: () => Promise<T>) => withPolicy({ attempts: 1 }, body);

const UUID_LINE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\n$/;
const MIN_SIZE = 256 * 1024;

let stub: DriveStub;
let api2: Api2Stub;
let dir: string;
let baseHandlers: DriveStub["handlers"];

function randomBytes(size: number, seed = size): Uint8Array {
  // deterministic and incompressible enough; crypto.getRandomValues caps at 64 KiB a call
  const bytes = new Uint8Array(size);
  let x = seed * 2654435761 + 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    bytes[i] = x & 0xff;
  }
  return bytes;
}

function image(name: string, bytes: Uint8Array): string {
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return path;
}

/** A fresh folder for download outputs, so each test sees exactly what it wrote. */
async function freshFolder(): Promise<string> {
  return mkdtemp(join(dir, "out-"));
}

beforeAll(async () => {
  stub = await startStub();
  api2 = await installApi2(stub, { minDriveSize: MIN_SIZE });
  baseHandlers = [...stub.handlers];
  dir = await mkdtemp(join(tmpdir(), "drivekit-api2-"));
});

afterAll(async () => {
  api2.stop();
  await stub.stop();
  await rm(dir, { recursive: true, force: true });
});

afterEach(() => {
  // keep api2's handler; drop what a test added
  stub.handlers.splice(0, stub.handlers.length, ...baseHandlers);
  stub.faults.length = 0;
  api2.originHook = undefined;
  api2.disposition = (drive) => `attachment; filename="${drive.uuid}"`;
  api2.options.answer = undefined;
});

async function uploadBytes(bytes: Uint8Array, name = `img-${bytes.length}.raw`, extra: string[] = []) {
  const path = image(name, bytes);
  const result = await run(upload, [path, "--direct", "--quiet", ...extra], { env: api2.env });
  return { path, result, uuid: result.stdout.trim() };
}

describe("pure helpers", () => {
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

  test("Content-Disposition names are reduced to a safe base name", () => {
    const fallback = "8f9b42b1-1c5a-4a1e-9d8a-0123456789ab";
    const safe = (header: string) => safeFileName(dispositionName(header), fallback);
    expect(safe('attachment; filename="disk.img"')).toBe("disk.img");
    expect(safe("attachment; filename=disk.img")).toBe("disk.img");
    expect(safe("attachment; filename*=UTF-8''d%C3%A9j%C3%A0.img")).toBe("déjà.img");
    expect(safe('attachment; filename="../../etc/passwd"')).toBe("passwd");
    expect(safe("attachment; filename*=UTF-8''..%2F..%2Fetc%2Fshadow")).toBe("shadow");
    expect(safe('attachment; filename="/abs"')).toBe("abs");
    expect(safe('attachment; filename="a\\\\b"')).toBe("b");
    expect(safe('attachment; filename="x\u0001y\u001b[2J\u007f.img"')).toBe("xy[2J.img");
    expect(safe('attachment; filename=""')).toBe(fallback);
    expect(safe('attachment; filename=".."')).toBe(fallback);
    expect(safe('attachment; filename="a/"')).toBe(fallback);
    expect(safe('attachment; filename="\u0000\u0001"')).toBe(fallback);
    expect(safe(`attachment; filename="${"x".repeat(300)}"`)).toBe(fallback);
    expect(safe("attachment")).toBe(fallback);
  });

  test("Content-Range", () => {
    expect(parseContentRange("bytes 100-199/200")).toEqual({ start: 100, end: 199, total: 200 });
    expect(parseContentRange("bytes 100-199/*")).toBeUndefined();
    expect(parseContentRange("bytes 200-199/200")).toBeUndefined();
    expect(parseContentRange("bytes 0-200/200")).toBeUndefined();
    expect(parseContentRange(null)).toBeUndefined();
  });
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

describe("download", () => {
  let drive: string;
  let content: Uint8Array;
  const SIZE = 1024 * 1024 + 4097;

  beforeAll(() => {
    content = randomBytes(SIZE, 99);
    drive = stub.addDrive(SIZE, {}, content).uuid;
  });

  test("follows the redirect; credentials go to the API origin only", async () => {
    stub.requests.length = 0;
    api2.originRequests.length = 0;
    const out = await freshFolder();
    const result = await run(download, [drive, "image.raw", "--quiet"], { env: api2.env, cwd: out });
    expect(result.status).toBe(0);
    expect(result.stdout).toBe(`${join(out, "image.raw")}\n`);
    expect(Buffer.from(readFileSync(join(out, "image.raw"))).equals(Buffer.from(content))).toBe(true);
    const first = stub.requests.find((r) => r.path === `/api/2.0/drives/${drive}/download/`);
    expect(first?.status).toBe(302);
    expect(first?.headers.authorization).toStartWith("Basic ");
    expect(api2.originRequests).toHaveLength(1);
    expect(api2.originRequests[0]?.headers.authorization).toBeUndefined();
    expect(JSON.stringify(api2.originRequests)).not.toContain(stub.secret);
    expect(readdirSync(out)).toEqual(["image.raw"]);
  });

  test("Content-Disposition attacks stay inside the folder", async () => {
    const cases: [string, string][] = [
      ['attachment; filename="../../etc/passwd"', "passwd"],
      ['attachment; filename="/abs"', "abs"],
      ['attachment; filename="a\\\\b"', "b"],
      ["attachment; filename*=UTF-8''..%2F..%2Fescape", "escape"],
      // raw control characters cannot cross HTTP; percent-encoded ones can
      ["attachment; filename*=UTF-8''evil%07%1B%5D0%3Bpwned%07%0A.img", "evil]0;pwned.img"],
      ['attachment; filename=""', drive],
      ['attachment; filename=".."', drive],
    ];
    for (const [header, expected] of cases) {
      api2.disposition = () => header;
      const parent = await freshFolder();
      const out = join(parent, "inner");
      await Bun.write(join(out, ".keep"), "");
      const result = await run(download, [drive, "--quiet"], { env: api2.env, cwd: out });
      expect({ header, status: result.status, stderr: result.stderr }).toEqual({ header, status: 0, stderr: "" });
      expect(result.stdout).toBe(`${join(out, expected)}\n`);
      expect(readdirSync(out).sort()).toEqual([".keep", expected].sort());
      expect(readdirSync(parent)).toEqual(["inner"]);
      expect(statSync(join(out, expected)).size).toBe(SIZE);
    }
  });

  test("no Content-Disposition: the drive UUID", async () => {
    api2.disposition = () => undefined;
    const out = await freshFolder();
    const result = await run(download, [drive, "--quiet"], { env: api2.env, cwd: out });
    expect(result.status).toBe(0);
    expect(readdirSync(out)).toEqual([drive]);
  });

  test("an existing FILE is kept: exit 2 and nothing sent; --force overwrites", async () => {
    const out = await freshFolder();
    writeFileSync(join(out, "keep.raw"), "precious");
    stub.requests.length = 0;
    const refused = await run(download, [drive, "keep.raw"], { env: api2.env, cwd: out });
    expect(refused.status).toBe(2);
    expect(refused.stderr).toContain("--force");
    expect(stub.requests).toHaveLength(0);
    expect(readFileSync(join(out, "keep.raw"), "utf8")).toBe("precious");
    const forced = await run(download, [drive, "keep.raw", "--force", "--quiet"], { env: api2.env, cwd: out });
    expect(forced.status).toBe(0);
    expect(statSync(join(out, "keep.raw")).size).toBe(SIZE);
    expect(readdirSync(out)).toEqual(["keep.raw"]);
  });

  test("an existing file under the server's name is kept, before anything is written", async () => {
    const out = await freshFolder();
    writeFileSync(join(out, drive), "precious");
    const refused = await run(download, [drive], { env: api2.env, cwd: out });
    expect(refused.status).toBe(1);
    expect(refused.stderr).toContain("--force");
    expect(readFileSync(join(out, drive), "utf8")).toBe("precious");
    expect(readdirSync(out)).toEqual([drive]);
    const forced = await run(download, [drive, "--force", "--quiet"], { env: api2.env, cwd: out });
    expect(forced.status).toBe(0);
    expect(statSync(join(out, drive)).size).toBe(SIZE);
  });

  test("resumes an existing FILE.part with Range when the server answers 206", async () => {
    const out = await freshFolder();
    const have = 300_001;
    writeFileSync(join(out, "resume.raw.part"), content.subarray(0, have));
    api2.originRequests.length = 0;
    const result = await run(download, [drive, "resume.raw"], { env: api2.env, cwd: out });
    expect(result.status).toBe(0);
    expect(result.stderr).toContain(`resuming`);
    expect(api2.originRequests.map((r) => [r.headers.range, r.status])).toEqual([[`bytes=${have}-`, 206]]);
    expect(Buffer.from(readFileSync(join(out, "resume.raw"))).equals(Buffer.from(content))).toBe(true);
    expect(readdirSync(out)).toEqual(["resume.raw"]);
  });

  test("resumes under the server's name too", async () => {
    const out = await freshFolder();
    writeFileSync(join(out, `${drive}.part`), content.subarray(0, 4096));
    api2.originRequests.length = 0;
    const result = await run(download, [drive, "--quiet"], { env: api2.env, cwd: out });
    expect(result.status).toBe(0);
    expect(api2.originRequests.map((r) => r.status)).toEqual([200, 206]);
    expect(Buffer.from(readFileSync(join(out, drive))).equals(Buffer.from(content))).toBe(true);
  });

  test("a FILE.part that is already whole (416) is just renamed", async () => {
    const out = await freshFolder();
    writeFileSync(join(out, "whole.raw.part"), content);
    const result = await run(download, [drive, "whole.raw", "--quiet"], { env: api2.env, cwd: out });
    expect(result.status).toBe(0);
    expect(Buffer.from(readFileSync(join(out, "whole.raw"))).equals(Buffer.from(content))).toBe(true);
  });

  test("a server that ignores Range: clean restart from byte 0", async () => {
    const out = await freshFolder();
    writeFileSync(join(out, "restart.raw.part"), new Uint8Array(5000).fill(0xee));
    // bytes, not a Bun.file: Bun.serve would answer the Range of a file body by itself
    api2.originHook = (_request, d) => new Response(stub.readDrive(d.uuid));
    const result = await run(download, [drive, "restart.raw"], { env: api2.env, cwd: out });
    expect(result.status).toBe(0);
    expect(result.stderr).toContain("starting again from 0");
    expect(Buffer.from(readFileSync(join(out, "restart.raw"))).equals(Buffer.from(content))).toBe(true);
    expect(readdirSync(out)).toEqual(["restart.raw"]);
  });

  test("a 206 for the wrong range: clean restart", async () => {
    const out = await freshFolder();
    writeFileSync(join(out, "wrong.raw.part"), content.subarray(0, 1000));
    api2.originHook = (request, d) =>
      request.headers.get("range")
        ? new Response(Bun.file(d.path).slice(500, d.size), {
            status: 206,
            headers: { "content-range": `bytes 500-${d.size - 1}/${d.size}` },
          })
        : undefined;
    const result = await run(download, [drive, "wrong.raw", "--quiet"], { env: api2.env, cwd: out });
    expect(result.status).toBe(0);
    expect(Buffer.from(readFileSync(join(out, "wrong.raw"))).equals(Buffer.from(content))).toBe(true);
  });

  /** A raw TCP origin answering each request with `head` then `body`, then closing: what Bun.serve cannot be made to send. */
  async function rawOrigin(head: string, body: Uint8Array) {
    const requests: string[] = [];
    const server = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        data(socket, data) {
          requests.push(new TextDecoder().decode(data));
          socket.write(head);
          socket.write(body);
          socket.end();
        },
        error() {},
      },
    });
    stub.handlers.unshift((_request, path) =>
      path.endsWith("/download/")
        ? new Response(null, { status: 302, headers: { location: `http://127.0.0.1:${server.port}/raw` } })
        : undefined,
    );
    return { requests, stop: () => server.stop(true) };
  }

  for (const close of [false, true]) {
    test(`a short body is detected${close ? " (Connection: close)" : ""} (retries off): exit 1, FILE.part kept, never under the final name; the next run resumes`, async () => {
      const out = await freshFolder();
      const cut = 200_000;
      const raw = await rawOrigin(
        `HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ${SIZE}\r\n${close ? "Connection: close\r\n" : ""}\r\n`,
        content.subarray(0, cut),
      );
      const result = await once(() => run(download, [drive, "short.raw", "--quiet"], { env: api2.env, cwd: out }));
      raw.stop();
      stub.handlers.splice(0, stub.handlers.length, ...baseHandlers);
      expect(result.status).toBe(1);
      expect(result.stderr.trim().split("\n")).toHaveLength(1);
      expect(existsSync(join(out, "short.raw"))).toBe(false);
      // on a loaded machine the cut can come before the first byte reached the file
      const partExists = existsSync(join(out, "short.raw.part"));
      expect(result.stderr).toContain(partExists ? "short.raw.part kept" : "nothing was kept");
      const kept = partExists ? readFileSync(join(out, "short.raw.part")) : Buffer.alloc(0);
      expect(partExists ? kept.length > 0 : true).toBe(true);
      expect(kept.length).toBeLessThanOrEqual(cut);
      expect(kept.equals(Buffer.from(content.subarray(0, kept.length)))).toBe(true);

      api2.originRequests.length = 0;
      const again = await run(download, [drive, "short.raw", "--quiet"], { env: api2.env, cwd: out });
      expect(again.status).toBe(0);
      expect(api2.originRequests[0]?.headers.range).toBe(kept.length > 0 ? `bytes=${kept.length}-` : undefined);
      expect(Buffer.from(readFileSync(join(out, "short.raw"))).equals(Buffer.from(content))).toBe(true);
      expect(readdirSync(out)).toEqual(["short.raw"]);
    });
  }

  test("a short resumed body is detected too (retries off)", async () => {
    const out = await freshFolder();
    writeFileSync(join(out, "short2.raw.part"), content.subarray(0, 1000));
    const raw = await rawOrigin(
      `HTTP/1.1 206 Partial Content\r\nContent-Length: ${SIZE - 1000}\r\nContent-Range: bytes 1000-${SIZE - 1}/${SIZE}\r\nConnection: close\r\n\r\n`,
      content.subarray(1000, 2000),
    );
    const result = await once(() => run(download, [drive, "short2.raw", "--quiet"], { env: api2.env, cwd: out }));
    raw.stop();
    expect(raw.requests[0]).toMatch(/\r\nrange: bytes=1000-\r\n/i);
    expect(raw.requests[0]).toMatch(/\r\naccept-encoding: identity\r\n/i);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain("short2.raw.part kept");
    expect(existsSync(join(out, "short2.raw"))).toBe(false);
    // what arrived before the cut may or may not have reached the file; what is there is right
    const kept = readFileSync(join(out, "short2.raw.part"));
    expect(kept.length).toBeGreaterThanOrEqual(1000);
    expect(kept.length).toBeLessThanOrEqual(2000);
    expect(kept.equals(Buffer.from(content.subarray(0, kept.length)))).toBe(true);
  });

  test("no Content-Length: refused, since a cut body could not be told", async () => {
    const out = await freshFolder();
    const raw = await rawOrigin("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", content.subarray(0, 100));
    const result = await run(download, [drive, "nolength.raw", "--quiet"], { env: api2.env, cwd: out });
    raw.stop();
    expect(result.status).toBe(1);
    expect(result.stderr).toContain("without a Content-Length");
    expect(existsSync(join(out, "nolength.raw"))).toBe(false);
  });

  test("a missing drive: exit 1 with the server's message, nothing written", async () => {
    const out = await freshFolder();
    const result = await run(download, [crypto.randomUUID(), "x.raw"], { env: api2.env, cwd: out });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain("404 missing");
    expect(readdirSync(out)).toEqual([]);
  });

  test("a redirect to plain http on another host is refused", async () => {
    const out = await freshFolder();
    stub.handlers.unshift((_request, path) =>
      path.endsWith("/download/")
        ? new Response(null, { status: 302, headers: { location: "http://192.0.2.10/steal" } })
        : undefined,
    );
    const result = await run(download, [drive, "x.raw", "--quiet"], { env: api2.env, cwd: out });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain("refusing redirect");
    expect(readdirSync(out)).toEqual([]);
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
