// The file name an API 2.0 download takes without FILE: the server's Content-Disposition reduced to a
// plain name in the current folder (no separators, no .., no control characters; the drive UUID when
// nothing is left), never replacing a file there without --force, resumed under that name.
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import download from "../../scripts/download.ts";
import { run } from "../helpers.ts";
import { dispositionName, safeFileName } from "../../lib/api2/file-name.ts";
import {
  api2,
  content,
  drive,
  freshFolder,
  originStarts,
  SIZE,
  useDirectEmulator,
  useDownloadDrive,
} from "./direct-emulator.ts";

useDirectEmulator();

test("Content-Disposition names are reduced to a safe base name", () => {
  const fallback = "8f9b42b1-1c5a-4a1e-9d8a-0123456789ab";
  const safe = (header: string) => safeFileName(dispositionName(header), fallback);
  expect(safe('attachment; filename="disk.img"')).toBe("disk.img");
  expect(safe("attachment; filename=disk.img")).toBe("disk.img");
  expect(safe("attachment; filename*=UTF-8''d%C3%A9j%C3%A0.img")).toBe("déjà.img");
  expect(safe('attachment; filename="../../etc/passwd"')).toBe("passwd");
  expect(safe("attachment; filename*=UTF-8''..%2F..%2Fetc%2Fshadow")).toBe("shadow");
  expect(safe('attachment; filename="/abs"')).toBe("abs");
  expect(safe('attachment; filename="a\\\\b"')).toBe("b");
  expect(safe('attachment; filename="x\u0001y\u001b[2J\u007f.img"')).toBe("xy[2J.img");
  expect(safe('attachment; filename=""')).toBe(fallback);
  expect(safe('attachment; filename=".."')).toBe(fallback);
  expect(safe('attachment; filename="a/"')).toBe(fallback);
  expect(safe('attachment; filename="\u0000\u0001"')).toBe(fallback);
  expect(safe(`attachment; filename="${"x".repeat(300)}"`)).toBe(fallback);
  expect(safe("attachment")).toBe(fallback);
});

describe("downloads named by the server", () => {
  useDownloadDrive();

  test("Content-Disposition attacks stay inside the folder", async () => {
    const cases: [string, string][] = [
      ['attachment; filename="../../etc/passwd"', "passwd"],
      ['attachment; filename="/abs"', "abs"],
      ['attachment; filename="a\\\\b"', "b"],
      ["attachment; filename*=UTF-8''..%2F..%2Fescape", "escape"],
      // raw control characters cannot cross HTTP; percent-encoded ones can
      ["attachment; filename*=UTF-8''evil%07%1B%5D0%3Bpwned%07%0A.img", "evil]0;pwned.img"],
      ['attachment; filename=""', drive],
      ['attachment; filename=".."', drive],
    ];
    for (const [header, expected] of cases) {
      api2.disposition = () => header;
      const parent = await freshFolder();
      const out = join(parent, "inner");
      await Bun.write(join(out, ".keep"), "");
      const result = await run(download, [drive, "--quiet"], { env: api2.env, cwd: out });
      expect({ header, status: result.status, stderr: result.stderr }).toEqual({ header, status: 0, stderr: "" });
      expect(result.stdout).toBe(`${join(out, expected)}\n`);
      expect(readdirSync(out).sort()).toEqual([".keep", expected].sort());
      expect(readdirSync(parent)).toEqual(["inner"]);
      expect(statSync(join(out, expected)).size).toBe(SIZE);
    }
  });

  test("no Content-Disposition: the drive UUID", async () => {
    api2.disposition = () => undefined;
    const out = await freshFolder();
    const result = await run(download, [drive, "--quiet"], { env: api2.env, cwd: out });
    expect(result.status).toBe(0);
    expect(readdirSync(out)).toEqual([drive]);
  });

  test("an existing file under the server's name is kept, before anything is written", async () => {
    const out = await freshFolder();
    writeFileSync(join(out, drive), "precious");
    const refused = await run(download, [drive], { env: api2.env, cwd: out });
    expect(refused.status).toBe(1);
    expect(refused.stderr).toContain("--force");
    expect(readFileSync(join(out, drive), "utf8")).toBe("precious");
    expect(readdirSync(out)).toEqual([drive]);
    const forced = await run(download, [drive, "--force", "--quiet"], { env: api2.env, cwd: out });
    expect(forced.status).toBe(0);
    expect(statSync(join(out, drive)).size).toBe(SIZE);
  });

  test("resumes under the server's name too", async () => {
    const out = await freshFolder();
    writeFileSync(join(out, `${drive}.part`), content.subarray(0, 4096));
    api2.originRequests.length = 0;
    const result = await run(download, [drive, "--quiet"], { env: api2.env, cwd: out });
    expect(result.status).toBe(0);
    // the name comes with the drive's first byte; the rest is asked from where the .part ends
    const [named, ...rest] = originStarts();
    expect(named).toEqual([0, 206]);
    expect(rest.length).toBeGreaterThan(0);
    for (const [start, status] of rest) expect([start >= 4096, status]).toEqual([true, 206]);
    expect(Buffer.from(readFileSync(join(out, drive))).equals(Buffer.from(content))).toBe(true);
  });
});
