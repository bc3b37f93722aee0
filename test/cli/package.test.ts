// What users install: `bun run build` (dist/OP.js, each alone; dist/drivekit, no Bun needed where
// it runs) and the npm package (`npm pack`, `npm install -g` into an empty prefix: a drivekit
// command with Bun on PATH), each run against the emulator like the scripts.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startStub, type DriveStub } from "../../emulator/server.ts";
import { ROOT, spawnScript, startProcess } from "../helpers.ts";
import { version } from "../../package.json";

let stub: DriveStub;
let dir: string;
let drive: string;
/** A PATH that holds no bun: a folder with nothing in it. */
let noBun: string;
/** A PATH that holds bun and nothing else. */
let onlyBun: string;

beforeAll(async () => {
  stub = await startStub();
  dir = mkdtempSync(join(tmpdir(), "drivekit-package-"));
  noBun = join(dir, "empty-path");
  mkdirSync(noBun);
  onlyBun = join(dir, "bun-path");
  mkdirSync(onlyBun);
  symlinkSync(Bun.which("bun") as string, join(onlyBun, "bun"));
  drive = stub.addDrive(8192, { name: "packaged" }, new Uint8Array(8192).fill(5)).uuid;
});

afterAll(async () => {
  await stub.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** Run a command to its end, in `cwd`, with the emulator's settings and the given PATH. */
function runIn(command: string[], cwd: string, path: string) {
  return startProcess(command, { env: { ...stub.env, PATH: path }, cwd }).finished;
}

function sh(command: string[], cwd: string, env: Record<string, string> = {}) {
  const result = Bun.spawnSync(command, { cwd, env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" });
  if (result.exitCode !== 0) throw new Error(`${command.join(" ")} failed: ${result.stderr.toString()}`);
  return result.stdout.toString();
}

describe("bun run build", () => {
  beforeAll(() => {
    sh(["bun", "run", "build"], ROOT);
  });

  test("dist/drivekit runs where there is no Bun: --version, --help, an operation as the script does it", async () => {
    const binary = join(ROOT, "dist/drivekit");
    expect(Bun.which("bun", { PATH: noBun })).toBeNull();
    expect(await runIn([binary, "--version"], dir, noBun)).toMatchObject({ status: 0, stdout: `${version}\n` });
    const help = await runIn([binary, "--help"], dir, noBun);
    expect(help.status).toBe(0);
    expect(help.stdout).toContain("upload ");
    const info = await runIn([binary, "info", drive], dir, noBun);
    expect(info).toEqual(await spawnScript("info", [drive], { env: stub.env }));
    expect(info.stdout).toContain("name packaged");
    const back = join(dir, "back.img");
    const downloaded = await runIn([binary, "download", drive, back, "--quiet"], dir, noBun);
    expect(downloaded).toMatchObject({ status: 0, stdout: `${back}\n`, stderr: "" });
    expect(Buffer.from(await Bun.file(back).bytes()).equals(Buffer.alloc(8192, 5))).toBe(true);
    const wrong = await runIn([binary, "info", "nope"], dir, noBun);
    expect(wrong.status).toBe(2);
  });

  test("dist/OP.js, copied alone into another folder, runs there; dist/drivekit.js too", async () => {
    const alone = join(dir, "alone");
    mkdirSync(alone);
    copyFileSync(join(ROOT, "dist/info.js"), join(alone, "info.js"));
    copyFileSync(join(ROOT, "dist/drivekit.js"), join(alone, "drivekit.js"));
    const script = await runIn([join(onlyBun, "bun"), "info.js", drive], alone, onlyBun);
    expect(script).toEqual(await spawnScript("info", [drive], { env: stub.env }));
    const command = await runIn([join(onlyBun, "bun"), "drivekit.js", "info", drive], alone, onlyBun);
    expect(command).toEqual(script);
  });
});

describe("the npm package", () => {
  test("npm pack, then npm install -g into an empty prefix: a drivekit command that works (Bun on PATH)", async () => {
    const packs = join(dir, "packs");
    const prefix = join(dir, "prefix");
    mkdirSync(packs);
    // npm's cache in the test's folder; the package needs nothing from the registry
    const npm = { npm_config_cache: join(dir, "npm-cache"), npm_config_update_notifier: "false" };
    sh(["npm", "pack", "--pack-destination", packs], ROOT, npm);
    const tarball = readdirSync(packs).find((name) => name.endsWith(".tgz"));
    expect(tarball).toBe(`drivekit-${version}.tgz`);
    sh(
      [
        "npm",
        "install",
        "-g",
        "--prefix",
        prefix,
        "--offline",
        "--no-audit",
        "--no-fund",
        join(packs, tarball as string),
      ],
      dir,
      npm,
    );
    const installed = join(prefix, "bin/drivekit");
    expect(existsSync(installed)).toBe(true);
    const path = `${join(prefix, "bin")}:${onlyBun}`;
    expect(await runIn(["drivekit", "--version"], dir, path)).toMatchObject({ status: 0, stdout: `${version}\n` });
    const info = await runIn(["drivekit", "info", drive], dir, path);
    expect(info).toEqual(await spawnScript("info", [drive], { env: stub.env }));
    // what the package holds: the command, its package.json and the README
    const listed = sh(["tar", "-tzf", join(packs, tarball as string)], dir)
      .trim()
      .split("\n")
      .sort();
    expect(listed).toEqual(["package/README.md", "package/dist/drivekit.js", "package/package.json"]);
  });
});
