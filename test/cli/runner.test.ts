import { describe, expect, test } from "bun:test";
import { checkArgv, maskSecrets } from "../../lib/cli/runner.ts";
import { progressLine } from "../../lib/cli/progress.ts";
import { UsageError } from "../../lib/errors.ts";

const argsDef = {
  drive: { type: "positional" },
  file: { type: "positional", required: false },
  chunk: { type: "string", alias: "c" },
  "auth-file": { type: "string" },
  force: { type: "boolean", alias: "f" },
} as const;

test("known flags in every spelling citty accepts pass; unknown ones and extra arguments are refused", () => {
  const ok = [
    ["D"],
    ["D", "F"],
    ["D", "-c", "4M"],
    ["D", "--chunk", "4M"],
    ["D", "--auth-file", "p"],
    ["D", "--authFile", "p"],
    ["D", "--no-force"],
    ["D", "-f"],
    ["D", "-"],
    ["D", "--", "-weird-name"],
  ];
  for (const argv of ok) expect(() => checkArgv(argsDef, argv)).not.toThrow();
  expect(() => checkArgv(argsDef, ["D", "--bogus"])).toThrow(/unknown option '--bogus'/);
  expect(() => checkArgv(argsDef, ["D", "-x"])).toThrow(UsageError);
  expect(() => checkArgv(argsDef, ["D", "F", "G"])).toThrow(/too many arguments/);
  expect(() => checkArgv(argsDef, ["D", "--chunk"])).toThrow(/needs a value/);
  expect(() => checkArgv(argsDef, ["D", "--", "a", "b"])).toThrow(/too many/);
});

test("the progress line: bytes, percent, MB/s, ETA, note", () => {
  const line = progressLine("upload", 512 * 1024 * 1024, 1024 * 1024 * 1024, 10_000, "3 zero chunks skipped");
  expect(line).toBe("upload 512 MiB / 1.0 GiB  50.0%  53.7 MB/s  ETA 00:10  3 zero chunks skipped");
  expect(progressLine("download", 0, 100, 0)).toBe("download 0 B / 100 B  0.0%  0.0 MB/s  ETA --:--");
  expect(progressLine("x", 1, 1000 * 1024 * 1024 * 1024, 1000)).toContain("ETA ");
});

test("--chunk and --concurrency bounds", async () => {
  const { parseChunk, parseConcurrency } = await import("../../lib/cli/args.ts");
  expect(parseChunk("4M")).toBe(4194304);
  expect(parseChunk("64k")).toBe(65536);
  for (const bad of ["4095", "5M", "1000000", "2k"]) expect(() => parseChunk(bad)).toThrow(/--chunk/);
  expect(parseConcurrency(undefined)).toBeUndefined();
  expect(parseConcurrency("8")).toBe(8);
  for (const bad of ["0", "65", "2.5", "x", ""]) expect(() => parseConcurrency(bad)).toThrow(/--concurrency/);
});

describe("maskSecrets", () => {
  test("a one-letter secret leaves ordinary words alone", () => {
    const message = "upload stopped at 16 MiB: no space left on device; x.img.part is kept";
    expect(maskSecrets(message, ["p"])).toBe(message);
  });

  test("a one-letter secret is masked where a secret shows: a user:secret pair", () => {
    expect(maskSecrets("auth file line 'ops:p' is not valid", ["p"])).toBe("auth file line 'ops:****' is not valid");
  });

  test("a Basic authorization value and a URL's userinfo are masked whatever the secret", () => {
    const text = "authorization: Basic b3BzOnA= sent to https://ops:p@api.example.com/drives";
    expect(maskSecrets(text, ["p"])).toBe("authorization: Basic **** sent to https://****@api.example.com/drives");
  });

  test("a long secret is masked anywhere it appears", () => {
    expect(maskSecrets("server said: bad key hunter2-very-secret", ["hunter2-very-secret"])).toBe(
      "server said: bad key ****",
    );
  });
});
