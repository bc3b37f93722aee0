// The documents keep their word: every test docs/promises.md names exists, every link in the README
// and docs/ points at a file of the repository, and the README stays a front door.
import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";

const ROOT = join(import.meta.dir, "..");
const read = (path: string) => readFileSync(join(ROOT, path), "utf8");
/** One line per paragraph: names are quoted across line breaks. */
const flat = (text: string) => text.replace(/\s*\n\s*/g, " ");

/** A test's name as written in its file: a plain string, or a template whose ${...} parts match anything. */
function namedIn(source: string, name: string): boolean {
  if (source.includes(name)) return true;
  const templates = source.match(/`[^`]*\$\{[^`]*`/g) ?? [];
  return templates.some((template) => {
    const pattern = template
      .slice(1, -1)
      .split(/\$\{[^}]*\}/)
      .map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"))
      .join(".+");
    return new RegExp(`^${pattern}$`).test(name);
  });
}

describe("docs/promises.md", () => {
  const promises = flat(read("docs/promises.md"));

  test("every test file it names exists, and holds every test it quotes", () => {
    const cited = [...promises.matchAll(/`(test\/[\w/.-]+\.ts)`((?:\s*(?:rows?|column)?\s*"[^"]+"[,;]?)*)/g)];
    expect(cited.length).toBeGreaterThan(10);
    const missing: string[] = [];
    for (const [, file, quoted] of cited) {
      if (!existsSync(join(ROOT, file as string))) {
        missing.push(file as string);
        continue;
      }
      const source = flat(read(file as string));
      for (const [, name] of (quoted ?? "").matchAll(/"([^"]+)"/g))
        if (!namedIn(source, name as string)) missing.push(`${file}: "${name}"`);
    }
    expect(missing).toEqual([]);
  });

  test("every matrix row it names is a row of test/faults/matrix.test.ts", () => {
    const matrix = flat(read("test/faults/matrix.test.ts"));
    const rows = [...promises.matchAll(/matrix rows? ((?:"[^"]+"(?:, | and |, and )?)+)/g)].flatMap(([, list]) =>
      [...(list ?? "").matchAll(/"([^"]+)"/g)].map(([, name]) => name as string),
    );
    expect(rows.length).toBeGreaterThan(5);
    expect(rows.filter((row) => !namedIn(matrix, row))).toEqual([]);
  });
});

describe("links", () => {
  const documents = ["README.md", "CONTRIBUTING.md", ...readdirSync(join(ROOT, "docs")).map((name) => `docs/${name}`)];

  test("every relative link in the README, CONTRIBUTING.md and docs/ points at a file that exists", () => {
    const broken: string[] = [];
    for (const document of documents) {
      for (const [, target] of read(document).matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)) {
        if (/^[a-z]+:/.test(target as string)) continue;
        if (!existsSync(join(ROOT, dirname(document), target as string))) broken.push(`${document} -> ${target}`);
      }
    }
    expect(broken).toEqual([]);
  });

  test("the README is a front door: at most 250 lines, the two commands first", () => {
    const readme = read("README.md");
    expect(readme.split("\n").length).toBeLessThanOrEqual(250);
    const firstBlock = /```sh\n([\s\S]*?)```/.exec(readme)?.[1] ?? "";
    expect(firstBlock).toContain("npm install -g bun@1.4.5 && bun install && bun run demo");
    expect(firstBlock).toContain("bun run test");
  });
});
