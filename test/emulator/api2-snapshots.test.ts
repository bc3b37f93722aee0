// The emulator's snapshots (emulator/api2-snapshots.ts): the bytes of the drive as of the instant
// each was taken, the documented forms, statuses, names and errors, and clones of them.
import { describe, expect, test } from "bun:test";
import { statSync } from "node:fs";
import { emulated, errorOf } from "./api2-support.ts";

const e = emulated();
const MiB = 1 << 20;
type Snapshot = {
  uuid: string;
  name: string;
  status: string;
  allocated_size: number | null;
  drive: { uuid: string; resource_uri: string };
  meta: Record<string, string>;
  timestamp: string;
};
type Drive = { uuid: string; status: string; size: number; name: string; media: string; snapshots: { uuid: string }[] };

const bytes = (text: string) => new TextEncoder().encode(text);
const same = (a: Uint8Array, b: Uint8Array) => Buffer.from(a).equals(Buffer.from(b));

describe("taking a snapshot", () => {
  test("it holds the drive as of that instant: data at both ends, holes as zeros; later writes never reach it", async () => {
    const drive = e.stub.addDrive(8 * MiB, { name: "disk" }, bytes("before at 0"));
    e.stub.writeDrive(drive.uuid, 8 * MiB - 11, bytes("before@end!"));
    const before = e.stub.readDrive(drive.uuid);
    const { objects } = await e.json<{ objects: Snapshot[] }>("POST", "snapshots/", { drive: drive.uuid }, 201);
    const snapshot = objects[0]!;
    e.stub.writeDrive(drive.uuid, 0, bytes("AFTER at 0!"));
    e.stub.writeDrive(drive.uuid, 4 * MiB, bytes("after, in a hole"));
    expect(same(e.stub.readSnapshot(snapshot.uuid), before)).toBe(true);
    expect(same(e.stub.readDrive(drive.uuid), before)).toBe(false);
    // copied sparse: the 8 MiB snapshot holds two pieces of data, not 8 MiB
    expect(statSync(e.stub.snapshots.get(snapshot.uuid)!.path).blocks * 512).toBeLessThan(MiB);
  });

  test("creating (allocated_size null), then available; the default name is DRIVE__YYYY-MM-DD__HH_MM_SS", async () => {
    e.api2.snapshots.creatingMs = 20;
    const drive = e.stub.addDrive(MiB);
    const made = (await e.json<{ objects: Snapshot[] }>("POST", "snapshots/", [{ drive: drive.uuid }], 201))
      .objects[0]!;
    expect(made).toMatchObject({ status: "creating", allocated_size: null, drive: { uuid: drive.uuid }, meta: {} });
    expect(made.name).toMatch(new RegExp(`^${drive.uuid}__\\d{4}-\\d\\d-\\d\\d__\\d\\d_\\d\\d_\\d\\d$`));
    expect(made.timestamp).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}\+00:00$/);
    expect(await e.statusOf(`snapshots/${made.uuid}/`, "available")).toBe("available");
    expect((await e.json<Snapshot>("GET", `snapshots/${made.uuid}/`)).allocated_size).toBe(0);
  });

  test("wrapped in objects with name and meta; the drive lists its snapshots", async () => {
    const drive = e.stub.addDrive(MiB);
    const made = (
      await e.json<{ objects: Snapshot[] }>(
        "POST",
        "snapshots/",
        { objects: [{ drive: drive.uuid, name: "first", meta: { key: "val" } }, { drive: drive.uuid }] },
        201,
      )
    ).objects;
    expect(made.map((s) => s.name)[0]).toBe("first");
    expect(made[0]!.meta).toEqual({ key: "val" });
    const shown = await e.json<Drive>("GET", `drives/${drive.uuid}/`);
    expect(shown.snapshots.map((s) => s.uuid).sort()).toEqual(made.map((s) => s.uuid).sort());
  });

  test("a running server's drive can be snapshotted, and the server's writes go on", async () => {
    const drive = e.stub.addDrive(2 * MiB, {}, bytes("state one"));
    e.stub.mount(drive.uuid);
    expect((await e.json<Drive>("GET", `drives/${drive.uuid}/`)).status).toBe("mounted");
    const snapshot = (await e.json<{ objects: Snapshot[] }>("POST", "snapshots/", { drive: drive.uuid }, 201))
      .objects[0]!;
    e.stub.writeDrive(drive.uuid, 0, bytes("state two"));
    expect(new TextDecoder().decode(e.stub.readSnapshot(snapshot.uuid, 0, 9))).toBe("state one");
    expect(new TextDecoder().decode(e.stub.readDrive(drive.uuid, 0, 9))).toBe("state two");
  });

  test("refused: no drive (400 at drive), a drive still uploading or creating (403 permission)", async () => {
    const missing = await e.call("POST", "snapshots/", { drive: crypto.randomUUID() });
    expect(missing.status).toBe(400);
    expect(await errorOf(missing)).toMatchObject({ error_type: "validation", error_point: "drive" });
    const noDrive = await e.call("POST", "snapshots/", { name: "x" });
    expect((await errorOf(noDrive)).error_point).toBe("drive");
    const uploading = e.api2.chunked.begin("u", MiB);
    const refused = await e.call("POST", "snapshots/", { drive: uploading.uuid });
    expect(refused.status).toBe(403);
    expect((await errorOf(refused)).error_type).toBe("permission");
    expect(e.stub.snapshots.size).toBe(0);
  });
});

describe("the creating time", () => {
  test("Infinity: a snapshot never becomes available (a later one does); finish() ends it", async () => {
    const drive = e.stub.addDrive(MiB);
    e.api2.snapshots.creatingMs = Number.POSITIVE_INFINITY;
    const stuck = (await e.json<{ objects: Snapshot[] }>("POST", "snapshots/", { drive: drive.uuid }, 201)).objects[0]!;
    e.api2.snapshots.creatingMs = 0;
    const later = (await e.json<{ objects: Snapshot[] }>("POST", "snapshots/", { drive: drive.uuid }, 201)).objects[0]!;
    expect(await e.statusOf(`snapshots/${later.uuid}/`, "available")).toBe("available");
    expect((await e.json<Snapshot>("GET", `snapshots/${stuck.uuid}/`)).status).toBe("creating");
    const clone = await e.call("POST", `snapshots/${stuck.uuid}/action/?do=clone`);
    expect(clone.status).toBe(403);
    e.api2.snapshots.finish(stuck.uuid);
    expect((await e.json<Snapshot>("GET", `snapshots/${stuck.uuid}/`)).status).toBe("available");
  });
});

describe("listing, renaming, deleting", () => {
  test("snapshots/ and detail/ list them all; ?drive= keeps one drive's; fields= trims", async () => {
    const a = e.stub.addDrive(MiB);
    const b = e.stub.addDrive(MiB);
    for (const drive of [a, a, b]) await e.json("POST", "snapshots/", { drive: drive.uuid }, 201);
    for (const path of ["snapshots/?limit=0", "snapshots/detail/?limit=0"])
      expect((await e.json<{ objects: Snapshot[] }>("GET", path)).objects).toHaveLength(3);
    const ofA = await e.json<{ objects: Snapshot[]; meta: { total_count: number } }>(
      "GET",
      `snapshots/detail/?limit=0&drive=${a.uuid}`,
    );
    expect(ofA.meta.total_count).toBe(2);
    expect(ofA.objects.every((s) => s.drive.uuid === a.uuid)).toBe(true);
    const trimmed = await e.json<{ objects: object[] }>("GET", "snapshots/?fields=uuid,status");
    expect(Object.keys(trimmed.objects[0]!).sort()).toEqual(["status", "uuid"]);
    const schema = await e.json<{ filtering: Record<string, string> }>("GET", "snapshots/schema/");
    expect(Object.keys(schema.filtering)).toContain("drive");
  });

  test("PUT renames (the whole object sent back); DELETE is 204, then 404; deleting the drive deletes its snapshots", async () => {
    const drive = e.stub.addDrive(MiB);
    const [one, two] = (
      await e.json<{ objects: Snapshot[] }>("POST", "snapshots/", [{ drive: drive.uuid }, { drive: drive.uuid }], 201)
    ).objects;
    const renamed = await e.json<Snapshot>("PUT", `snapshots/${one!.uuid}/`, { ...one, name: "another_snap" });
    expect(renamed.name).toBe("another_snap");
    expect((await e.call("DELETE", `snapshots/${one!.uuid}/`)).status).toBe(204);
    const gone = await e.call("GET", `snapshots/${one!.uuid}/`);
    expect(gone.status).toBe(404);
    expect((await errorOf(gone)).error_type).toBe("notexist");
    expect((await e.call("DELETE", `drives/${drive.uuid}/`)).status).toBe(204);
    expect((await e.call("GET", `snapshots/${two!.uuid}/`)).status).toBe(404);
    expect(e.stub.snapshots.size).toBe(0);
  });

  test("bulk DELETE snapshots/ with a list", async () => {
    const drive = e.stub.addDrive(MiB);
    const made = (
      await e.json<{ objects: Snapshot[] }>("POST", "snapshots/", [{ drive: drive.uuid }, { drive: drive.uuid }], 201)
    ).objects;
    expect((await e.call("DELETE", "snapshots/", { objects: made.map((s) => ({ uuid: s.uuid })) })).status).toBe(204);
    expect(e.stub.snapshots.size).toBe(0);
  });
});

describe("cloning a snapshot", () => {
  test("202 with the bare drive: cloning_dst, the snapshot's name, media and size, then unmounted with its bytes", async () => {
    const drive = e.stub.addDrive(3 * MiB, { name: "src", media: "disk" }, bytes("as it was"));
    const snapshot = (await e.json<{ objects: Snapshot[] }>("POST", "snapshots/", { drive: drive.uuid }, 201))
      .objects[0]!;
    await e.statusOf(`snapshots/${snapshot.uuid}/`, "available");
    e.stub.writeDrive(drive.uuid, 0, bytes("as it is!"));
    e.api2.drives.statusDelayMs = 20;
    const clone = await e.json<Drive>(
      "POST",
      `snapshots/${snapshot.uuid}/action/?do=clone&avoid=${drive.uuid}`,
      {},
      202,
    );
    expect(clone).toMatchObject({ status: "cloning_dst", name: snapshot.name, media: "disk", size: 3 * MiB });
    expect(await e.statusOf(`drives/${clone.uuid}/`, "unmounted")).toBe("unmounted");
    expect(same(e.stub.readDrive(clone.uuid), e.stub.readSnapshot(snapshot.uuid))).toBe(true);
    const named = await e.json<Drive>(
      "POST",
      `snapshots/${snapshot.uuid}/action/?do=clone`,
      { name: "restored", media: "cdrom" },
      202,
    );
    expect(named).toMatchObject({ name: "restored", media: "cdrom", size: 3 * MiB });
  });
});
