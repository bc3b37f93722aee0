// A client no one here wrote against the emulator: Apache libcloud's CloudSigma API 2.0 driver
// (Debian's python3-libcloud, installed by .ci/run) runs every drive call it has
// (test/clients/libcloud_drives.py); then the drives it left are checked on the emulator.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { installApi2, type Api2Stub } from "../../emulator/api2.ts";
import { startStub, type DriveStub } from "../../emulator/server.ts";

const SCRIPT = new URL("./libcloud_drives.py", import.meta.url).pathname;
/** Debian's python3 first: a python3 earlier on PATH (pyenv, a venv) may lack Debian's libcloud. */
const PYTHONS = ["/usr/bin/python3", "python3"];

/** The first python3 that imports libcloud, with its version; undefined when none does. */
function pythonWithLibcloud(): { python: string; version: string } | undefined {
  for (const python of PYTHONS) {
    try {
      const probe = Bun.spawnSync([python, "-c", "import libcloud; print(libcloud.__version__)"], {
        env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
      });
      if (probe.exitCode === 0) return { python, version: probe.stdout.toString().trim() };
    } catch {
      // not installed: try the next
    }
  }
  return undefined;
}

let stub: DriveStub;
let api2: Api2Stub;
beforeAll(async () => {
  stub = await startStub();
  api2 = await installApi2(stub);
});
afterAll(async () => {
  api2.stop();
  await stub.stop();
});

const sha = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

test("libcloud's CloudSigma 2.0 driver: every drive call works against the emulator", async () => {
  const found = pythonWithLibcloud();
  if (!found) {
    throw new Error(
      `no python3 with libcloud (tried ${PYTHONS.join(", ")}): install Debian's python3-libcloud (.ci/run does, as root)`,
    );
  }
  const child = Bun.spawn([found.python, SCRIPT], {
    // a clean environment: no proxy variables, nothing of this process's secrets but the emulator's
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/tmp", ...api2.env },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, status] = await Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
    child.exited,
  ]);
  expect({ status, stderr: stderr.trim() }).toEqual({ status: 0, stderr: "" });
  const report = JSON.parse(stdout) as {
    calls: string[];
    clone: string;
    library_source: string;
    from_library: string;
  };
  expect(report.calls).toEqual([
    "list_volumes",
    "create_volume",
    "ex_create_drive",
    "ex_get_drive",
    "ex_list_user_drives",
    "ex_list_drives_availability_groups",
    "ex_clone_drive",
    "ex_resize_drive",
    "ex_list_library_drives",
    "list_images",
    "ex_clone_drive (library drive)",
    "ex_get_drive (missing)",
    "destroy_volume",
    "ex_destroy_drive",
  ]);
  // what libcloud left: its two clones, the library one holding the library drive's bytes
  expect([...stub.drives.keys()].sort()).toEqual([report.clone, report.from_library].sort());
  const library = api2.libdrives.drives.get(report.library_source)!;
  const copy = stub.drives.get(report.from_library)!;
  expect(copy.size).toBe(library.size);
  expect(sha(stub.readDrive(copy.uuid))).toBe(sha(new Uint8Array(await Bun.file(library.path).arrayBuffer())));
  expect(stub.drives.get(report.clone)!.size).toBe(1024 ** 3);
  // the calls libcloud made, as the emulator saw them: a bare object on create, never a 418
  const creates = stub.requests.filter((r) => r.method === "POST" && r.path === "/api/2.0/drives/");
  expect(creates.map((r) => r.status)).toEqual([201, 201]);
  expect(stub.requests.filter((r) => r.status === 418)).toEqual([]);
}, 60_000);
