// The API 2.0 drive calls (lib/api2/drives.ts, wait.ts, flatten.ts) against the emulator and the recorded answers.
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { startStub, type DriveStub } from "../../emulator/server.ts";
import { installApi2, type Api2Stub } from "../../emulator/api2.ts";
import { HttpClient } from "../../lib/http.ts";
import { classifyError } from "../../lib/http.ts";
import { ApiError, OperationError } from "../../lib/errors.ts";
import { formatRecord, parseRecord } from "../../lib/kv.ts";
import {
  checkDrive,
  cloneDrive2,
  createDrive2,
  definitionOf,
  deleteDrive2,
  driveSizeLimits,
  getDrive,
  listDriveDetails,
  listDrives2,
  resizeDrive2,
  updateDrive2,
} from "../../lib/api2/drives.ts";
import { waitForDrive } from "../../lib/api2/wait.ts";
import { flattenDrive } from "../../lib/api2/flatten.ts";

const FIXTURES = new URL("../fixtures/api2/", import.meta.url).pathname;
const fixture = (name: string) => Bun.file(`${FIXTURES}libcloud-cloudsigma_2_0-${name}.json`).text();
const FIXTURE_DRIVE = "b02311e2-a83c-4c12-af10-b30d51c86913";

let stub: DriveStub;
let api2: Api2Stub;
let client: HttpClient;
let api2Handler: DriveStub["handlers"][number];
beforeAll(async () => {
  stub = await startStub();
  api2 = await installApi2(stub);
  api2Handler = stub.handlers[0] as DriveStub["handlers"][number];
  client = new HttpClient(new URL(api2.uri), {
    credentials: { user: stub.user, secret: stub.secret },
    timeoutMs: 5000,
  });
});
afterAll(async () => {
  api2.stop();
  await stub.stop();
});
beforeEach(() => {
  stub.requests.length = 0;
  stub.faults.length = 0;
  // keep the API 2.0 handler, drop any a test added
  stub.handlers.splice(0, stub.handlers.length, api2Handler);
  api2.drives.statusDelayMs = 0;
  for (const drive of [...stub.drives.keys()]) stub.drives.delete(drive);
});

/** Serve a recorded body for one path, with a request id. */
function serve(path: RegExp, body: string, status = 200): void {
  stub.handlers.unshift((request, at) =>
    path.test(at + new URL(request.url).search)
      ? new Response(body, { status, headers: { "content-type": "application/json", "x-request-id": "req-42" } })
      : undefined,
  );
}

async function failure(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error("expected a failure");
}

describe("the recorded answers", () => {
  test("drives_get: the bare drive object", async () => {
    serve(/drives\/b02311e2/, await fixture("drives_get"));
    const drive = await getDrive(client, FIXTURE_DRIVE);
    expect(drive).toMatchObject({ uuid: FIXTURE_DRIVE, size: 2097152000, status: "unmounted", name: "test drive 5" });
  });

  test("drives_create: the new drive inside objects", async () => {
    serve(/^\/api\/2\.0\/drives\/$/, await fixture("drives_create"), 201);
    const drive = await createDrive2(client, { name: "test drive 5", size: 2097152000, media: "disk" });
    expect(drive).toMatchObject({ uuid: FIXTURE_DRIVE, status: "creating" });
  });

  test("drives_clone: the clone inside objects", async () => {
    serve(/do=clone/, await fixture("drives_clone"), 202);
    const drive = await cloneDrive2(client, crypto.randomUUID(), { name: "cloned drive" });
    expect(drive).toMatchObject({ uuid: FIXTURE_DRIVE, name: "cloned drive", status: "creating" });
  });

  test("drives_resize: the resized drive inside objects", async () => {
    serve(/do=resize/, await fixture("drives_resize"), 202);
    const drive = await resizeDrive2(client, FIXTURE_DRIVE, { name: "test drive 5", size: 10737418240, media: "disk" });
    expect(drive.size).toBe(10737418240);
  });

  test("drives_detail: a page of 4 full objects, total_count 4", async () => {
    serve(/drives\/detail\//, await fixture("drives_detail"));
    const drives = await listDriveDetails(client);
    expect(drives).toHaveLength(4);
    expect(drives.map((d) => d.status)).toEqual(["unmounted", "unmounted", "unmounted", "mounted"]);
  });

  test("capabilities: drive size limits per storage type", async () => {
    serve(/capabilities\//, await fixture("capabilities"));
    expect(await driveSizeLimits(client)).toEqual({ dssd: { min: 536870912, max: 8858013190752 } });
  });

  test("unknown_error: status, error_type and message; the request id in the error line", async () => {
    const body = await fixture("unknown_error");
    expect(classifyError(500, null, body)).toEqual({ kind: "system", message: "unknown error", errorType: "backend" });
    serve(/drives\/b02311e2/, body, 500);
    const error = (await failure(getDrive(client, FIXTURE_DRIVE))) as ApiError;
    expect(error).toBeInstanceOf(ApiError);
    expect(error.message).toBe(
      `GET /api/2.0/drives/${FIXTURE_DRIVE}/ failed: 500 backend: unknown error (X-REQUEST-ID req-42)`,
    );
    expect(error.requestId).toBe("req-42");
    expect(error.retryable).toBe(true);
  });
});

describe("answers are checked before use", () => {
  test("a drive without a UUID", () => {
    expect(() => checkDrive({ uuid: "nope", size: 1 }, "GET /x")).toThrow(/no drive UUID/);
  });

  test("a size that is not a safe integer", () => {
    expect(() => checkDrive({ uuid: FIXTURE_DRIVE, size: 2 ** 53 }, "GET /x")).toThrow(/no usable size/);
    expect(() => checkDrive({ uuid: FIXTURE_DRIVE, size: "10" }, "GET /x")).toThrow(OperationError);
  });

  test("a create answer without objects", async () => {
    serve(/^\/api\/2\.0\/drives\/$/, JSON.stringify({ uuid: FIXTURE_DRIVE }), 201);
    expect((await failure(createDrive2(client, { name: "x", size: 1 << 20, media: "disk" }))).message).toMatch(
      /expected \{"objects"/,
    );
  });

  test("a get answering another drive", async () => {
    serve(/drives\/b02311e2/, JSON.stringify({ uuid: crypto.randomUUID() }));
    expect((await failure(getDrive(client, FIXTURE_DRIVE))).message).toMatch(/answered drive/);
  });
});

describe("API 2.0 errors", () => {
  test("401, 403, 404 and 409 are never retryable", () => {
    const list = JSON.stringify([{ error_point: null, error_type: "permission", error_message: "no" }]);
    for (const status of [401, 403, 404, 409]) {
      const { kind, errorType } = classifyError(status, null, list);
      expect(new ApiError({ kind, message: "no", status, method: "GET", path: "/x", errorType }).retryable).toBe(false);
    }
  });

  test("a missing drive on the emulator: 404 notexist with a request id", async () => {
    const error = (await failure(getDrive(client, crypto.randomUUID()))) as ApiError;
    expect(error.status).toBe(404);
    expect(error.kind).toBe("missing");
    expect(error.message).toMatch(
      /failed: 404 notexist: Object with uuid .* does not exist \(X-REQUEST-ID [0-9a-f]{16}\)$/,
    );
  });
});

describe("the calls on the emulator", () => {
  test("list gets every drive of more than one page, even from a server that pages limit=0", async () => {
    for (let i = 0; i < 45; i++) stub.addDrive(1 << 20);
    expect((await listDrives2(client)).map((d) => d.uuid).sort()).toEqual([...stub.drives.keys()].sort());
    // a server that ignores limit=0 and answers pages of 20: the client follows offset
    stub.handlers.unshift((request, path) => {
      if (path !== "/api/2.0/drives/") return undefined;
      const url = new URL(request.url);
      url.searchParams.set("limit", "20");
      return api2.drives.route(new Request(url.href), "drives/");
    });
    stub.requests.length = 0;
    const paged = await listDrives2(client);
    expect(paged).toHaveLength(45);
    expect(new Set(paged.map((d) => d.uuid)).size).toBe(45);
    expect(stub.count("GET")).toBe(3);
  });

  test("create, update, resize, clone, delete", async () => {
    const created = await createDrive2(client, {
      name: "db",
      size: 4 << 20,
      media: "disk",
      meta: { owner: "ops" },
      tags: ["prod"],
    });
    expect(created.status).toBe("creating");
    const settled = await waitForDrive(client, created.uuid, { limitMs: 5000, intervalMs: 5 });
    expect(settled.status).toBe("unmounted");
    const updated = await updateDrive2(
      client,
      created.uuid,
      definitionOf(settled, { name: "db2", meta: { owner: "dev" } }),
    );
    expect(updated).toMatchObject({ name: "db2", meta: { owner: "dev" }, tags: ["prod"] });
    expect(stub.drives.get(created.uuid)?.fields["user:owner"]).toBe("dev");
    const resized = await resizeDrive2(client, created.uuid, definitionOf(updated, { size: 8 << 20 }));
    expect(resized).toMatchObject({ size: 8 << 20, status: "resizing" });
    await waitForDrive(client, created.uuid, { limitMs: 5000, intervalMs: 5 });
    const clone = await cloneDrive2(client, created.uuid, { name: "copy" });
    expect(clone.uuid).not.toBe(created.uuid);
    await deleteDrive2(client, created.uuid);
    expect(stub.drives.has(created.uuid)).toBe(false);
  });

  test("waitForDrive gives up at its limit, naming the last status", async () => {
    api2.drives.statusDelayMs = 60_000;
    const created = await createDrive2(client, { name: "slow", size: 1 << 20, media: "disk" });
    const seen: string[] = [];
    const error = await failure(
      waitForDrive(client, created.uuid, { limitMs: 100, intervalMs: 20, onStatus: (s) => seen.push(s) }),
    );
    expect(error.message).toMatch(/still creating after \d+ s/);
    expect(seen[0]).toBe("creating");
  });
});

describe("flattening for KEY VALUE output", () => {
  test("meta as meta:KEY, nested objects as their uuid, lists space separated, runtime as runtime:KEY", async () => {
    const detail = JSON.parse(await fixture("drives_detail"));
    const record = flattenDrive(detail.objects[3]);
    expect(record).toMatchObject({
      uuid: "3e166706-188c-4f38-b8d5-7fc10a5019a1",
      owner: "69fcfc03-d635-4f99-a8b3-e1b73637cb5d",
      mounted_on: "e06cf7b3-ea46-4d38-87e0-3f918c4648d3",
      "meta:os": "linux",
      "runtime:storage_type": "dssd",
      size: "13958643712",
      allow_multimount: "false",
      affinities: "",
    });
    expect(() => formatRecord(record, { escape: true })).not.toThrow();
  });

  test("a meta value with a newline is escaped: it cannot inject a line", () => {
    const record = flattenDrive({ uuid: FIXTURE_DRIVE, size: 1, meta: { notes: "one\nsize 999", "odd key": "x" } });
    const text = formatRecord(record, { escape: true });
    expect(text).toContain("meta:notes one\\nsize 999\n");
    expect(text).toContain("meta:odd_key x\n");
    const back = parseRecord(text);
    expect(back.size).toBe("1");
    expect(back["meta:notes"]).toBe("one\nsize 999");
  });
});
