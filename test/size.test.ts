import { expect, test } from "bun:test";
import { formatSize, humanBytes, parseSize } from "../lib/size.ts";
import { UsageError } from "../lib/errors.ts";

test("binary suffixes", () => {
  expect(parseSize("0")).toBe(0);
  expect(parseSize("4194304")).toBe(4194304);
  expect(parseSize("4k")).toBe(4096);
  expect(parseSize("4K")).toBe(4096);
  expect(parseSize("4M")).toBe(4194304);
  expect(parseSize("1G")).toBe(1073741824);
  expect(parseSize("2T")).toBe(2 * 2 ** 40);
  expect(parseSize(" 8G ")).toBe(8 * 2 ** 30);
});

test("refusals name the problem", () => {
  expect(() => parseSize("-1")).toThrow(/negative/);
  expect(() => parseSize("1.5G")).toThrow(/whole number/);
  expect(() => parseSize("4X")).toThrow(/unknown suffix 'X'/);
  expect(() => parseSize("4m")).toThrow(/unknown suffix/);
  expect(() => parseSize("")).toThrow(UsageError);
  expect(() => parseSize("1e9")).toThrow(UsageError);
  expect(() => parseSize("9007199254740992")).toThrow(/2\^53/);
  expect(() => parseSize("8192T")).toThrow(/2\^53/);
  expect(parseSize("8191T")).toBe(8191 * 2 ** 40);
  expect(() => parseSize("abc", "--size")).toThrow(/invalid --size 'abc'/);
});

test("formatting is exact and round-trips", () => {
  for (const n of [0, 1, 1023, 1024, 1536, 4194304, 4194305, 2 ** 30, 3 * 2 ** 40, 2 ** 53 - 1]) {
    expect(parseSize(formatSize(n))).toBe(n);
  }
  expect(formatSize(4194304)).toBe("4M");
  expect(formatSize(1536)).toBe("1536");
  expect(humanBytes(1536)).toBe("1.5 KiB");
  expect(humanBytes(12)).toBe("12 B");
});
