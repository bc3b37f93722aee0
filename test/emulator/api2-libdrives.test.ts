// The emulator's drives library (emulator/api2-libdrives.ts): listed, read, described, cloned
// into one's own drives, read only, and seen through drives/{uuid}/ without an owner.
import { expect, test } from "bun:test";
import { readSync } from "node:fs";
import { emulated, errorOf } from "./api2-support.ts";

const e = emulated();
type LibDrive = Record<string, unknown> & {
  uuid: string;
  size: number;
  media: string;
  owner: unknown;
  licenses: unknown[];
};

const libraryBytes = (drive: { fd: number; size: number }) => {
  const buffer = new Uint8Array(drive.size);
  readSync(drive.fd, buffer, 0, drive.size, 0);
  return buffer;
};

test("libdrives/ and detail/: full objects with the library's fields, owner null; filters; a page of 2", async () => {
  const all = await e.json<{ objects: LibDrive[]; meta: { total_count: number } }>("GET", "libdrives/?limit=0");
  expect(all.meta.total_count).toBeGreaterThanOrEqual(3);
  for (const drive of all.objects) {
    expect(drive).toMatchObject({ owner: null, status: "unmounted", storage_type: null, favourite: false });
    for (const key of ["arch", "category", "description", "image_type", "os", "paid", "licenses", "media", "meta"])
      expect(drive).toHaveProperty(key);
    expect(drive.resource_uri).toBe(`/api/2.0/libdrives/${drive.uuid}/`);
  }
  expect(all.objects.some((d) => d.media === "cdrom") && all.objects.some((d) => d.licenses.length > 0)).toBe(true);
  const detail = await e.json<{ objects: LibDrive[] }>("GET", "libdrives/detail/?limit=0");
  expect(detail.objects).toEqual(all.objects);
  const preinstalled = await e.json<{ objects: LibDrive[] }>("GET", "libdrives/?image_type=preinst&os=linux");
  expect(preinstalled.objects.every((d) => d.image_type === "preinst" && d.os === "linux")).toBe(true);
  expect(preinstalled.objects.length).toBeGreaterThan(0);
  const page = await e.json<{ objects: LibDrive[]; meta: { limit: number } }>("GET", "libdrives/?limit=2");
  expect(page.objects).toHaveLength(2);
  const schema = await e.json<{ filtering: Record<string, string> }>("GET", "libdrives/schema/");
  expect(Object.keys(schema.filtering)).toEqual(expect.arrayContaining(["image_type", "os", "name__icontains"]));
});

test("libdrives/{uuid}/ and drives/{uuid}/ show the same drive, the latter without owner; drive lists leave it out", async () => {
  const [first] = (await e.json<{ objects: LibDrive[] }>("GET", "libdrives/")).objects;
  const viaLibrary = await e.json<LibDrive>("GET", `libdrives/${first!.uuid}/`);
  const viaDrives = await e.json<LibDrive>("GET", `drives/${first!.uuid}/?limit=0`);
  expect(viaDrives).toMatchObject({ uuid: viaLibrary.uuid, name: viaLibrary.name, size: viaLibrary.size, owner: null });
  expect((await e.json<{ objects: unknown[] }>("GET", "drives/?limit=0")).objects).toEqual([]);
});

test("read only: PUT and DELETE through drives/ are 403, other methods on libdrives/ 405, an unknown one 404", async () => {
  const [first] = (await e.json<{ objects: LibDrive[] }>("GET", "libdrives/")).objects;
  for (const method of ["PUT", "DELETE"]) {
    const answer = await e.call(method, `drives/${first!.uuid}/`, { name: "mine", size: first!.size, media: "disk" });
    expect(answer.status).toBe(403);
    expect((await errorOf(answer)).error_type).toBe("permission");
  }
  expect((await e.call("POST", "libdrives/", {})).status).toBe(405);
  expect((await e.call("DELETE", `libdrives/${first!.uuid}/`)).status).toBe(405);
  expect((await errorOf(await e.call("GET", `libdrives/${crypto.randomUUID()}/`))).error_type).toBe("notexist");
});

test("cloned through libdrives/ and through drives/: drives of one's own, unmounted, with the library drive's bytes", async () => {
  const disk = [...e.api2.libdrives.drives.values()].find((d) => d.fields.media === "disk")!;
  for (const path of [`libdrives/${disk.uuid}/action/?do=clone`, `drives/${disk.uuid}/action/?do=clone`]) {
    const { objects } = await e.json<{ objects: LibDrive[] }>("POST", path, { name: "from the library" }, 202);
    const copy = objects[0]!;
    expect(copy).toMatchObject({ name: "from the library", size: disk.size, status: "cloning_dst" });
    expect(copy.owner).toEqual({ uuid: e.stub.user, resource_uri: `/api/2.0/user/${e.stub.user}/` });
    expect(await e.statusOf(`drives/${copy.uuid}/`, "unmounted")).toBe("unmounted");
    expect(Buffer.from(e.stub.readDrive(copy.uuid)).equals(Buffer.from(libraryBytes(disk)))).toBe(true);
  }
  // a library drive holds data: the copies are not all zeros
  expect(libraryBytes(disk).some((byte) => byte !== 0)).toBe(true);
});
