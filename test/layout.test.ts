// The layers of lib/, checked on every import, lowest first: the core (lib/*.ts), the chunk
// engine (lib/chunks), the image formats (lib/formats: gzip, zstd, qcow2 in and out), one folder per API generation (lib/api1, lib/api2: neither imports the
// other), the pairings of a source and a destination (lib/pairings: upload, download, drive to
// drive, which may take either API), the command-line part (lib/cli), which only scripts import. No
// layer imports a higher one. The emulator never imports the API clients, so it never tests them
// with their own code. The drivekit command (bin/) sits above the scripts it loads.
import { expect, test } from "bun:test";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative } from "node:path";

const ROOT = join(import.meta.dir, "..");

function files(dir: string): string[] {
  return readdirSync(join(ROOT, dir)).flatMap((name) => {
    const path = join(dir, name);
    return statSync(join(ROOT, path)).isDirectory() ? files(path) : path.endsWith(".ts") ? [path] : [];
  });
}

/** The project files a file imports, as paths from the root. */
function importsOf(file: string): string[] {
  const text = readFileSync(join(ROOT, file), "utf8");
  return [...text.matchAll(/(?:from|import)\s*\(?\s*"(\.{1,2}\/[^"]+)"/g)].map((match) =>
    relative(ROOT, join(ROOT, dirname(file), match[1] as string)),
  );
}

/** The layer of a file under lib/: core, chunks, formats, api1, api2, pairings, cli. */
function layerOf(path: string): string {
  const [top, second] = path.split("/");
  if (top !== "lib") return top as string;
  return second?.endsWith(".ts") ? "core" : (second as string);
}

const ALLOWED: Record<string, string[]> = {
  core: ["core"],
  chunks: ["core", "chunks"],
  formats: ["core", "chunks", "formats"],
  api1: ["core", "chunks", "formats", "api1"],
  api2: ["core", "chunks", "formats", "api2"],
  pairings: ["core", "chunks", "formats", "api1", "api2", "pairings"],
  cli: ["core", "chunks", "formats", "api1", "api2", "pairings", "cli"],
  emulator: ["core", "chunks", "emulator"],
};

for (const [layer, allowed] of Object.entries(ALLOWED)) {
  test(`${layer} imports only ${allowed.join(", ")}`, () => {
    const sources = layer === "emulator" ? files("emulator") : files("lib").filter((file) => layerOf(file) === layer);
    expect(sources.length).toBeGreaterThan(0);
    const wrong = sources.flatMap((file) =>
      importsOf(file)
        .filter((target) => !allowed.includes(layerOf(target)))
        .map((target) => `${file} -> ${target}`),
    );
    expect(wrong).toEqual([]);
  });
}

test("scripts import lib, never each other or the emulator", () => {
  const wrong = files("scripts").flatMap((file) =>
    importsOf(file)
      .filter((target) => !target.startsWith("lib/"))
      .map((target) => `${file} -> ${target}`),
  );
  expect(wrong).toEqual([]);
});

test("bin (the drivekit command) imports lib/cli, the scripts and package.json; nothing imports bin", () => {
  const wrong = files("bin").flatMap((file) =>
    importsOf(file)
      .filter((target) => !/^(lib\/cli\/|scripts\/|bin\/)/.test(target) && target !== "package.json")
      .map((target) => `${file} -> ${target}`),
  );
  expect(wrong).toEqual([]);
  const into = [...files("lib"), ...files("scripts"), ...files("emulator")].flatMap((file) =>
    importsOf(file)
      .filter((target) => target.startsWith("bin/"))
      .map((target) => `${file} -> ${target}`),
  );
  expect(into).toEqual([]);
});
