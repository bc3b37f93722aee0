// copy.ts (and download.ts --consistent / --manifest) between two emulators, each with both APIs:
// every pairing byte-identical (sha256), a copy stopped by Ctrl-C or kill -9 resumed into each
// destination API, --consistent on a mounted drive a writer changes (the bytes of the snapshot's
// instant; nothing temporary left, after a failure too; kept for the rerun after a stop), fleets
// split in shards (each drive once) and rerun after a failure, and what goes wrong said in one line.
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ftruncateSync } from "node:fs";
import copy from "../scripts/copy.ts";
import download from "../scripts/download.ts";
import { startStub, type DriveStub, type Handler } from "../emulator/server.ts";
import { installApi2, type Api2Stub } from "../emulator/api2.ts";
import { imageBytes, sameBytes } from "./images.ts";
import { run, startScript, type RunResult } from "./helpers.ts";
import { errorLines, Hold, journaled, waitFor } from "./faults/support.ts";

const CHUNK = 64 * 1024;
const SIZE = 24 * CHUNK + 5000;
const ZEROS: Array<[number, number]> = [[3 * CHUNK, 7 * CHUNK]];
const UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";
const FAST = { baseMs: 1, capMs: 5 };

interface Side {
  stub: DriveStub;
  api2: Api2Stub;
  base: Handler[];
}

async function side(): Promise<Side> {
  const stub = await startStub();
  const api2 = await installApi2(stub);
  return { stub, api2, base: [...stub.handlers] };
}

function reset(s: Side): void {
  s.stub.handlers.splice(0, s.stub.handlers.length, ...s.base);
  s.stub.faults.length = 0;
  s.stub.requests.length = 0;
  s.api2.chunked.chunkPosts.length = 0;
  s.api2.snapshots.creatingMs = 0;
  s.api2.chunked.options.roundToKiB = undefined;
}

/** Where copies start (A) and where they go (B): two servers, two accounts. */
let here: Side;
let there: Side;
let dir: string;
let authThere: string;
let seed = 0;

beforeAll(async () => {
  here = await side();
  there = await side();
});
afterAll(async () => {
  for (const s of [here, there]) {
    s.api2.stop();
    await s.stub.stop();
  }
});
beforeEach(async () => {
  reset(here);
  reset(there);
  dir = await mkdtemp(join(tmpdir(), "drivekit-copy-script-"));
  authThere = join(dir, "there.auth");
  writeFileSync(authThere, `${there.stub.user}:${there.stub.secret}\n`);
});

const sha256 = (bytes: Uint8Array) => new Bun.CryptoHasher("sha256").update(bytes).digest("hex");
const uuidOf = (result: RunResult) => result.stdout.trim().split("\n").pop() ?? "";

/** The environment and flags of a copy from `from`'s API on `here` to `to`'s API on `there`. */
function pairing(from: 1 | 2, to: 1 | 2): { env: Record<string, string>; argv: string[] } {
  const source = from === 1 ? here.stub.env : here.api2.env;
  if (from !== to)
    return {
      env: { ...source, ...(to === 1 ? there.stub.env : there.api2.env) },
      argv: ["--api", `${from}`, "--to-api", `${to}`],
    };
  const uri = to === 1 ? there.stub.url : there.api2.uri;
  return { env: source, argv: ["--api", `${from}`, "--to-uri", uri, "--to-auth-file", authThere] };
}

function sourceDrive(side: Side = here, size = SIZE): { uuid: string; bytes: Uint8Array } {
  const bytes = imageBytes(size, ++seed, ZEROS);
  return { uuid: side.stub.addDrive(size, { name: `source ${seed}` }, bytes).uuid, bytes };
}

/** Temporary objects --consistent made on `side` that are still there. */
function temporaries(s: Side): string[] {
  return [
    ...[...s.stub.snapshots.values()].map((snap) => `snapshot ${snap.uuid} (${snap.name})`),
    ...[...s.stub.drives.values()]
      .filter((drive) => String(drive.fields.name).startsWith("drivekit-tmp"))
      .map((drive) => `drive ${drive.uuid}`),
  ];
}

const records = (cwd: string) => readdirSync(cwd).filter((name) => name.startsWith(".drivekit-"));

describe("every pairing: both drives hold the same bytes (sha256), --verify gives it", () => {
  for (const [from, to] of [
    [1, 2],
    [2, 2],
    [2, 1],
    [1, 1],
  ] as const) {
    test(`API ${from}.0 to API ${to}.0 on another server and account`, async () => {
      const { uuid, bytes } = sourceDrive();
      const { env, argv } = pairing(from, to);
      const result = await run(copy, [uuid, ...argv, "-c", "64k", "--verify", "--json"], { env, cwd: dir });
      expect(result).toMatchObject({ status: 0 });
      const report = JSON.parse(result.stdout) as Record<string, unknown>;
      expect(report).toEqual({
        source: uuid,
        destination: expect.stringMatching(new RegExp(`^${UUID}$`)),
        status: "done",
        bytes: SIZE,
        error: null,
        sha256: sha256(bytes),
      });
      const copied = report.destination as string;
      expect(here.stub.drives.has(copied)).toBe(false);
      expect(there.stub.drives.get(copied)?.size).toBe(SIZE);
      expect(sha256(there.stub.readDrive(copied))).toBe(sha256(bytes));
      // named after the source
      expect(there.stub.drives.get(copied)?.fields.name).toBe(`source ${seed}`);
      expect(records(dir)).toEqual([]);
    });
  }

  test("a destination that keeps sizes in whole KiB: the drive is rounded up, zeros past the source, verified", async () => {
    there.api2.chunked.options.roundToKiB = true;
    const { uuid, bytes } = sourceDrive();
    const { env, argv } = pairing(1, 2);
    const result = await run(copy, [uuid, ...argv, "-c", "64k", "--verify", "-n", "rounded"], { env, cwd: dir });
    expect(result.status).toBe(0);
    const copied = uuidOf(result);
    const rounded = Math.ceil(SIZE / 1024) * 1024;
    expect(there.stub.drives.get(copied)?.size).toBe(rounded);
    expect(sha256(there.stub.readDrive(copied, 0, SIZE))).toBe(sha256(bytes));
    expect(there.stub.drives.get(copied)?.fields.name).toBe("rounded");
  });
});

describe("a copy stopped by a signal resumes on rerun into the same drive, finished chunks not sent again", () => {
  for (const [from, to] of [
    [1, 2],
    [2, 1],
  ] as const) {
    for (const signal of ["SIGINT", "SIGKILL"] as const) {
      test(`API ${from}.0 to ${to}.0, ${signal === "SIGINT" ? "Ctrl-C" : "kill -9"}`, async () => {
        const { uuid, bytes } = sourceDrive();
        const { env, argv } = pairing(from, to);
        const data =
          to === 2
            ? { method: "POST", path: /^\/api\/2\.0\/upload\/chunk\// }
            : { method: "POST", path: /^\/drives\/[0-9a-f-]{36}\/write\/\d+$/ };
        const hold = new Hold(3);
        there.stub.handlers.unshift(hold.handler(data.method, data.path));
        const args = [uuid, ...argv, "-c", "64k", "--concurrency", "2"];
        const child = startScript("copy", args, { env, cwd: dir });
        await waitFor(() => hold.held >= 1 && journaled(dir).size >= 3, "the copy midway");
        const finished = journaled(dir);
        child.kill(signal);
        const first = await child.finished;
        hold.release(() => new Response("test over\n", { status: 503 }));
        reset(there);
        expect(first.stdout).toBe("");
        if (signal === "SIGINT") {
          expect(first.status).toBe(130);
          const { errors, stack } = errorLines(first);
          expect(stack).toBe(false);
          expect(errors).toHaveLength(1);
          expect(errors[0]).toMatch(
            new RegExp(
              `^copy: error: copy to drive ${UUID} stopped at .* of .*: interrupted \\(SIGINT\\); to resume, rerun the same command in \\S+ \\(journal \\.drivekit-journal-\\w+\\), or run: copy\\.ts ${uuid} -d ${UUID} --api ${from} --to-\\S+ \\S+ (--to-auth-file \\S+ )?-c 64k$`,
            ),
          );
        } else expect(first.status).toBe(137);
        const drives = there.stub.drives.size;
        const again = await run(copy, args, { env, cwd: dir, retry: FAST });
        expect(again).toMatchObject({ status: 0 });
        expect(again.stderr).toMatch(/resuming the copy into drive/);
        const copied = uuidOf(again);
        expect(there.stub.drives.size).toBe(drives);
        expect(sha256(there.stub.readDrive(copied, 0, SIZE))).toBe(sha256(bytes));
        const sent =
          to === 2
            ? there.api2.chunked.chunkPosts.filter((post) => post.status === 200).map((post) => post.chunk)
            : there.stub.requests
                .filter((r) => data.path.test(r.path) && r.status === 204)
                .map((r) => Number(r.path.split("/").pop()) / CHUNK);
        expect(sent.filter((chunk) => finished.has(chunk))).toEqual([]);
        expect(records(dir)).toEqual([]);
      });
    }
  }
});

/**
 * A writer on the source drive, as a running server is: a 4 KiB block at a time at changing
 * offsets, yielding between writes, until stopped (bounded).
 */
function writer(drive: string) {
  let running = true;
  let writes = 0;
  const done = (async () => {
    for (let i = 0; running && i < 100_000; i++) {
      here.stub.writeDrive(drive, ((i * 37) % (SIZE / 4096 - 1)) * 4096, imageBytes(4096, 1000 + i));
      writes++;
      await new Promise((resolve) => setImmediate(resolve));
    }
  })();
  return {
    writes: () => writes,
    stop: async () => {
      running = false;
      await done;
    },
  };
}

/** The bytes of every snapshot at the moment it is cloned (the instant the copy must hold). */
function captureSnapshots(): Uint8Array[] {
  const captured: Uint8Array[] = [];
  here.stub.handlers.unshift((request, path) => {
    const match = /^\/api\/2\.0\/snapshots\/([0-9a-f-]{36})\/action\/$/.exec(path);
    if (request.method === "POST" && match) captured.push(here.stub.readSnapshot(match[1] as string));
    return undefined;
  });
  return captured;
}

/** A --consistent copy of `uuid` from API 2.0 to 1.0 that stops, resumable, when the destination is full after 4 writes. */
async function stoppedConsistentCopy(uuid: string) {
  const { env, argv } = pairing(2, 1);
  let passed = 0;
  there.stub.handlers.unshift((request, path) =>
    request.method === "POST" && /\/write\/\d+$/.test(path) && ++passed > 4
      ? new Response("errors:full drive full (test)\n", { status: 507, headers: { "x-elastic-error": "full" } })
      : undefined,
  );
  const args = [uuid, ...argv, "-c", "64k", "--concurrency", "1", "--consistent"];
  return { env, args, first: await run(copy, args, { env, cwd: dir, retry: FAST }) };
}

describe("--consistent: a mounted drive a writer changes is copied as of the snapshot's instant", () => {
  test("copy: the bytes of the instant, not of the drive now; no snapshot or temporary drive left", async () => {
    const { uuid } = sourceDrive();
    here.stub.mount(uuid);
    const captured = captureSnapshots();
    const { env, argv } = pairing(2, 2);
    const hold = new Hold(2);
    there.stub.handlers.unshift(hold.handler("POST", /^\/api\/2\.0\/upload\/chunk\//));
    const changing = writer(uuid);
    const running = run(copy, [uuid, ...argv, "-c", "64k", "--consistent", "--verify"], { env, cwd: dir });
    await waitFor(() => hold.held >= 1, "the copy under way");
    // the drive goes on changing after the snapshot, while its copy is read
    const atSnapshot = changing.writes();
    await waitFor(() => changing.writes() > atSnapshot + 20, "writes after the snapshot");
    hold.release();
    const result = await running;
    await changing.stop();
    expect(result).toMatchObject({ status: 0 });
    expect(captured).toHaveLength(1);
    const instant = captured[0] as Uint8Array;
    const copied = uuidOf(result);
    expect(sameBytes(there.stub.readDrive(copied), instant)).toBe(true);
    expect(sameBytes(instant, here.stub.readDrive(uuid))).toBe(false);
    expect(result.stderr).toMatch(new RegExp(`removed snapshot ${UUID} and temporary drive ${UUID}`));
    expect(temporaries(here)).toEqual([]);
    expect(records(dir)).toEqual([]);
  });

  test("download: FILE holds the instant (named after the drive); nothing left", async () => {
    const { uuid } = sourceDrive();
    here.stub.mount(uuid);
    const captured = captureSnapshots();
    const changing = writer(uuid);
    const result = await run(download, [uuid, "--consistent"], { env: here.api2.env, cwd: dir });
    await changing.stop();
    expect(result).toMatchObject({ status: 0 });
    expect(result.stdout.trim()).toBe(join(dir, uuid));
    expect(sameBytes(new Uint8Array(readFileSync(join(dir, uuid))), captured[0] as Uint8Array)).toBe(true);
    expect(temporaries(here)).toEqual([]);
    expect(records(dir)).toEqual([]);
  });

  test("stopped part way: snapshot and clone kept and named; the rerun goes on from the same instant, then removes them", async () => {
    const { uuid } = sourceDrive();
    here.stub.mount(uuid);
    const captured = captureSnapshots();
    const { env, args, first } = await stoppedConsistentCopy(uuid);
    expect(first.status).toBe(1);
    const { errors } = errorLines(first);
    expect(errors).toHaveLength(1);
    const kept = new RegExp(
      `^copy: error: copy to drive ${UUID} stopped at .*: POST \\S+ failed: 507 full: drive full \\(test\\); to resume, rerun the same command in .*; snapshot (${UUID}) and temporary drive (${UUID}) are kept so that the rerun goes on from the same instant \\(to give up instead: destroy\\.ts --api 2 \\2 --yes; snapshot\\.ts destroy \\1 --yes\\)$`,
    ).exec(errors[0] as string);
    expect(kept).not.toBeNull();
    expect(temporaries(here)).toHaveLength(2);
    // the drive changes between the runs: the rerun must not take the new bytes
    here.stub.writeDrive(uuid, 0, imageBytes(SIZE, 4242));
    reset(there);
    const again = await run(copy, args, { env, cwd: dir, retry: FAST });
    expect(again).toMatchObject({ status: 0 });
    expect(again.stderr).toContain(`going on from snapshot ${kept?.[1]}`);
    expect(captured).toHaveLength(1);
    expect(sameBytes(there.stub.readDrive(uuidOf(again), 0, SIZE), captured[0] as Uint8Array)).toBe(true);
    expect(temporaries(here)).toEqual([]);
    expect(records(dir)).toEqual([]);
  });

  for (const removed of ["the temporary drive", "the snapshot and the temporary drive"] as const) {
    test(`stopped, then ${removed} removed by hand: ${removed === "the temporary drive" ? "the rerun clones the kept snapshot again and resumes" : "the rerun starts over from a new snapshot, the partial drive named"}`, async () => {
      const { uuid } = sourceDrive();
      const captured = captureSnapshots();
      const { env, args, first } = await stoppedConsistentCopy(uuid);
      expect(first.status).toBe(1);
      const partial = /copy to drive (\S+) stopped/.exec(first.stderr)?.[1] as string;
      const clone = [...here.stub.drives.values()].find((drive) =>
        String(drive.fields.name).startsWith("drivekit-tmp"),
      );
      if (!clone) throw new Error("no temporary drive");
      here.stub.removeDrive(clone);
      if (removed !== "the temporary drive")
        for (const snap of [...here.stub.snapshots.values()]) here.stub.removeSnapshot(snap);
      reset(there);
      const drives = there.stub.drives.size;
      const again = await run(copy, args, { env, cwd: dir, retry: FAST });
      expect(again).toMatchObject({ status: 0 });
      const copied = uuidOf(again);
      if (removed === "the temporary drive") {
        expect(again.stderr).toContain("its temporary drive is gone, cloning it again");
        expect(again.stderr).toMatch(new RegExp(`resuming the copy into drive ${partial}`));
        expect(copied).toBe(partial);
        expect(there.stub.drives.size).toBe(drives);
      } else {
        expect(again.stderr).toMatch(/are gone: starting over from a new snapshot/);
        expect(again.stderr).toContain(
          `drive ${partial} holds part of the copy from that instant: it is not used again (destroy.ts ${partial} removes it)`,
        );
        expect(copied).not.toBe(partial);
        expect(there.stub.drives.size).toBe(drives + 1);
      }
      expect(sameBytes(there.stub.readDrive(copied, 0, SIZE), captured.at(-1) as Uint8Array)).toBe(true);
      expect(temporaries(here)).toEqual([]);
      expect(records(dir)).toEqual([]);
    });
  }

  test("kill -9 part way: the rerun takes the record over and goes on from the same instant, then removes what it made", async () => {
    const { uuid } = sourceDrive();
    here.stub.mount(uuid);
    const captured = captureSnapshots();
    const { env, argv } = pairing(2, 1);
    const hold = new Hold(3);
    there.stub.handlers.unshift(hold.handler("POST", /^\/drives\/[0-9a-f-]{36}\/write\/\d+$/));
    const args = [uuid, ...argv, "-c", "64k", "--concurrency", "2", "--consistent"];
    const child = startScript("copy", args, { env, cwd: dir });
    await waitFor(() => hold.held >= 1 && journaled(dir).size >= 3, "the copy midway");
    child.kill("SIGKILL");
    expect((await child.finished).status).toBe(137);
    hold.release(() => new Response("test over\n", { status: 503 }));
    reset(there);
    expect(temporaries(here)).toHaveLength(2);
    here.stub.writeDrive(uuid, 0, imageBytes(SIZE, 4343));
    const again = await run(copy, args, { env, cwd: dir, retry: FAST });
    expect(again).toMatchObject({ status: 0 });
    expect(again.stderr).toMatch(/going on from snapshot/);
    expect(again.stderr).toMatch(/resuming the copy into drive/);
    expect(captured).toHaveLength(1);
    expect(sameBytes(there.stub.readDrive(uuidOf(again), 0, SIZE), captured[0] as Uint8Array)).toBe(true);
    expect(temporaries(here)).toEqual([]);
    expect(records(dir)).toEqual([]);
  });

  test("a failure nothing can resume (the destination refuses the new drive): snapshot and clone removed", async () => {
    const { uuid } = sourceDrive();
    const { env, argv } = pairing(2, 2);
    there.stub.handlers.unshift((request, path) =>
      request.method === "POST" && path === "/api/2.0/initupload/"
        ? Response.json([{ error_type: "permission", error_message: "quota exceeded (test)" }], { status: 403 })
        : undefined,
    );
    const result = await run(copy, [uuid, ...argv, "--consistent"], { env, cwd: dir });
    expect(result.status).toBe(1);
    const { errors } = errorLines(result);
    expect(errors).toEqual([
      expect.stringMatching(
        new RegExp(
          `^copy: error: POST /api/2\\.0/initupload/ failed: 403 permission: quota exceeded \\(test\\).*; removed snapshot ${UUID} and temporary drive ${UUID}$`,
        ),
      ),
    ]);
    expect(temporaries(here)).toEqual([]);
    expect(records(dir)).toEqual([]);
  });

  test("a snapshot that never becomes available: one line naming it after --timeout, and it is removed", async () => {
    here.api2.snapshots.creatingMs = Number.POSITIVE_INFINITY;
    const { uuid } = sourceDrive();
    const { env, argv } = pairing(2, 2);
    const result = await run(copy, [uuid, ...argv, "--consistent", "--timeout", "1"], { env, cwd: dir });
    expect(result.status).toBe(1);
    expect(errorLines(result).errors).toEqual([
      expect.stringMatching(
        new RegExp(
          `^copy: error: snapshot (${UUID}) is still creating after 1 s \\(--timeout\\); removed snapshot \\1; nothing was copied$`,
        ),
      ),
    ]);
    expect(temporaries(here)).toEqual([]);
    expect(there.stub.requests.filter((r) => r.path.endsWith("/initupload/"))).toEqual([]);
    expect(records(dir)).toEqual([]);
  });

  test("an API 1.0 source: status 2, nothing sent", async () => {
    const { uuid } = sourceDrive();
    const { env, argv } = pairing(1, 2);
    const result = await run(copy, [uuid, ...argv, "--consistent"], { env, cwd: dir });
    expect(result.status).toBe(2);
    expect(result.stderr).toContain("--consistent needs an API 2.0 source");
    expect([...here.stub.requests, ...there.stub.requests]).toEqual([]);
  });
});

describe("many drives: --manifest, --shard, --drives", () => {
  const manifest = (lines: string[]) => {
    const path = join(dir, "drives.txt");
    writeFileSync(path, `# the fleet\n\n${lines.join("\n")}\n`);
    return path;
  };
  const reports = (result: RunResult) =>
    result.stdout
      .trim()
      .split("\n")
      .filter(Boolean)
      .map((line) => JSON.parse(line) as Record<string, unknown>);

  test("three shards, each on its own machine (folder), copy every drive exactly once, identical", async () => {
    const sources = Array.from({ length: 7 }, () => sourceDrive(here, 3 * CHUNK + 100));
    const path = manifest(sources.map((s, i) => (i === 2 ? `${s.uuid} named-${i}` : s.uuid)));
    const { env, argv } = pairing(1, 2);
    const drives = there.stub.drives.size;
    const lines: Array<Record<string, unknown>> = [];
    for (const index of [1, 2, 3]) {
      const machine = join(dir, `machine-${index}`);
      await Bun.write(join(machine, ".keep"), "");
      const result = await run(
        copy,
        ["--manifest", path, "--shard", `${index}/3`, "--drives", "2", ...argv, "-c", "64k"],
        { env, cwd: machine },
      );
      expect(result).toMatchObject({ status: 0 });
      lines.push(...reports(result));
      expect(records(machine)).toEqual([]);
    }
    expect(lines.map((line) => line.source).sort()).toEqual(sources.map((s) => s.uuid).sort());
    expect(there.stub.drives.size).toBe(drives + 7);
    for (const line of lines) {
      expect(line).toMatchObject({ status: "done", bytes: 3 * CHUNK + 100, error: null });
      const source = sources.find((s) => s.uuid === line.source) as { bytes: Uint8Array };
      expect(sameBytes(there.stub.readDrive(line.destination as string), source.bytes)).toBe(true);
    }
    const named = lines.find((line) => line.source === sources[2]?.uuid)?.destination as string;
    expect(there.stub.drives.get(named)?.fields.name).toBe("named-2");
  });

  test("one drive fails: exit 1, its line says why; the rerun skips what finished and copies it", async () => {
    const sources = Array.from({ length: 4 }, () => sourceDrive(here, 2 * CHUNK));
    const broken = sources[1]?.uuid as string;
    const path = manifest(sources.map((s) => s.uuid));
    const { env, argv } = pairing(1, 1);
    here.stub.handlers.unshift((_request, urlPath) =>
      urlPath.startsWith(`/drives/${broken}/read/`)
        ? new Response("errors:usage refused by the test\n", { status: 400, headers: { "x-elastic-error": "usage" } })
        : undefined,
    );
    const drives = there.stub.drives.size;
    const first = await run(copy, ["--manifest", path, "--drives", "2", ...argv], { env, cwd: dir, retry: FAST });
    expect(first.status).toBe(1);
    const firstLines = reports(first);
    expect(firstLines.filter((line) => line.status === "done")).toHaveLength(3);
    expect(firstLines.find((line) => line.source === broken)).toMatchObject({
      status: "failed",
      destination: null,
      error: expect.stringContaining("400 usage: refused by the test"),
    });
    expect(errorLines(first).errors).toEqual([
      expect.stringMatching(
        /^copy: error: 1 of 4 drives failed \(their lines on stdout say why\); 3 done: rerun the same command in \S+ to retry the others$/,
      ),
    ]);

    reset(here);
    const again = await run(copy, ["--manifest", path, "--drives", "2", ...argv], { env, cwd: dir, retry: FAST });
    expect(again).toMatchObject({ status: 0 });
    const againLines = reports(again);
    expect(
      againLines
        .filter((line) => line.status === "skipped")
        .map((line) => line.source)
        .sort(),
    ).toEqual(
      sources
        .filter((s) => s.uuid !== broken)
        .map((s) => s.uuid)
        .sort(),
    );
    const fixed = againLines.find((line) => line.source === broken);
    expect(fixed).toMatchObject({ status: "done" });
    // one drive per source: the failed one's resumed, no other copied twice
    expect(there.stub.drives.size).toBe(drives + 4);
    expect(sameBytes(there.stub.readDrive(fixed?.destination as string), sources[1]?.bytes as Uint8Array)).toBe(true);
    expect(records(dir)).toEqual([]);
  });

  test("Ctrl-C stops every copy under way and starts no more: exit 130, their lines 'stopped'; the rerun finishes them", async () => {
    const sources = Array.from({ length: 5 }, () => sourceDrive(here, 4 * CHUNK));
    const path = manifest(sources.map((s) => s.uuid));
    const { env, argv } = pairing(1, 2);
    // every chunk waits: two copies under way, three not started
    const hold = new Hold(0);
    there.stub.handlers.unshift(hold.handler("POST", /^\/api\/2\.0\/upload\/chunk\//));
    const args = ["--manifest", path, "--drives", "2", ...argv, "-c", "64k", "--concurrency", "1"];
    const drives = there.stub.drives.size;
    const child = startScript("copy", args, { env, cwd: dir });
    await waitFor(() => hold.held >= 2, "two copies waiting");
    child.kill("SIGINT");
    const first = await child.finished;
    hold.release(() => new Response("test over\n", { status: 503 }));
    reset(there);
    expect(first.status).toBe(130);
    const lines = reports(first);
    expect(lines.map((line) => line.status)).toEqual(["stopped", "stopped"]);
    expect(lines[0]?.error).toMatch(/interrupted \(SIGINT\); to resume/);
    expect(errorLines(first).errors).toEqual([
      expect.stringMatching(
        /^copy: error: copy of manifest \S+ interrupted \(SIGINT\): 0 of 5 drives done, 5 to go; rerun the same command in \S+ to go on$/,
      ),
    ]);
    const again = await run(copy, args, { env, cwd: dir, retry: FAST });
    expect(again).toMatchObject({ status: 0 });
    const againLines = reports(again);
    expect(againLines.map((line) => line.status)).toEqual(Array(5).fill("done"));
    // the two stopped copies went on into the drives they had started: one drive per source
    expect(there.stub.drives.size).toBe(drives + 5);
    expect(again.stderr.match(/resuming the copy into drive/g)).toHaveLength(2);
    for (const line of againLines) {
      const source = sources.find((s) => s.uuid === line.source) as { bytes: Uint8Array };
      expect(sameBytes(there.stub.readDrive(line.destination as string), source.bytes)).toBe(true);
    }
    expect(records(dir)).toEqual([]);
  });

  test("download --manifest --dir: one file per drive in DIR, named by the line or after the drive", async () => {
    const sources = Array.from({ length: 3 }, () => sourceDrive(here, 2 * CHUNK + 7));
    const path = manifest([`${sources[0]?.uuid} first.img`, sources[1]?.uuid as string, sources[2]?.uuid as string]);
    const out = join(dir, "backup");
    await Bun.write(join(out, ".keep"), "");
    const result = await run(download, ["--manifest", path, "--dir", out, "--drives", "3"], {
      env: here.stub.env,
      cwd: dir,
    });
    expect(result).toMatchObject({ status: 0 });
    const lines = reports(result);
    expect(lines.map((line) => line.destination).sort()).toEqual(
      [join(out, "first.img"), join(out, sources[1]?.uuid as string), join(out, sources[2]?.uuid as string)].sort(),
    );
    for (const line of lines) {
      const source = sources.find((s) => s.uuid === line.source) as { bytes: Uint8Array };
      expect(sameBytes(new Uint8Array(readFileSync(line.destination as string)), source.bytes)).toBe(true);
    }
  });

  test("a line that is not a UUID: status 2 naming the line, nothing sent", async () => {
    const path = manifest([sourceDrive().uuid, "web-01 www"]);
    const { env, argv } = pairing(1, 2);
    const result = await run(copy, ["--manifest", path, ...argv], { env, cwd: dir });
    expect(result.status).toBe(2);
    expect(errorLines(result).errors).toEqual([
      `copy: error: manifest ${path} line 4: 'web-01' is not a drive UUID (each line: DRIVE [NAME]; # starts a comment)`,
    ]);
    expect([...here.stub.requests, ...there.stub.requests]).toEqual([]);
  });
});

describe("what goes wrong: one line, nothing lost", () => {
  for (const [change, by] of [
    ["grows", CHUNK],
    ["shrinks", -8 * CHUNK],
  ] as const) {
    test(`the source ${change} while it is copied: exit 1 saying so, the drive the copy made destroyed`, async () => {
      const { uuid } = sourceDrive();
      const { env, argv } = pairing(1, 2);
      const hold = new Hold(2);
      there.stub.handlers.unshift(hold.handler("POST", /^\/api\/2\.0\/upload\/chunk\//));
      const drives = there.stub.drives.size;
      const running = run(copy, [uuid, ...argv, "-c", "64k", "--concurrency", "1"], { env, cwd: dir, retry: FAST });
      await waitFor(() => hold.held >= 1, "the copy under way");
      const drive = here.stub.drives.get(uuid);
      if (!drive) throw new Error("no source drive");
      drive.size = SIZE + by;
      ftruncateSync(drive.fd, drive.size);
      hold.release();
      const result = await running;
      expect(result.status).toBe(1);
      expect(errorLines(result).errors).toEqual([
        expect.stringMatching(
          new RegExp(
            `^copy: error: drive ${uuid} changed size while it was copied \\(${SIZE} bytes when the copy began, ${SIZE + by} now\\): copy it again once it stays still .*; drive ${UUID}, which this copy started, is destroyed$`,
          ),
        ),
      ]);
      expect(there.stub.drives.size).toBe(drives);
      expect(records(dir)).toEqual([]);
    });
  }

  test("the destination's credentials are wrong: exit 1 naming the side, before anything is made, the secret nowhere", async () => {
    const { uuid } = sourceDrive();
    writeFileSync(authThere, `${there.stub.user}:not-the-secret-at-all\n`);
    const { env, argv } = pairing(2, 2);
    const result = await run(copy, [uuid, ...argv, "--consistent"], { env, cwd: dir });
    expect(result.status).toBe(1);
    expect(errorLines(result).errors).toEqual([
      expect.stringMatching(
        new RegExp(
          `^copy: error: the destination \\(API 2, http://127\\.0\\.0\\.1:${there.stub.port}\\) refused its credentials: GET /api/2\\.0/drives/\\?limit=1 failed: 401 .*`,
        ),
      ),
    ]);
    expect(`${result.stdout}${result.stderr}`).not.toContain("not-the-secret-at-all");
    expect(here.stub.requests.filter((r) => r.method !== "GET")).toEqual([]);
    expect(there.stub.requests.filter((r) => r.method !== "GET")).toEqual([]);
    expect(temporaries(here)).toEqual([]);
  });

  test("the source's credentials are wrong: exit 1 naming the side, nothing sent to the destination", async () => {
    const { uuid } = sourceDrive();
    const result = await run(copy, [uuid, "--api", "1", "--to-api", "2"], {
      env: { EHURI: here.stub.url, EHAUTH: `${here.stub.user}:wrong-secret-here`, ...there.api2.env },
      cwd: dir,
    });
    expect(result.status).toBe(1);
    expect(errorLines(result).errors).toEqual([
      expect.stringMatching(
        /^copy: error: the source \(API 1, http:\/\/127\.0\.0\.1:\d+\) refused its credentials: GET \/drives\/\S+\/info failed: 401 auth.*/,
      ),
    ]);
    expect(there.stub.requests).toEqual([]);
  });

  test("the destination refuses the new drive (full): one line, nothing made, nothing kept", async () => {
    const { uuid } = sourceDrive();
    const { env, argv } = pairing(2, 1);
    there.stub.fault({
      method: "POST",
      path: /^\/drives\/create$/,
      action: { status: 507, kind: "full", message: "no space for a new drive" },
    });
    const drives = there.stub.drives.size;
    const result = await run(copy, [uuid, ...argv], { env, cwd: dir });
    expect(result.status).toBe(1);
    expect(errorLines(result).errors).toEqual([
      "copy: error: POST /drives/create failed: 507 full: no space for a new drive",
    ]);
    expect(there.stub.drives.size).toBe(drives);
    expect(records(dir)).toEqual([]);
  });

  test("a destination drive smaller than the source: refused before the snapshot is taken", async () => {
    const { uuid } = sourceDrive();
    const small = there.stub.addDrive(SIZE - 4096).uuid;
    const { env, argv } = pairing(2, 1);
    const result = await run(copy, [uuid, ...argv, "-d", small, "--consistent"], { env, cwd: dir });
    expect(result.status).toBe(1);
    expect(errorLines(result).errors).toEqual([
      `copy: error: drive ${small} is ${SIZE - 4096} bytes, smaller than drive ${uuid} (${SIZE} bytes)`,
    ]);
    expect(here.stub.requests.filter((r) => r.method !== "GET")).toEqual([]);
  });

  test("the same drive as source and destination, and other wrong calls: status 2, nothing sent", async () => {
    const { uuid } = sourceDrive();
    const { env, argv } = pairing(1, 1);
    for (const [args, says] of [
      [[uuid, "-d", uuid.toUpperCase(), ...argv], `drive ${uuid} cannot be copied onto itself`],
      [[...argv], "missing DRIVE (the drive to copy), or --manifest FILE"],
      [[uuid, "--shard", "1/2", ...argv], "--shard and --drives go with --manifest"],
      [[uuid, "--to-api", "1", "--to-location", "fra"], "--to-location names a CloudSigma (API 2.0) location"],
      [[uuid, "--to-uri", "http://example.com/"], "--to-uri http://example.com uses plain http"],
      [
        [uuid, "--to-api", "2", "--to-uri", there.api2.uri, "--to-auth-file", authThere, "-c", "4k"],
        "invalid --chunk 4k",
      ],
    ] as const) {
      const result = await run(copy, [...args], { env, cwd: dir });
      expect({ status: result.status, stderr: result.stderr }).toMatchObject({
        status: 2,
        stderr: expect.stringContaining(says),
      });
    }
    expect([...here.stub.requests, ...there.stub.requests]).toEqual([]);
    expect(existsSync(join(dir, "drives.txt"))).toBe(false);
  });
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});
