// The API 1.0 emulator's fidelity to the vendor's own tools (emulator/server.ts).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { startStub, type DriveStub } from "../../emulator/server.ts";
import { parseRecord, parseRecords } from "../../lib/kv.ts";

let stub: DriveStub;
let auth: Record<string, string>;
beforeAll(async () => {
  stub = await startStub();
  auth = { authorization: `Basic ${Buffer.from(`${stub.user}:${stub.secret}`).toString("base64")}` };
});
afterAll(() => stub.stop());

const post = (path: string, body?: string) => fetch(`${stub.url}${path}`, { method: "POST", headers: auth, body });

test("a bodyless POST on list is answered as the GET (elastichosts.sh POSTs every call)", async () => {
  const drive = stub.addDrive(1024);
  const answer = await post("drives/list");
  expect(answer.status).toBe(200);
  expect(await answer.text()).toContain(drive.uuid);
});

test("a bodyless POST on info, all drives' info and info/full is answered as the GET", async () => {
  const drive = stub.addDrive(2048, { name: "posted" });
  expect(parseRecord(await (await post(`drives/${drive.uuid}/info`)).text())).toMatchObject({
    drive: drive.uuid,
    name: "posted",
  });
  expect(parseRecord(await (await post(`drives/${drive.uuid}/info/full`)).text()).size).toBe("2048");
  expect(parseRecords(await (await post("drives/info")).text()).map((r) => r.drive)).toContain(drive.uuid);
});

test("a bodyless POST on read is answered as the GET", async () => {
  const drive = stub.addDrive(4096, {}, new TextEncoder().encode("vendor"));
  const answer = await post(`drives/${drive.uuid}/read/0/6`);
  expect(answer.status).toBe(200);
  expect(await answer.text()).toBe("vendor");
});

test("a POST with a body on list is still refused", async () => {
  expect((await post("drives/list", "name x\n")).status).toBe(405);
});

test("create accepts the vendor upload tool's tier field and info shows it", async () => {
  const created = parseRecord(await (await post("drives/create", "name t\nsize 1M\ntier ssd\n")).text());
  expect(created.tier).toBe("ssd");
  expect(
    parseRecord(await (await fetch(`${stub.url}drives/${created.drive}/info`, { headers: auth })).text()).tier,
  ).toBe("ssd");
  expect((await post("drives/create", "name t\nsize 1M\ntier gold\n")).status).toBe(400);
});
