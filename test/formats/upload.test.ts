// upload.ts with the images users have, in-process against the emulator: raw, gzip (one and
// several members), zstd (with and without frame content sizes), qcow2 (plain and compressed) and
// stdin, over API 1.0, API 2.0 chunked and API 2.0 --direct; each drive read back and compared
// with the raw image by sha256, --verify passing. Then the refusals (status, message, nothing
// sent, no drive left), a damaged image mid-upload, and a resumed gzip upload.
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { readdirSync, rmSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { zstdCompressSync } from "node:zlib";
import upload from "../../scripts/upload.ts";
import download from "../../scripts/download.ts";
import { run, startScript } from "../helpers.ts";
import { waitFor } from "../faults/support.ts";
import { imageBytes, zstdWithoutSize } from "../images.ts";
import { qemu } from "./qcow2-images.ts";
import { startStub, type DriveStub } from "../../emulator/server.ts";
import { installApi2, type Api2Stub } from "../../emulator/api2.ts";

const KiB = 1024;
/** Not a multiple of the 64k chunks nor of qcow2's clusters; a zero run that spans whole chunks. */
const SIZE = 20 * 64 * KiB + 12345;
const bytes = imageBytes(SIZE, 21, [[3 * 64 * KiB, 7 * 64 * KiB + 100]]);
const sha = (data: Uint8Array) => new Bun.CryptoHasher("sha256").update(data).digest("hex");
const IMAGE_SHA = sha(bytes);

let stub: DriveStub;
let api2: Api2Stub;
let dir: string;
let images: string;
let baseHandlers: DriveStub["handlers"];

const gzipped = (data: Uint8Array) => Bun.gzipSync(data as Uint8Array<ArrayBuffer>);

/** The test images, by name; each decodes to `bytes`. */
const ENCODED: Record<string, string> = {};

beforeAll(async () => {
  stub = await startStub();
  api2 = await installApi2(stub);
  baseHandlers = [...stub.handlers];
  images = await mkdtemp(join(tmpdir(), "drivekit-formats-images-"));
  const write = async (name: string, content: Uint8Array) => {
    ENCODED[name] = join(images, name);
    await Bun.write(ENCODED[name]!, content);
  };
  await write("disk.raw", bytes);
  await write("disk.img.gz", gzipped(bytes));
  await write(
    "members.gz",
    Buffer.concat([
      gzipped(bytes.subarray(0, 300_000)),
      gzipped(bytes.subarray(300_000, 900_000)),
      gzipped(bytes.subarray(900_000)),
    ]),
  );
  await write("sized.zst", zstdCompressSync(bytes));
  await write("unsized.zst", await zstdWithoutSize(bytes));
  ENCODED["disk.qcow2"] = join(images, "disk.qcow2");
  qemu("qemu-img", "convert", "-f", "raw", "-O", "qcow2", ENCODED["disk.raw"]!, ENCODED["disk.qcow2"]!);
  ENCODED["compressed.qcow2"] = join(images, "compressed.qcow2");
  qemu("qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", ENCODED["disk.raw"]!, ENCODED["compressed.qcow2"]!);
  ENCODED["v2.qcow2"] = join(images, "v2.qcow2");
  qemu(
    "qemu-img",
    "convert",
    "-f",
    "raw",
    "-O",
    "qcow2",
    "-o",
    "compat=0.10,cluster_size=4096",
    ENCODED["disk.raw"]!,
    ENCODED["v2.qcow2"]!,
  );
  // v3 zero clusters over the image's zero run (the image's bytes stay the same)
  ENCODED["zeros.qcow2"] = join(images, "zeros.qcow2");
  qemu(
    "qemu-img",
    "convert",
    "-f",
    "raw",
    "-O",
    "qcow2",
    "-o",
    "compat=1.1,cluster_size=65536",
    ENCODED["disk.raw"]!,
    ENCODED["zeros.qcow2"]!,
  );
  qemu("qemu-io", "-f", "qcow2", "-c", `write -z ${4 * 64 * KiB} ${3 * 64 * KiB}`, ENCODED["zeros.qcow2"]!);
});
afterAll(async () => {
  api2.stop();
  await stub.stop();
  await rm(images, { recursive: true, force: true });
});
beforeEach(async () => {
  stub.requests.length = 0;
  api2.chunked.chunkPosts.length = 0;
  dir = await mkdtemp(join(tmpdir(), "drivekit-formats-"));
});
afterEach(async () => {
  stub.handlers.splice(0, stub.handlers.length, ...baseHandlers);
  stub.faults.length = 0;
  await rm(dir, { recursive: true, force: true });
});

const MODES = {
  "API 1.0": (argv: string[], stdin?: Uint8Array) =>
    run(upload, ["-c", "64k", ...argv], { env: stub.env, cwd: dir, stdin }),
  "API 2.0 chunked": (argv: string[], stdin?: Uint8Array) =>
    run(upload, ["-c", "64k", ...argv], { env: api2.env, cwd: dir, stdin }),
  "API 2.0 --direct": (argv: string[], stdin?: Uint8Array) =>
    run(upload, ["--direct", ...argv], { env: api2.env, cwd: dir, stdin }),
} as const;
type Mode = keyof typeof MODES;

/** The drive holds the image: its first SIZE bytes hash like the raw image, anything after is zeros. */
function expectDriveHoldsImage(uuid: string): void {
  const drive = stub.drives.get(uuid);
  expect(drive).toBeDefined();
  expect(drive!.size).toBeGreaterThanOrEqual(SIZE);
  expect(sha(stub.readDrive(uuid, 0, SIZE))).toBe(IMAGE_SHA);
  if (drive!.size > SIZE) expect(stub.readDrive(uuid, SIZE, drive!.size - SIZE).every((byte) => byte === 0)).toBe(true);
}

const journals = () =>
  readdirSync(dir).filter((name) => name.startsWith(".drivekit-journal-") && !name.endsWith(".lock"));
/** Requests that send image bytes or make a drive: none may go out before a refusal. */
const sending = () => stub.requests.filter((request) => request.method === "POST").length;

for (const mode of Object.keys(MODES) as Mode[]) {
  describe(mode, () => {
    for (const name of [
      "disk.raw",
      "disk.img.gz",
      "members.gz",
      "sized.zst",
      "unsized.zst",
      "disk.qcow2",
      "compressed.qcow2",
      "v2.qcow2",
      "zeros.qcow2",
    ]) {
      test(`${name}: the drive holds the raw image (sha256), --verify passes, download.ts brings it back`, async () => {
        const result = await MODES[mode]([ENCODED[name]!, "--verify"]);
        expect(result.stderr).not.toMatch(/error/);
        expect(result.status).toBe(0);
        expectDriveHoldsImage(result.stdout.trim());
        const back = join(dir, "back.img");
        const fetched = await run(download, [result.stdout.trim(), back], {
          env: mode === "API 1.0" ? stub.env : api2.env,
          cwd: dir,
        });
        expect(fetched.status).toBe(0);
        const copy = new Uint8Array(await Bun.file(back).arrayBuffer());
        expect(sha(copy.subarray(0, SIZE))).toBe(IMAGE_SHA);
        expect(copy.subarray(SIZE).every((byte) => byte === 0)).toBe(true);
        rmSync(back);
        expect(result.stderr).toMatch(/verified/);
        // the size came from the format, or from one counting pass (said so)
        expect(result.stderr.includes("decompressing it once to count")).toBe(
          name.endsWith(".gz") || name === "unsized.zst",
        );
        expect(journals()).toEqual([]);
      });
    }

    test("stdin (-) with --size: raw, gzip and zstd, told by the first bytes", async () => {
      for (const input of [bytes, gzipped(bytes), await zstdWithoutSize(bytes)]) {
        const result = await MODES[mode](["-", "--size", String(SIZE)], input);
        expect(result.stderr).not.toMatch(/error/);
        expect(result.status).toBe(0);
        expectDriveHoldsImage(result.stdout.trim());
        expect(stub.drives.get(result.stdout.trim())!.fields.name).toBe("stdin");
      }
    });

    test("a larger --size: a file's drive is that size, the rest zeros, and a warning says so", async () => {
      const result = await MODES[mode]([ENCODED["disk.img.gz"]!, "--size", String(SIZE + 100 * KiB)]);
      expect(result.status).toBe(0);
      const uuid = result.stdout.trim();
      expect(stub.drives.get(uuid)!.size).toBeGreaterThanOrEqual(SIZE + 100 * KiB);
      expect(sha(stub.readDrive(uuid, 0, SIZE))).toBe(IMAGE_SHA);
      expect(stub.readDrive(uuid, SIZE, 100 * KiB).every((byte) => byte === 0)).toBe(true);
      expect(result.stderr).toContain(`the remaining 100 KiB of the drive (--size 1.4 MiB) are zeros`);
    });

    test("stdin shorter than --size (its producer died): status 1, one line, never a padded drive", async () => {
      const before = stub.drives.size;
      const result = await MODES[mode](["-", "--size", String(SIZE + 100 * KiB)], gzipped(bytes));
      expect(result.status).toBe(1);
      expect(result.stdout).toBe("");
      expect(result.stderr).toContain(
        `stdin ended at byte ${SIZE}, before --size ${SIZE + 100 * KiB}: did the command feeding it stop early?`,
      );
      expect(result.stderr).not.toMatch(/^\s+at /m);
      // 1.0 and 2.0 destroy the drive they made (the real API deletes a drive still uploading);
      // the emulator drops a cut direct upload itself
      await waitFor(() => stub.drives.size === before, "the partial drive to be gone");
      if (mode === "API 2.0 chunked")
        expect(result.stderr).toMatch(/drive [0-9a-f-]{36}, which this upload started, is destroyed/);
    });

    test("refused with status 2 before anything is sent: stdin without --size or with --verify, xz, a forced format without its magic, --size below a raw image", async () => {
      const drives = stub.drives.size;
      const xz = join(dir, "disk.raw.xz");
      await Bun.write(xz, new Uint8Array([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0, 4, 0, 0]));
      for (const [argv, message] of [
        [["-"], "reading the image from stdin (-) needs --size SIZE: a stream does not tell how large its image is"],
        [
          ["-", "--size", "1M", "--verify"],
          "--verify needs an image it can read again: stdin (-) is read once (upload the file itself to verify)",
        ],
        [
          [xz],
          `${xz} is xz-compressed, which upload.ts does not decode (no xz in the runtime; it cannot seek either): xz -dc ${xz} | upload.ts - --size SIZE (the image's size)`,
        ],
        [
          [ENCODED["disk.raw"]!, "-z"],
          `${ENCODED["disk.raw"]} is not gzip (its first bytes say no known format): drop --format / -z, or name the right one`,
        ],
        [
          [ENCODED["disk.img.gz"]!, "--format", "qcow2"],
          `${ENCODED["disk.img.gz"]} is not qcow2 (its first bytes say gzip): drop --format, or name the right one`,
        ],
        [
          [ENCODED["disk.raw"]!, "--size", "1M"],
          `--size 1048576 is smaller than ${ENCODED["disk.raw"]} (${SIZE} bytes): the image would not fit`,
        ],
        [
          [ENCODED["sized.zst"]!, "--size", "1M"],
          `--size 1048576 is smaller than ${ENCODED["sized.zst"]} (${SIZE} bytes decoded, as its zstd frames record): the image would not fit`,
        ],
        [[ENCODED["disk.raw"]!, "-z", "--format", "zstd"], "-z says gzip, --format says zstd: give one"],
      ] as const) {
        const result = await MODES[mode]([...argv], bytes);
        expect(result.stderr).toBe(`upload: error: ${message}\n`);
        expect(result.status).toBe(2);
        expect(result.stdout).toBe("");
      }
      expect(sending()).toBe(0);
      expect(stub.drives.size).toBe(drives);
    });

    test("a truncated .gz: refused while counting its size, before anything is sent (status 1)", async () => {
      const gz = gzipped(bytes);
      const cut = join(dir, "cut.gz");
      await Bun.write(cut, gz.subarray(0, gz.length - 3000));
      const drives = stub.drives.size;
      const result = await MODES[mode]([cut]);
      expect(result.status).toBe(1);
      expect(result.stderr).toMatch(
        /^upload: error: .*cut\.gz: the gzip data ends early, after \d+ bytes of the image \(a truncated file\?\)$/m,
      );
      expect(result.stderr.split("\n").filter((line) => line.includes("error")).length).toBe(1);
      expect(sending()).toBe(0);
      expect(stub.drives.size).toBe(drives);
    });
  });
}

test("API 1.0, --compress auto: the link probe cannot read a decoded image ahead, so it sends zeros where the first chunk goes on the new drive", async () => {
  const result = await run(upload, [ENCODED["disk.img.gz"]!, "-c", "1M"], { env: stub.env, cwd: dir });
  expect(result.status).toBe(0);
  const writes = stub.requests.filter((request) => request.method === "POST" && /\/write\//.test(request.path));
  // the probe: 512 KiB raw at byte 0, before the chunks; then chunk 0 itself at byte 0 again
  expect(writes[0]!.path).toEndWith("/write/0");
  expect(writes[0]!.bytesIn).toBe(512 * KiB);
  expect(writes.filter((request) => request.path.endsWith("/write/0")).length).toBe(2);
  expect(result.stderr).toMatch(/probe: link ~/);
  expectDriveHoldsImage(result.stdout.trim());
});

test("API 1.0 with -d (an existing drive): no zero probe, the old bytes are only ever replaced by the image's", async () => {
  const old = stub.addDrive(SIZE, { name: "old" }, new Uint8Array(SIZE).fill(0xa5));
  const result = await run(upload, [ENCODED["disk.img.gz"]!, "-c", "1M", "-d", old.uuid], { env: stub.env, cwd: dir });
  expect(result.status).toBe(0);
  const writes = stub.requests.filter((request) => request.method === "POST" && /\/write\//.test(request.path));
  expect(writes.every((request) => request.bytesIn !== 512 * KiB)).toBe(true);
  expectDriveHoldsImage(old.uuid);
});

describe("an image that breaks off mid-upload (known only once read): status 1, one line saying what happened to the drive", () => {
  const cut = () => {
    const gz = gzipped(bytes);
    return gz.subarray(0, gz.length - 3000);
  };

  test("API 1.0: the drive this upload created is destroyed; no journal is left", async () => {
    const drives = stub.drives.size;
    const result = await MODES["API 1.0"](["-", "--size", String(SIZE)], cut());
    expect(result.status).toBe(1);
    const errors = result.stderr.split("\n").filter((line) => line.includes("error"));
    expect(errors.length).toBe(1);
    expect(errors[0]).toMatch(
      /^upload: error: stdin: the gzip data ends early, after \d+ bytes of the image \(a truncated file\?\); drive [0-9a-f-]{36}, which this upload created, is destroyed$/,
    );
    expect(stub.drives.size).toBe(drives);
    expect(journals()).toEqual([]);
  });

  test("API 1.0: --size smaller than a streamed image: an error at its last byte, the drive destroyed", async () => {
    const drives = stub.drives.size;
    const result = await MODES["API 1.0"](["-", "--size", String(SIZE - 1000)], gzipped(bytes));
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(
      `stdin holds more than ${SIZE - 1000} bytes (byte ${SIZE - 1000} is not the end): --size ${SIZE - 1000} is smaller than the image: give its whole size (or, for a file, leave --size out); drive `,
    );
    expect(stub.drives.size).toBe(drives);
  });

  test("API 2.0 chunked: the started drive is destroyed, or named with the command that removes it", async () => {
    const drives = stub.drives.size;
    const result = await MODES["API 2.0 chunked"](["-", "--size", String(SIZE)], cut());
    expect(result.status).toBe(1);
    const errors = result.stderr.split("\n").filter((line) => line.includes("error"));
    expect(errors.length).toBe(1);
    expect(errors[0]).toMatch(
      /^upload: error: stdin: the gzip data ends early, after \d+ bytes of the image \(a truncated file\?\); drive [0-9a-f-]{36}, which this upload started, /,
    );
    const uuid = /drive ([0-9a-f-]{36})/.exec(errors[0]!)![1]!;
    if (stub.drives.has(uuid)) {
      expect(errors[0]).toContain(`holds part of the image and could not be destroyed (`);
      expect(errors[0]).toEndWith(
        `): finish it from an intact image (upload.ts --api 2 -d ${uuid} IMAGE) or destroy it when the server allows (destroy.ts --api 2 ${uuid})`,
      );
      // the chunks it holds came before the break: -d with the intact image finishes the drive right
      const finish = await MODES["API 2.0 chunked"](["-", "--size", String(SIZE), "-d", uuid], gzipped(bytes));
      expect(finish.status).toBe(0);
      expectDriveHoldsImage(uuid);
    } else {
      expect(errors[0]).toEndWith("is destroyed");
      expect(stub.drives.size).toBe(drives);
    }
    expect(journals()).toEqual([]);
  });

  test("API 2.0 --direct: the POST is cut off before its end, and the server keeps no drive", async () => {
    const drives = stub.drives.size;
    const uploads = api2.uploads.length;
    const result = await MODES["API 2.0 --direct"](["-", "--size", String(SIZE)], cut());
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(
      /^upload: error: upload of - failed after .* of 1\.3 MiB: stdin: the gzip data ends early, after \d+ bytes of the image \(a truncated file\?\); not retried \(a new attempt would create another drive\); the POST was cut off before its last byte, so the server completes no drive from it\n$/,
    );
    // the emulator drops the drive of an incomplete body once it sees the connection end
    const outcome = await api2.waitForUploads(uploads + 1);
    expect(outcome?.status).toBe(400);
    expect(outcome!.received).toBeLessThan(SIZE);
    expect(stub.drives.size).toBe(drives);
  });
});

describe("a resumed gzip upload: the rerun decodes from the start, sends only what the journal lacks, same bytes", () => {
  test("API 2.0 chunked", async () => {
    const posted = () => api2.chunked.chunkPosts.filter((post) => post.status === 200);
    // the server turns the link calls down (403: final) once 6 chunks are in
    stub.handlers.unshift((request, path) =>
      request.method === "POST" && path.endsWith("/action/") && posted().length >= 6
        ? Response.json([{ error_point: null, error_type: "permission", error_message: "quota exceeded" }], {
            status: 403,
          })
        : undefined,
    );
    const first = await MODES["API 2.0 chunked"]([
      ENCODED["disk.img.gz"]!,
      "--size",
      String(SIZE),
      "--concurrency",
      "2",
    ]);
    expect(first.status).toBe(1);
    expect(first.stderr).toMatch(
      new RegExp(`rerun the same command.*upload\\.ts --api 2 -d [0-9a-f-]{36} -c 65536 --size ${SIZE} `),
    );
    expect(journals().length).toBe(1);
    const firstChunks = posted().map((post) => post.chunk);
    expect(firstChunks.length).toBeGreaterThanOrEqual(6);
    stub.handlers.splice(0, stub.handlers.length, ...baseHandlers);

    const drives = stub.drives.size;
    const again = await MODES["API 2.0 chunked"]([ENCODED["disk.img.gz"]!, "--size", String(SIZE)]);
    expect(again.stderr).toMatch(/resuming the upload into drive/);
    expect(again.status).toBe(0);
    expect(stub.drives.size).toBe(drives);
    const all = posted().map((post) => post.chunk);
    expect(new Set(all).size).toBe(all.length);
    expect(all.length).toBe(Math.floor(SIZE / (64 * KiB)));
    expectDriveHoldsImage(again.stdout.trim());
    expect(journals()).toEqual([]);
  });

  test("API 1.0 (the size counted again on the rerun)", async () => {
    const writes = () =>
      stub.requests.filter(
        (request) => request.method === "POST" && /\/write\//.test(request.path) && request.status === 204,
      );
    stub.handlers.unshift((request, path) =>
      request.method === "POST" && /\/write\//.test(path) && writes().length >= 5
        ? new Response("errors:auth denied\n", { status: 401, headers: { "x-elastic-error": "auth" } })
        : undefined,
    );
    const first = await MODES["API 1.0"]([ENCODED["members.gz"]!, "--concurrency", "2", "--compress", "never"]);
    expect(first.status).toBe(1);
    expect(first.stderr).toMatch(/rerun the same command/);
    const sentFirst = new Set(writes().map((request) => request.path));
    expect(sentFirst.size).toBeGreaterThanOrEqual(5);
    stub.handlers.splice(0, stub.handlers.length, ...baseHandlers);
    stub.requests.length = 0;

    const again = await MODES["API 1.0"]([ENCODED["members.gz"]!, "--compress", "never"]);
    expect(again.stderr).toMatch(/resuming the upload into drive/);
    expect(again.status).toBe(0);
    const sentAgain = writes().map((request) => request.path);
    expect(sentAgain.filter((path) => sentFirst.has(path))).toEqual([]);
    expectDriveHoldsImage(again.stdout.trim());
  });

  test("Ctrl-C (SIGINT) on a spawned upload of a .gz: exit 130 and the resume hint; the rerun sends only the rest", async () => {
    const posted = () => api2.chunked.chunkPosts.filter((post) => post.status === 200);
    // slow chunk POSTs, so that the signal lands in the middle; the third one's arrival is the cue
    stub.fault({ method: "POST", path: /\/upload\/chunk\//, action: { delayMs: 40 } });
    let cue: () => void = () => undefined;
    const third = new Promise<void>((resolve) => (cue = resolve));
    let seen = 0;
    stub.handlers.unshift((request, path) => {
      if (request.method === "POST" && path.includes("/upload/chunk/") && ++seen === 3) cue();
      return undefined;
    });
    const child = startScript("upload", [ENCODED["members.gz"]!, "-c", "64k", "--concurrency", "2"], {
      env: api2.env,
      cwd: dir,
    });
    await third;
    child.kill("SIGINT");
    const { stdout, stderr, status } = await child.finished;
    expect(status).toBe(130);
    expect(stdout).toBe("");
    const errors = stderr.split("\n").filter((line) => /error/.test(line));
    expect(errors.length).toBe(1);
    expect(errors[0]).toMatch(
      /interrupted \(SIGINT\).*rerun the same command.*upload\.ts --api 2 -d [0-9a-f-]{36} -c 65536 /,
    );
    expect(journals().length).toBe(1);
    const chunks = Math.floor(SIZE / (64 * KiB));
    const before = posted().length;
    expect(before).toBeLessThan(chunks);

    stub.faults.length = 0;
    stub.handlers.splice(0, stub.handlers.length, ...baseHandlers);
    const again = await MODES["API 2.0 chunked"]([ENCODED["members.gz"]!]);
    expect(again.status).toBe(0);
    expect(again.stderr).toMatch(/resuming/);
    // (a POST of the stopped process may have landed after its journal line was due: at most the window)
    expect(posted().length).toBeLessThanOrEqual(chunks + 2);
    expectDriveHoldsImage(again.stdout.trim());
    expect(journals()).toEqual([]);
  });

  test("stdin: the rerun warns that the input must be the same", async () => {
    const posted = () => api2.chunked.chunkPosts.filter((post) => post.status === 200);
    stub.handlers.unshift((request, path) =>
      request.method === "POST" && path.endsWith("/action/") && posted().length >= 4
        ? Response.json([{ error_point: null, error_type: "permission", error_message: "quota exceeded" }], {
            status: 403,
          })
        : undefined,
    );
    const first = await MODES["API 2.0 chunked"](["-", "--size", String(SIZE), "--concurrency", "1"], gzipped(bytes));
    expect(first.status).toBe(1);
    stub.handlers.splice(0, stub.handlers.length, ...baseHandlers);
    const again = await MODES["API 2.0 chunked"](["-", "--size", String(SIZE)], gzipped(bytes));
    expect(again.status).toBe(0);
    expect(again.stderr).toContain(
      "warning: resuming an upload read from stdin: the input must be the same image as in the interrupted run",
    );
    expectDriveHoldsImage(again.stdout.trim());
  });
});

describe("API 1.0 writes in flight for a decoded image", () => {
  /** The most writes the server held at once: each write is held 30 ms, so the client's lanes overlap there. */
  async function peakWrites(server: DriveStub, argv: string[]): Promise<number> {
    let active = 0;
    let peak = 0;
    server.handlers.unshift(async (request, path) => {
      if (request.method !== "POST" || !/\/write\//.test(path)) return undefined;
      active++;
      peak = Math.max(peak, active);
      await Bun.sleep(30);
      active--;
      return undefined;
    });
    try {
      const result = await run(upload, [...argv, "-c", "64k", "--compress", "never"], { env: server.env, cwd: dir });
      expect(result.status).toBe(0);
      expect(sha(server.readDrive(result.stdout.trim(), 0, SIZE))).toBe(IMAGE_SHA);
    } finally {
      server.handlers.shift();
    }
    return peak;
  }

  test("a near link (requests under 20 ms): 4, the decoder is the bottleneck; a raw image keeps its window (8, or more while it moves more)", async () => {
    expect(await peakWrites(stub, [ENCODED["disk.img.gz"]!])).toBe(4);
    expect(await peakWrites(stub, [ENCODED["disk.raw"]!])).toBeGreaterThanOrEqual(8);
  });

  test("a far link (25 ms per request): the whole window (8, or more while it moves more), to hide the latency", async () => {
    const far = await startStub({ rttMs: 25 });
    try {
      expect(await peakWrites(far, [ENCODED["compressed.qcow2"]!])).toBeGreaterThanOrEqual(8);
    } finally {
      await far.stop();
    }
  });
});
