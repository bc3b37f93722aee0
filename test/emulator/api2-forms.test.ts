// The emulator takes every form the real API 2.0 takes for drives and answers every documented
// error in CloudSigma's form: definitions bare, listed or wrapped, bulk create, sizes as strings,
// avoid, PUT semantics, schema, filters, availability groups, 503 concurrency, X-REQUEST-ID.
import { describe, expect, test } from "bun:test";
import { emulated, errorOf } from "./api2-support.ts";

const e = emulated();
const MiB = 1 << 20;
type Drive = { uuid: string; status: string; size: number; name: string; media: string; meta: Record<string, string> };
type Page = { meta: { total_count: number; limit: number }; objects: Drive[] };

describe("create: every form the real API takes", () => {
  test("wrapped, a bare list and one bare object: 201 {objects}, each creating, sizes as numbers", async () => {
    const definition = { name: "d", size: 2 * MiB, media: "disk" };
    for (const body of [{ objects: [definition] }, [definition], definition]) {
      const answer = await e.call("POST", "drives/", body);
      expect(answer.status).toBe(201);
      const { objects } = (await answer.json()) as { objects: Drive[] };
      expect(objects).toHaveLength(1);
      expect(objects[0]).toMatchObject({ name: "d", size: 2 * MiB, media: "disk", status: "creating", meta: {} });
    }
    expect(e.stub.drives.size).toBe(3);
  });

  test("bulk: five drives in one call, sizes given as strings (as CloudSigma's own tests send them)", async () => {
    const body = Array.from({ length: 5 }, (_, i) => ({ name: `bulk-${i}`, size: "1024000000", media: "disk" }));
    const { objects } = await e.json<{ objects: Drive[] }>("POST", "drives/", body, 201);
    expect(objects.map((d) => [d.name, d.size])).toEqual(body.map((d) => [d.name, 1024000000]));
    for (const drive of objects) expect(await e.statusOf(`drives/${drive.uuid}/`, "unmounted")).toBe("unmounted");
  });

  test("refused with 400 validation naming the field: missing, bad or out-of-range values, no JSON, nothing to create", async () => {
    const cases: [unknown, string | null][] = [
      [{ size: MiB, media: "disk" }, "name"],
      [{ name: "x", media: "disk" }, "size"],
      [{ name: "x", size: MiB }, "media"],
      [{ name: "x", size: "12abc", media: "disk" }, "size"],
      [{ name: "x", size: 1024, media: "disk" }, "size"],
      [{ name: "x", size: MiB, media: "tape" }, "media"],
      [{ name: "x", size: MiB, media: "disk", storage_type: "floppy" }, "storage_type"],
      [{ name: "x", size: MiB, media: "disk", meta: { "bad key": "v" } }, "meta"],
      [{ objects: [] }, "objects"],
      [[1, 2], "objects"],
      ["{not json", null],
    ];
    for (const [body, point] of cases) {
      const answer = await e.call("POST", "drives/", body);
      expect(answer.status).toBe(400);
      expect(await errorOf(answer)).toMatchObject({ error_type: "validation", error_point: point });
    }
    expect(e.stub.drives.size).toBe(0);
  });

  test("avoid: the new drive and the clone land on other storage hosts (availability_groups/), a bad list is 400", async () => {
    const [first] = (
      await e.json<{ objects: Drive[] }>("POST", "drives/", { name: "a", size: MiB, media: "disk" }, 201)
    ).objects as Drive[];
    const others: string[] = [];
    for (let i = 0; i < 4; i++) {
      const made = await e.json<{ objects: Drive[] }>(
        "POST",
        `drives/?avoid=${first!.uuid}`,
        { name: `b${i}`, size: MiB, media: "disk" },
        201,
      );
      others.push(made.objects[0]!.uuid);
    }
    const groups = await e.json<string[][]>("GET", "drives/availability_groups/");
    expect(groups.some((group) => group.includes(first!.uuid) && others.some((uuid) => group.includes(uuid)))).toBe(
      false,
    );
    expect(await e.json<string[]>("GET", `drives/availability_groups/${first!.uuid}/`)).toEqual([first!.uuid]);
    const bad = await e.call("POST", "drives/?avoid=nope", { name: "c", size: MiB, media: "disk" });
    expect(bad.status).toBe(400);
    expect((await errorOf(bad)).error_point).toBe("avoid");
  });
});

describe("lists, filters and the schema", () => {
  test("filters name, name__contains (any case), tag and uuid, commas ORed, parameters ANDed; limit=0; fields=", async () => {
    const made = (
      await e.json<{ objects: Drive[] }>(
        "POST",
        "drives/",
        [
          { name: "web-01", size: MiB, media: "disk", tags: ["prod"] },
          { name: "web-02", size: MiB, media: "disk", tags: ["test"] },
          { name: "db,01", size: MiB, media: "disk", tags: ["prod"] },
        ],
        201,
      )
    ).objects;
    const names = async (query: string) =>
      (await e.json<Page>("GET", `drives/detail/?limit=0&${query}`)).objects.map((d) => d.name).sort();
    expect(await names("name=web-01")).toEqual(["web-01"]);
    expect(await names("name__contains=WEB")).toEqual(["web-01", "web-02"]);
    expect(await names("tag=prod")).toEqual(["db,01", "web-01"]);
    expect(await names("tag=prod&name__contains=web")).toEqual(["web-01"]);
    expect(await names(`uuid=${made[1]!.uuid},${made[2]!.uuid}`)).toEqual(["db,01", "web-02"]);
    expect(await names(`name=${encodeURIComponent("db\\,01")}`)).toEqual(["db,01"]);
    const trimmed = await e.json<Page>("GET", "drives/?fields=uuid,status&limit=0");
    expect(Object.keys(trimmed.objects[0]!).sort()).toEqual(["status", "uuid"]);
  });

  test("drives/schema/: page size 20, the filters, name, size and media required", async () => {
    const schema = await e.json<{
      default_limit: number;
      filtering: Record<string, string>;
      fields: Record<string, { required: boolean; readonly: boolean }>;
    }>("GET", "drives/schema/");
    expect(schema.default_limit).toBe(20);
    expect(Object.keys(schema.filtering).sort()).toEqual(["name", "name__contains", "tag", "uuid"]);
    const required = Object.entries(schema.fields).filter(([, field]) => field.required && !field.readonly);
    expect(required.map(([name]) => name).sort()).toEqual(["media", "name", "size"]);
  });
});

describe("PUT, resize and delete", () => {
  test("a PUT of the whole object it got (read-only fields too) changes meta, a multi-line value kept", async () => {
    const drive = e.stub.addDrive(MiB, { name: "p", media: "disk" });
    const got = await e.json<Drive>("GET", `drives/${drive.uuid}/`);
    const meta = { meta_key1: "value", meta_key2: "value\nwith\nnew lines" };
    const updated = await e.json<Drive>("PUT", `drives/${drive.uuid}/`, { ...got, meta });
    expect(updated.meta).toEqual(meta);
    expect(updated.status).toBe("unmounted");
  });

  test("a size change by PUT answers resizing, then the drive is unmounted with the new size", async () => {
    e.api2.drives.statusDelayMs = 20;
    const drive = e.stub.addDrive(2 * MiB, { name: "r" });
    const updated = await e.json<Drive>("PUT", `drives/${drive.uuid}/`, { name: "r", size: "5242880", media: "disk" });
    expect(updated).toMatchObject({ status: "resizing", size: 5 * MiB });
    expect(await e.statusOf(`drives/${drive.uuid}/`, "unmounted")).toBe("unmounted");
    expect(e.stub.drives.get(drive.uuid)!.size).toBe(5 * MiB);
  });

  test("a running server's drive: a PUT changes name and meta but ignores size and media; resize and delete are 403", async () => {
    const drive = e.stub.addDrive(2 * MiB, { name: "live", media: "disk" });
    e.stub.mount(drive.uuid);
    const updated = await e.json<Drive>("PUT", `drives/${drive.uuid}/`, {
      name: "renamed",
      size: 8 * MiB,
      media: "cdrom",
      meta: { k: "v" },
    });
    expect(updated).toMatchObject({
      name: "renamed",
      size: 2 * MiB,
      media: "disk",
      meta: { k: "v" },
      status: "mounted",
    });
    for (const [method, path] of [
      ["POST", `drives/${drive.uuid}/action/?do=resize`],
      ["DELETE", `drives/${drive.uuid}/`],
    ] as const) {
      const answer = await e.call(
        method,
        path,
        method === "POST" ? { name: "x", size: 8 * MiB, media: "disk" } : undefined,
      );
      expect(answer.status).toBe(403);
      expect((await errorOf(answer)).error_type).toBe("permission");
    }
    expect(e.stub.drives.get(drive.uuid)!.size).toBe(2 * MiB);
  });

  test("the resize action: 202 {objects} resizing, a full definition accepted as sent back", async () => {
    const drive = e.stub.addDrive(2 * MiB, { name: "r" });
    const got = await e.json<Drive>("GET", `drives/${drive.uuid}/`);
    const { objects } = await e.json<{ objects: Drive[] }>(
      "POST",
      `drives/${drive.uuid}/action/?do=resize`,
      { ...got, size: 4 * MiB },
      202,
    );
    expect(objects[0]).toMatchObject({ status: "resizing", size: 4 * MiB });
  });

  test("delete: a drive still creating is 403; one uploading goes (204); bulk delete takes all or none", async () => {
    e.api2.drives.statusDelayMs = 60_000;
    const [creating] = (
      await e.json<{ objects: Drive[] }>("POST", "drives/", { name: "c", size: MiB, media: "disk" }, 201)
    ).objects;
    expect((await e.call("DELETE", `drives/${creating!.uuid}/`)).status).toBe(403);
    const uploading = e.api2.chunked.begin("u", MiB);
    expect((await e.call("DELETE", `drives/${uploading.uuid}/`)).status).toBe(204);
    const a = e.stub.addDrive(MiB);
    const b = e.stub.addDrive(MiB);
    const refused = await e.call("DELETE", "drives/", { objects: [{ uuid: a.uuid }, { uuid: creating!.uuid }] });
    expect(refused.status).toBe(403);
    expect(e.stub.drives.has(a.uuid)).toBe(true);
    expect((await e.call("DELETE", "drives/", [{ uuid: a.uuid }, { uuid: b.uuid }])).status).toBe(204);
    expect(e.stub.drives.has(a.uuid) || e.stub.drives.has(b.uuid)).toBe(false);
  });
});

describe("clone", () => {
  test("202 {objects}: cloning_dst, then unmounted with the source's bytes; a larger size rounds up to 16 KiB", async () => {
    const data = crypto.getRandomValues(new Uint8Array(8192));
    const source = e.stub.addDrive(4 * MiB, { name: "src" }, data);
    const { objects } = await e.json<{ objects: Drive[] }>(
      "POST",
      `drives/${source.uuid}/action/?do=clone&avoid=${source.uuid}`,
      { name: "copy", media: "cdrom", affinities: [], size: 5 * MiB + 1 },
      202,
    );
    expect(objects[0]).toMatchObject({ name: "copy", media: "cdrom", status: "cloning_dst", size: 5 * MiB + 16384 });
    expect(await e.statusOf(`drives/${objects[0]!.uuid}/`, "unmounted")).toBe("unmounted");
    expect(Buffer.from(e.stub.readDrive(objects[0]!.uuid, 0, 8192)).equals(Buffer.from(data))).toBe(true);
    const smaller = await e.call("POST", `drives/${source.uuid}/action/?do=clone`, { size: MiB });
    expect(smaller.status).toBe(400);
    expect((await errorOf(smaller)).error_point).toBe("size");
  });
});

describe("503 concurrency, request ids, 418", () => {
  test("a second change to a drive while one is being answered: 503 concurrency; once it is done, it goes through", async () => {
    const drive = e.stub.addDrive(MiB, { name: "slow" });
    let finish!: () => void;
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode('{"name": "slow-renamed", "size": 1048576, '));
        finish = () => {
          controller.enqueue(new TextEncoder().encode('"media": "disk"}'));
          controller.close();
        };
      },
    });
    const auth = `Basic ${Buffer.from(`${e.stub.user}:${e.stub.secret}`).toString("base64")}`;
    const slow = fetch(`${e.api2.uri}drives/${drive.uuid}/`, { method: "PUT", headers: { authorization: auth }, body });
    // the PUT is in once the emulator has seen it
    for (let i = 0; i < 1000 && e.stub.count("PUT") === 0; i++) await Bun.sleep(1);
    const second = await e.call("DELETE", `drives/${drive.uuid}/`);
    expect(second.status).toBe(503);
    expect(await errorOf(second)).toMatchObject({ error_type: "concurrency" });
    finish();
    expect((await slow).status).toBe(200);
    expect(e.stub.drives.get(drive.uuid)!.fields.name).toBe("slow-renamed");
    expect((await e.call("DELETE", `drives/${drive.uuid}/`)).status).toBe(204);
  });

  test("503 concurrency as an injected fault, in the real form", async () => {
    e.stub.fault({
      method: "POST",
      path: /^\/api\/2\.0\/drives\/$/,
      times: 1,
      action: { status: 503, kind: "concurrency" },
    });
    const answer = await e.call("POST", "drives/", { name: "x", size: MiB, media: "disk" });
    expect(answer.status).toBe(503);
    expect((await errorOf(answer)).error_type).toBe("concurrency");
    expect((await e.call("POST", "drives/", { name: "x", size: MiB, media: "disk" })).status).toBe(201);
  });

  test("every answer carries X-REQUEST-ID: 200, 201, 202, 204, errors, 418", async () => {
    const drive = e.stub.addDrive(MiB);
    const answers = [
      await e.call("GET", "drives/"),
      await e.call("POST", "drives/", { name: "x", size: MiB, media: "disk" }),
      await e.call("POST", `drives/${drive.uuid}/action/?do=clone`),
      await e.call("DELETE", `drives/${drive.uuid}/`),
      await e.call("GET", `drives/${drive.uuid}/`),
      await e.call("GET", "nothing/here/"),
    ];
    expect(answers.map((a) => a.status)).toEqual([200, 201, 202, 204, 404, 418]);
    for (const answer of answers) expect(answer.headers.get("x-request-id")).toMatch(/^[0-9a-f]{16}$/);
  });

  test("what it does not know is 418: an unknown action, resource or path shape", async () => {
    const drive = e.stub.addDrive(MiB);
    for (const path of [`drives/${drive.uuid}/action/?do=explode`, "widgets/", `drives/${drive.uuid}/extra/`, "drives"])
      expect((await e.call("POST", path, {})).status).toBe(418);
  });
});

describe("initupload: the forms both of CloudSigma's clients send", () => {
  test("bare (the upload client), wrapped in objects (the resource client), a list; sizes as strings; avoid", async () => {
    for (const body of [
      { name: "bare", size: 5000, media: "disk" },
      { objects: [{ name: "wrapped", size: "5000", media: "disk" }] },
      [{ name: "listed", size: 5000 }],
    ]) {
      const answer = await e.call("POST", `initupload/?avoid=${crypto.randomUUID()}`, body);
      expect(answer.status).toBe(201);
      const drive = ((await answer.json()) as { objects: Drive[] }).objects[0]!;
      expect(drive).toMatchObject({ status: "uploading", size: 5000, media: "disk" });
    }
    const bad = await e.call("POST", "initupload/", { objects: [{ name: "x", size: "lots" }] });
    expect(bad.status).toBe(400);
    expect((await errorOf(bad)).error_point).toBe("size");
  });
});
