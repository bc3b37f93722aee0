// The drivekit command: its operations are the scripts (names, summaries, examples that parse),
// `drivekit OP ARGS` does what `scripts/OP.ts ARGS` does (output and exit statuses, a signal
// included), its own calls (--help, --version, wrong ones), and --help loads no operation.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { OPERATIONS } from "../../bin/operations.ts";
import { summaryOf, type AnyOperation } from "../../lib/cli/command.ts";
import { checkArgv } from "../../lib/cli/runner.ts";
import { startStub, type DriveStub } from "../../emulator/server.ts";
import { ROOT, spawnDrivekit, spawnScript, startProcess } from "../helpers.ts";
import { version } from "../../package.json";

const SCRIPTS = readdirSync(join(ROOT, "scripts"))
  .filter((name) => name.endsWith(".ts"))
  .map((name) => name.slice(0, -3));

let stub: DriveStub;
let dir: string;

beforeAll(async () => {
  stub = await startStub();
  dir = mkdtempSync(join(tmpdir(), "drivekit-cmd-"));
});

afterAll(async () => {
  await stub.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** An example's arguments as a shell splits them (quotes kept together). */
function shellWords(text: string): string[] {
  return [...text.matchAll(/"([^"]*)"|'([^']*)'|(\S+)/g)].map((match) => match[1] ?? match[2] ?? match[3] ?? "");
}

describe("the operations are the scripts", () => {
  test("one entry per script, the same name, its summary the description's first paragraph", async () => {
    expect(Object.keys(OPERATIONS).sort()).toEqual([...SCRIPTS].sort());
    for (const [name, entry] of Object.entries(OPERATIONS)) {
      const command = (await entry.load()).default;
      expect(command).toBe((await import(join(ROOT, "scripts", `${name}.ts`))).default);
      expect(command.meta.name).toBe(name);
      expect(entry.summary).toBe(summaryOf(command.meta));
    }
  });

  test("every example calls its operation with flags it has and arguments it takes", async () => {
    for (const entry of Object.values(OPERATIONS)) {
      const command: AnyOperation = (await entry.load()).default;
      expect(command.meta.examples.length).toBeGreaterThan(0);
      for (const example of command.meta.examples)
        expect(() => checkArgv(command.args, shellWords(example.args))).not.toThrow();
    }
  });
});

describe("drivekit's own calls", () => {
  test("--version and -V print the package's version", async () => {
    for (const flag of ["--version", "-V"]) {
      const result = await spawnDrivekit([flag]);
      expect(result).toMatchObject({ status: 0, stdout: `${version}\n`, stderr: "" });
    }
  });

  test("-h, --help and help print the same list on stdout; help OP prints OP's help", async () => {
    const help = await spawnDrivekit(["--help"]);
    expect(help.status).toBe(0);
    expect((await spawnDrivekit(["-h"])).stdout).toBe(help.stdout);
    expect((await spawnDrivekit(["help"])).stdout).toBe(help.stdout);
    const op = await spawnDrivekit(["help", "upload"]);
    expect(op.status).toBe(0);
    expect(op.stdout).toBe((await spawnDrivekit(["upload", "--help"])).stdout);
  });

  test("wrong calls exit 2: no operation (the list on stderr), an unknown one or option (one line)", async () => {
    const none = await spawnDrivekit([]);
    expect(none.status).toBe(2);
    expect(none.stdout).toBe("");
    expect(none.stderr).toContain("Operations:");
    const unknown = await spawnDrivekit(["uplaod", "disk.img"]);
    expect(unknown).toMatchObject({
      status: 2,
      stdout: "",
      stderr: "drivekit: error: unknown operation 'uplaod' (drivekit --help lists them)\n",
    });
    const option = await spawnDrivekit(["--bogus"]);
    expect(option.status).toBe(2);
    expect(option.stderr.trim().split("\n")).toEqual(["drivekit: error: unknown option '--bogus' (drivekit --help)"]);
    const shell = await spawnDrivekit(["completion", "fish"]);
    expect(shell.status).toBe(2);
    expect(shell.stderr).toBe("drivekit: error: completion needs a shell, bash or zsh: drivekit completion bash\n");
  });
});

describe("drivekit OP runs the script's operation", () => {
  test("the same output and exit status as scripts/OP.ts: a result, a wrong call (2), a failure (1)", async () => {
    const drive = stub.addDrive(4096, { name: "same" }).uuid;
    const env = stub.env;
    for (const argv of [
      ["list"],
      ["info", drive],
      ["info", drive, "--json"],
      ["info", "not-a-uuid"],
      ["info", "00000000-0000-4000-8000-000000000000"],
      ["read", drive, "0", "16", "--bogus"],
    ]) {
      const [name, ...rest] = argv as [string, ...string[]];
      const script = await spawnScript(name, rest, { env });
      const command = await spawnDrivekit(argv, { env });
      expect(command).toEqual(script);
    }
    const statuses = await Promise.all(
      [["info", "not-a-uuid"], ["info", "00000000-0000-4000-8000-000000000000"], ["list"]].map(
        async (argv) => (await spawnDrivekit(argv, { env })).status,
      ),
    );
    expect(statuses).toEqual([2, 1, 0]);
  });

  test("Ctrl-C stops a transfer run as drivekit upload with status 130 and the resume hint", async () => {
    const image = join(dir, "interrupted.img");
    await Bun.write(image, new Uint8Array(40 * 65536).fill(7));
    // slow writes, so that the signal lands in the middle; the third write's arrival is the cue
    stub.fault({ method: "POST", path: /\/write\//, action: { delayMs: 40 } });
    let cue: () => void = () => undefined;
    const third = new Promise<void>((resolve) => (cue = resolve));
    let seen = 0;
    stub.handlers.unshift((request, path) => {
      if (request.method === "POST" && path.includes("/write/") && ++seen === 3) cue();
      return undefined;
    });
    try {
      const child = startProcess(
        ["bun", `${ROOT}bin/drivekit.ts`, "upload", image, "-c", "64k", "--concurrency", "2", "--compress", "never"],
        { env: stub.env, cwd: dir },
      );
      await third;
      child.kill("SIGINT");
      const result = await child.finished;
      expect(result.status).toBe(130);
      expect(result.stdout).toBe("");
      expect(result.stderr).toMatch(/^upload: error: .*interrupted \(SIGINT\).*rerun the same command/m);
    } finally {
      stub.reset();
    }
  });
});

describe("--help loads no operation", () => {
  /** The project files a file imports when it runs: static imports, not `import type`, not import(). */
  function runtimeImports(file: string): string[] {
    const text = readFileSync(join(ROOT, file), "utf8");
    return [...text.matchAll(/^import\s+(?!type\s)[^;]*?from\s+"([^"]+)"/gm)].map((match) => {
      const target = match[1] as string;
      return target.startsWith(".") ? relative(ROOT, join(ROOT, dirname(file), target)) : target;
    });
  }

  test("what bin/drivekit.ts loads before it looks at its arguments: the list, the help renderer, package.json", () => {
    const loaded = new Set<string>();
    const queue = ["bin/drivekit.ts"];
    // bounded: each file is taken once
    while (queue.length > 0) {
      const file = queue.shift() as string;
      if (loaded.has(file)) continue;
      loaded.add(file);
      if (file.endsWith(".ts")) queue.push(...runtimeImports(file));
    }
    expect([...loaded].sort()).toEqual(["bin/drivekit.ts", "bin/operations.ts", "lib/cli/help.ts", "package.json"]);
  });
});
