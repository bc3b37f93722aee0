// Manifests (lib/pairings/fleet.ts): the drive lines (blank lines and # comments skipped and not
// counted), a wrong line named by its number, --shard I/N taking lines I, I+N... so that N shards
// hold every drive exactly once, --drives bounded.
import { describe, expect, test } from "bun:test";
import { parseDrives, parseManifest, parseShard, shardOf } from "../../lib/pairings/fleet.ts";
import { UsageError } from "../../lib/errors.ts";

const uuid = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, "0")}`;

describe("parseManifest", () => {
  test("DRIVE [NAME] lines; blank lines, # comments and CRLF endings skipped; names keep their spaces", () => {
    const text = `# the web tier\n\n${uuid(1)}\n  ${uuid(2).toUpperCase()}   web-02 root  \r\n# done\n${uuid(3)} db\n`;
    expect(parseManifest(text, "m.txt")).toEqual([
      { line: 3, drive: uuid(1), name: undefined },
      { line: 4, drive: uuid(2), name: "web-02 root" },
      { line: 6, drive: uuid(3), name: "db" },
    ]);
  });

  test("a line that is not a UUID, a drive listed twice, a name refused, no drive at all: a wrong call naming the line", () => {
    const wrong = (text: string, check?: (name: string) => string | undefined) => () =>
      parseManifest(text, "m.txt", check);
    expect(wrong(`${uuid(1)}\n\nweb-01\n`)).toThrow(
      new UsageError("m.txt line 3: 'web-01' is not a drive UUID (each line: DRIVE [NAME]; # starts a comment)"),
    );
    expect(wrong(`${uuid(1)}\n${uuid(1)} again\n`)).toThrow(
      new UsageError(`m.txt line 2: drive ${uuid(1)} is listed already on line 1`),
    );
    expect(wrong(`${uuid(1)} a/b\n`, (name) => (name.includes("/") ? "no folders" : undefined))).toThrow(
      new UsageError("m.txt line 1: no folders"),
    );
    expect(wrong(`${uuid(1)} a\tb\n`)).toThrow(/line 1: the name holds a control character/);
    expect(wrong("# nothing\n\n")).toThrow(/m\.txt lists no drive/);
  });
});

describe("--shard I/N", () => {
  test("parsed 1-based, I within 1..N", () => {
    expect(parseShard("2/8")).toEqual({ index: 2, count: 8 });
    for (const bad of ["0/4", "5/4", "1/0", "a/b", "1", "-1/4", "1/4/2"])
      expect(() => parseShard(bad)).toThrow(/invalid --shard/);
  });

  test("N shards hold every drive line exactly once: lines I, I+N, I+2N..., comments not counted", () => {
    const lines = parseManifest(
      Array.from({ length: 11 }, (_, i) => `# comment ${i}\n${uuid(i)}\n`).join("\n"),
      "m.txt",
    );
    expect(lines).toHaveLength(11);
    const shards = [1, 2, 3].map((index) => shardOf(lines, { index, count: 3 }).map((line) => line.drive));
    expect(shards[0]).toEqual([uuid(0), uuid(3), uuid(6), uuid(9)]);
    expect(shards[1]).toEqual([uuid(1), uuid(4), uuid(7), uuid(10)]);
    expect(shards.flat().sort()).toEqual(lines.map((line) => line.drive).sort());
    expect(new Set(shards.flat()).size).toBe(11);
    // more shards than lines: some get none
    expect(shardOf(lines, { index: 12, count: 12 })).toEqual([]);
    expect(shardOf(lines, undefined)).toEqual(lines);
  });
});

test("--drives: 1 to 32, 1 when not given", () => {
  expect(parseDrives(undefined)).toBe(1);
  expect(parseDrives("4")).toBe(4);
  for (const bad of ["0", "33", "x", "1.5"]) expect(() => parseDrives(bad)).toThrow(/invalid --drives/);
});
