// Mounted drives (DriveStub.mount for tests, the minimal servers/ model for clients): what a
// server's drive refuses, what it allows, and the servers calls' states and errors.
import { expect, test } from "bun:test";
import { emulated, errorOf } from "./api2-support.ts";

const e = emulated();
const MiB = 1 << 20;
type Server = { uuid: string; status: string; drives: { drive: { uuid: string } }[]; name: string };
type Drive = { uuid: string; status: string; mounted_on: { uuid: string }[]; size: number };

const definition = (drives: unknown[] = []) => ({
  name: "test server",
  cpu: 1000,
  mem: 512 * MiB,
  vnc_password: "secret",
  drives,
});

test("DriveStub.mount: the drive shows mounted on a running server listed under servers/; unmount settles it", async () => {
  const drive = e.stub.addDrive(MiB);
  const server = e.stub.mount(drive.uuid);
  const shown = await e.json<Drive>("GET", `drives/${drive.uuid}/`);
  expect(shown).toMatchObject({ status: "mounted", mounted_on: [{ uuid: server.uuid }] });
  const listed = await e.json<{ objects: Server[] }>("GET", "servers/detail/");
  expect(listed.objects.map((s) => [s.uuid, s.status])).toEqual([[server.uuid, "running"]]);
  e.stub.unmount(drive.uuid);
  expect((await e.json<Drive>("GET", `drives/${drive.uuid}/`)).status).toBe("unmounted");
  expect((await e.call("DELETE", `drives/${drive.uuid}/`)).status).toBe(204);
});

test("a running server's drive: 403 on delete and resize, the API 1.0 destroy 409 busy; reads and writes go on", async () => {
  const drive = e.stub.addDrive(2 * MiB);
  e.stub.mount(drive.uuid);
  expect((await e.call("DELETE", `drives/${drive.uuid}/`)).status).toBe(403);
  expect((await e.call("POST", `drives/${drive.uuid}/action/?do=resize`, { size: 4 * MiB })).status).toBe(403);
  const auth = `Basic ${Buffer.from(`${e.stub.user}:${e.stub.secret}`).toString("base64")}`;
  const destroyed = await fetch(`${e.stub.url}drives/${drive.uuid}/destroy`, {
    method: "POST",
    headers: { authorization: auth },
  });
  expect(destroyed.status).toBe(409);
  e.stub.writeDrive(drive.uuid, MiB, new TextEncoder().encode("the server writes"));
  expect(new TextDecoder().decode(e.stub.readDrive(drive.uuid, MiB, 17))).toBe("the server writes");
  expect(e.stub.drives.has(drive.uuid)).toBe(true);
});

test("servers/: a stopped server holding a drive mounts it; the drive can then be resized and deleted", async () => {
  const drive = e.stub.addDrive(2 * MiB);
  const [server] = (
    await e.json<{ objects: Server[] }>(
      "POST",
      "servers/",
      definition([{ drive: drive.uuid, device: "virtio", dev_channel: "0:0", boot_order: 1 }]),
      201,
    )
  ).objects;
  expect(server).toMatchObject({ status: "stopped", drives: [{ drive: { uuid: drive.uuid } }] });
  expect((await e.json<Drive>("GET", `drives/${drive.uuid}/`)).status).toBe("mounted");
  expect((await e.call("POST", `drives/${drive.uuid}/action/?do=resize`, { size: 3 * MiB })).status).toBe(202);
  expect(await e.statusOf(`drives/${drive.uuid}/`, "mounted")).toBe("mounted");
  expect((await e.call("DELETE", `drives/${drive.uuid}/`)).status).toBe(204);
  expect((await e.json<Server>("GET", `servers/${server!.uuid}/`)).drives).toEqual([]);
});

test("start and stop: 202 {action, result, uuid}; the wrong state is 403 permission; a running server is not deleted", async () => {
  const drive = e.stub.addDrive(MiB);
  const [server] = (await e.json<{ objects: Server[] }>("POST", "servers/", [definition([{ drive: drive.uuid }])], 201))
    .objects;
  const path = `servers/${server!.uuid}/`;
  expect(await e.json("POST", `${path}action/?do=start`, {}, 202)).toEqual({
    action: "start",
    result: "success",
    uuid: server!.uuid,
  });
  const again = await e.call("POST", `${path}action/?do=start`, {});
  expect(again.status).toBe(403);
  expect((await errorOf(again)).error_message).toBe(
    'Cannot start guest in state "started". Guest should be in state "stopped"',
  );
  expect((await e.call("DELETE", `drives/${drive.uuid}/`)).status).toBe(403);
  expect((await e.call("DELETE", path)).status).toBe(403);
  // a running server changes only its name, meta and tags: its drives stay
  const renamed = await e.json<Server>("PUT", path, { ...definition([]), name: "renamed" });
  expect(renamed).toMatchObject({ name: "renamed", drives: [{ drive: { uuid: drive.uuid } }] });
  expect(await e.json("POST", `${path}action/?do=stop`, {}, 202)).toMatchObject({ action: "stop" });
  expect((await e.call("DELETE", `${path}?recurse=disks`)).status).toBe(204);
  expect(e.stub.drives.has(drive.uuid)).toBe(false);
});

test("attaching: a library CD is fine, a pre-installed library drive is 403 (clone it first), a missing drive 400", async () => {
  const library = [...e.api2.libdrives.drives.values()];
  const cd = library.find((d) => d.fields.media === "cdrom")!;
  const disk = library.find((d) => d.fields.media === "disk")!;
  expect((await e.call("POST", "servers/", definition([{ drive: cd.uuid }]))).status).toBe(201);
  const refused = await e.call("POST", "servers/", definition([{ drive: disk.uuid }]));
  expect(refused.status).toBe(403);
  expect((await errorOf(refused)).error_type).toBe("permission");
  const missing = await e.call("POST", "servers/", definition([{ drive: crypto.randomUUID() }]));
  expect((await errorOf(missing)).error_point).toBe("drives");
  const incomplete = await e.call("POST", "servers/", { name: "x" });
  expect(incomplete.status).toBe(400);
});
