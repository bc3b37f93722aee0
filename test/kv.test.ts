import { describe, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import {
  escapeValue,
  formatRecord,
  formatRecords,
  listField,
  parseRecord,
  parseRecords,
  recordToJson,
} from "../lib/kv.ts";
import { UsageError } from "../lib/errors.ts";
import { FIXTURES, fixture } from "./helpers.ts";

describe("parsing the recorded bodies", () => {
  test("every fixture parses, and every non-blank line lands as one pair", async () => {
    const names = readdirSync(FIXTURES).filter((name) => name.endsWith(".txt"));
    expect(names.length).toBe(10);
    for (const name of names) {
      const text = await fixture(name);
      const records = parseRecords(text);
      const pairs = records.reduce((sum, record) => sum + Object.keys(record).length, 0);
      const lines = text.split("\n").filter((line) => line.trim() !== "");
      // keys are unique within a record in these bodies, so pairs == non-blank lines
      expect({ name, pairs }).toEqual({ name, pairs: lines.length });
    }
  });

  test("a body without a final newline keeps its last value whole", async () => {
    const record = parseRecord(await fixture("jclouds-elasticstack-drive.txt"));
    expect(record.drive).toBe("b8171d28-755a-4271-b891-7998871a160e");
    expect(record["user:baz"]).toBe("raz");
    expect(record.name).toBe("Ubuntu 10.10 Server Edition Linux 64bit Preinstalled System");
    expect(listField(record, "claimed")).toHaveLength(5);
    expect(listField(record, "readers")).toEqual(["ffffffff-ffff-ffff-ffff-ffffffffffff"]);
  });

  test("several records split by one blank line", async () => {
    const records = parseRecords(await fixture("jclouds-elasticstack-standard_drives.txt"));
    expect(records).toHaveLength(36);
    expect(records[0]).toMatchObject({
      drive: "ce85ef47-9794-4ed7-a8bd-af902ec0eddc",
      format: "gzip",
      rawsize: "1073741824",
    });
    expect(records.at(-1)?.name).toBe("centOS 6.5 Live DVD");
    const libcloud = parseRecords(await fixture("libcloud-cloudsigma-drives_info.txt"));
    expect(libcloud.length).toBeGreaterThan(1);
    for (const record of libcloud) expect(record.drive).toMatch(/^[0-9a-f-]{36}$/);
  });

  test("`\\n` in a value becomes a newline; other backslashes stay", async () => {
    const records = parseRecords(await fixture("libcloud-cloudsigma-drives_standard_info.txt"));
    const notes = records.map((r) => r.install_notes).find((v) => v?.includes("\n"));
    expect(notes).toBeDefined();
    expect(notes).not.toContain("\\n");
    const withBackslash = records.map((r) => r.install_notes).find((v) => v?.includes("NT AUTHORITY\\NETWORK"));
    expect(withBackslash).toBeDefined();
  });

  test("list answer, tags and avoid as lists", async () => {
    const ids = (await fixture("jclouds-elasticstack-uuids.txt")).split("\n").filter(Boolean);
    expect(ids).toHaveLength(3);
    const create = parseRecord(await fixture("jclouds-elasticstack-create_drive.txt"));
    expect(listField(create, "tags")).toEqual(["tag1", "tag2"]);
    expect(listField(create, "avoid")).toEqual(["avoid1"]);
    expect(listField(create, "claimed")).toEqual([]);
  });

  test("CRLF bodies and values with spaces", () => {
    const records = parseRecords("name my big drive\r\nsize 4\r\n\r\nname second\r\n");
    expect(records).toEqual([{ name: "my big drive", size: "4" }, { name: "second" }]);
  });
});

describe("writing", () => {
  test("round trip, with escaped newlines", () => {
    const record = { name: "a b  c", "user:notes": escapeValue("one\ntwo"), tags: "x y" };
    const text = formatRecord(record);
    expect(text).toBe("name a b  c\nuser:notes one\\ntwo\ntags x y\n");
    expect(parseRecord(text)).toEqual({ name: "a b  c", "user:notes": "one\ntwo", tags: "x y" });
    expect(formatRecords([{ a: "1" }, { b: "2" }])).toBe("a 1\n\nb 2\n");
    expect(parseRecord(formatRecord({ n: "x\ny" }, { escape: true }))).toEqual({ n: "x\ny" });
  });

  test("refuses keys with white space and values with raw newlines", () => {
    expect(() => formatRecord({ "bad key": "x" })).toThrow(UsageError);
    expect(() => formatRecord({ "": "x" })).toThrow(UsageError);
    expect(() => formatRecord({ "a\nsize": "x" })).toThrow(UsageError);
    expect(() => formatRecord({ name: "x\nsize 1T" })).toThrow(/raw newline/);
    expect(() => formatRecord({ name: "x\rsize 1T" })).toThrow(UsageError);
  });

  test("JSON form: lists as arrays, counts as numbers", async () => {
    const json = recordToJson(parseRecord(await fixture("jclouds-elasticstack-drive.txt")));
    expect(json.size).toBe(8589934592);
    expect(json["write:requests"]).toBe(2097153);
    expect(Array.isArray(json.claimed)).toBe(true);
    expect(json.name).toBe("Ubuntu 10.10 Server Edition Linux 64bit Preinstalled System");
  });
});
