// The emulator's API 2.0 drive calls (emulator/api2-drives.ts), spoken to with plain fetch.
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { startStub, type DriveStub } from "../../emulator/server.ts";
import { installApi2, type Api2Stub } from "../../emulator/api2.ts";

let stub: DriveStub;
let api2: Api2Stub;
let auth: Record<string, string>;
beforeAll(async () => {
  stub = await startStub();
  api2 = await installApi2(stub);
  auth = { authorization: `Basic ${Buffer.from(`${stub.user}:${stub.secret}`).toString("base64")}` };
});
afterAll(async () => {
  api2.stop();
  await stub.stop();
});
beforeEach(() => {
  stub.faults.length = 0;
  api2.drives.statusDelayMs = 0;
  for (const drive of [...stub.drives.keys()]) stub.drives.delete(drive);
});

function call(method: string, path: string, body?: unknown): Promise<Response> {
  return fetch(`${api2.uri}${path}`, {
    method,
    headers: { ...auth, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

/** Poll the drive until its status is `wanted` (bounded: 500 checks). */
async function statusBecomes(uuid: string, wanted: string): Promise<string> {
  let status = "";
  for (let i = 0; i < 500 && status !== wanted; i++) {
    status = ((await (await call("GET", `drives/${uuid}/`)).json()) as { status: string }).status;
    if (status !== wanted) await Bun.sleep(1);
  }
  return status;
}

describe("lists", () => {
  test("pages of 20 by default, with meta", async () => {
    for (let i = 0; i < 25; i++) stub.addDrive(1 << 20);
    const page = (await (await call("GET", "drives/")).json()) as {
      meta: Record<string, number>;
      objects: { uuid: string }[];
    };
    expect(page.meta).toEqual({ limit: 20, offset: 0, total_count: 25 });
    expect(page.objects).toHaveLength(20);
    expect(Object.keys(page.objects[0] as object).sort()).toEqual(["name", "owner", "resource_uri", "status", "uuid"]);
  });

  test("limit=0 answers all; offset skips", async () => {
    for (let i = 0; i < 25; i++) stub.addDrive(1 << 20);
    expect(((await (await call("GET", "drives/?limit=0")).json()) as { objects: unknown[] }).objects).toHaveLength(25);
    const rest = (await (await call("GET", "drives/?offset=20")).json()) as { objects: { uuid: string }[] };
    expect(rest.objects.map((d) => d.uuid)).toEqual([...stub.drives.keys()].slice(20));
  });

  test("fields= trims each object; detail/ gives full objects", async () => {
    stub.addDrive(1 << 20, { "user:owner": "ops" });
    const trimmed = (await (await call("GET", "drives/?fields=uuid,status")).json()) as { objects: object[] };
    expect(Object.keys(trimmed.objects[0] as object).sort()).toEqual(["status", "uuid"]);
    const detail = (await (await call("GET", "drives/detail/")).json()) as { objects: Record<string, unknown>[] };
    expect(detail.objects[0]).toMatchObject({
      size: 1 << 20,
      media: "disk",
      meta: { owner: "ops" },
      status: "unmounted",
    });
  });
});

describe("lifecycle", () => {
  test("create answers creating, then unmounted; meta and tags land in the 1.0 fields", async () => {
    api2.drives.statusDelayMs = 20;
    const answer = await call("POST", "drives/", {
      objects: [{ name: "a", size: 2 << 20, media: "disk", meta: { note: "x\ny" }, tags: ["t1", "t2"] }],
    });
    expect(answer.status).toBe(201);
    const drive = ((await answer.json()) as { objects: { uuid: string; status: string }[] }).objects[0] as {
      uuid: string;
      status: string;
    };
    expect(drive.status).toBe("creating");
    expect(await statusBecomes(drive.uuid, "unmounted")).toBe("unmounted");
    expect(stub.drives.get(drive.uuid)?.fields).toMatchObject({
      name: "a",
      "user:note": "x\ny",
      tags: "t1 t2",
      media: "disk",
    });
  });

  test("clone copies the bytes (cloning_dst, then unmounted)", async () => {
    const data = crypto.getRandomValues(new Uint8Array(64 * 1024));
    const source = stub.addDrive(8 << 20, { name: "src" }, data);
    stub.writeDrive(source.uuid, 6 << 20, data);
    const answer = await call("POST", `drives/${source.uuid}/action/?do=clone`, { name: "copy" });
    expect(answer.status).toBe(202);
    const clone = ((await answer.json()) as { objects: { uuid: string; status: string; name: string }[] })
      .objects[0] as { uuid: string; status: string; name: string };
    expect(clone).toMatchObject({ status: "cloning_dst", name: "copy" });
    expect(await statusBecomes(clone.uuid, "unmounted")).toBe("unmounted");
    expect(Buffer.from(stub.readDrive(clone.uuid)).equals(Buffer.from(stub.readDrive(source.uuid)))).toBe(true);
  });

  test("resize answers resizing with the new size", async () => {
    const drive = stub.addDrive(1 << 20, { name: "r" });
    const answer = await call("POST", `drives/${drive.uuid}/action/?do=resize`, {
      name: "r",
      media: "disk",
      size: 3 << 20,
    });
    expect(answer.status).toBe(202);
    expect(((await answer.json()) as { objects: unknown[] }).objects[0]).toMatchObject({
      size: 3 << 20,
      status: "resizing",
    });
    expect(stub.drives.get(drive.uuid)?.size).toBe(3 << 20);
  });

  test("PUT needs the definition and replaces meta", async () => {
    const drive = stub.addDrive(1 << 20, { name: "p", "user:a": "1" });
    expect((await call("PUT", `drives/${drive.uuid}/`, { meta: { b: "2" } })).status).toBe(400);
    const answer = await call("PUT", `drives/${drive.uuid}/`, {
      name: "p2",
      size: 1 << 20,
      media: "cdrom",
      meta: { b: "2" },
    });
    expect(answer.status).toBe(200);
    expect(await answer.json()).toMatchObject({ name: "p2", media: "cdrom", meta: { b: "2" } });
  });
});

describe("errors", () => {
  test("401 for bad credentials: a JSON list with a request id", async () => {
    const answer = await fetch(`${api2.uri}drives/`, { headers: { authorization: "Basic bm9wZTpub3Bl" } });
    expect(answer.status).toBe(401);
    expect(answer.headers.get("x-request-id")).toMatch(/^[0-9a-f]{16}$/);
    expect(await answer.json()).toEqual([
      { error_point: null, error_type: "auth", error_message: "Authentication failed" },
    ]);
  });

  test("404 JSON for an unknown drive", async () => {
    const answer = await call("GET", `drives/${crypto.randomUUID()}/`);
    expect(answer.status).toBe(404);
    expect(((await answer.json()) as { error_type: string }[])[0]?.error_type).toBe("notexist");
  });

  test("403 permission for deleting a mounted drive", async () => {
    const drive = stub.addDrive(1 << 20);
    drive.status = "mounted";
    expect((await call("DELETE", `drives/${drive.uuid}/`)).status).toBe(403);
    expect(stub.drives.has(drive.uuid)).toBe(true);
  });

  test("an injected fault on an API 2.0 path is a JSON list with a request id", async () => {
    stub.fault({ path: /^\/api\/2\.0\/drives\/$/, action: { status: 503, message: "maintenance" } });
    const answer = await call("GET", "drives/");
    expect(answer.status).toBe(503);
    expect(answer.headers.get("x-request-id")).toBeTruthy();
    expect(await answer.json()).toEqual([{ error_point: null, error_type: "backend", error_message: "maintenance" }]);
  });

  test("anything unexpected is 418; upload_chunk is left to the chunked upload's handler", async () => {
    expect((await call("GET", "drives/nothing/here/")).status).toBe(418);
    const drive = stub.addDrive(1 << 20);
    expect(
      await api2.drives.route(
        new Request(`${api2.uri}drives/${drive.uuid}/action/?do=upload_chunk`, { method: "POST" }),
        `drives/${drive.uuid}/action/`,
      ),
    ).toBeUndefined();
    expect(
      await api2.drives.route(new Request(`${api2.uri}initupload/`, { method: "POST" }), "initupload/"),
    ).toBeUndefined();
  });

  test("capabilities/ gives the drive size limits", async () => {
    expect(await (await call("GET", "capabilities/")).json()).toEqual({
      drives: { dssd: { min_size: 1 << 20, max_size: 2 ** 40 } },
    });
  });
});
