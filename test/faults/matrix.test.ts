// The fault matrix: the faults an operator meets (rows) on every transfer path (columns). Each cell
// says how the run must end: its exit status, its one error line (never a stack trace), what it
// leaves in its folder, and what a rerun without the fault ends with: the identical bytes without
// sending finished chunks again, or, where a path cannot keep that promise, its documented end.
// Both downloads are chunked (the 2.0 one in ranged GETs), every chunk retried on its own.
// Signals, kill -9 and overlapping runs use spawned processes; the rest run in this process with
// retries paced fast (what is tested is how a run ends, not how long it waits between tries).
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run, startScript, type RunResult } from "../helpers.ts";
import type { RetryPolicy } from "../../lib/retry.ts";
import { sameBytes } from "../images.ts";
import { Emulator, errorLines, FAST_RETRY, Hold, journaled, leftIn, mountTmpfs, waitFor } from "./support.ts";
import { PATH_NAMES, transferPaths, type PathName, type Transfer, type TransferPath } from "./paths.ts";

const MiB = 1024 * 1024;
/** Longer than any run here lasts: a stall ends with the run (a signal, a timeout, a restart). */
const STALL_MS = 30_000;
const UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";

interface Outcome {
  status: number;
  /** The one error line, as a regex source: the reason within the path's stop wording (see `line`), or the whole of it when `plain`. */
  says?: string;
  plain?: boolean;
  /** Exactly what the run leaves in its folder: a resume journal, a .part (or, where a reset may lose what was in flight, maybe), the final file. */
  left?: { journal?: boolean; part?: boolean | "maybe"; final?: boolean };
  /** A rerun without the fault ends identical (resuming), identical on a new drive (fresh), or fails saying this. */
  rerun?: "identical" | "fresh" | string;
}

/** A cell: the outcome, or why the fault does not apply to the path. */
type Cell = Outcome | { notApplicable: string };

interface Row {
  fault: string;
  /** Bring the fault about on `path` and run the transfer: the run the cell describes. */
  provoke(path: TransferPath, transfer: Transfer): Promise<RunResult>;
  cells: Record<PathName, Cell>;
  /** The run was killed: its lock stays behind, for the rerun to take over. */
  killed?: boolean;
  /** Why the row cannot run here (no tmpfs), printed when skipped. */
  skip?: () => string | undefined;
}

const emulator = new Emulator();
let paths: TransferPath[];
let dir: string;
let seed = 0;
const holds: Hold[] = [];
const cleanups: Array<() => void> = [];
/** What must happen before a rerun (the ENOSPC row frees its disk). */
const beforeRerun: Array<() => void> = [];

beforeAll(async () => {
  await emulator.start();
  paths = transferPaths(emulator);
});
afterAll(async () => {
  await emulator.stop();
});
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "drivekit-faults-"));
});
afterEach(async () => {
  // held requests of a run that is gone get an error, never a late write
  for (const hold of holds.splice(0)) hold.release(() => new Response("test over\n", { status: 503 }));
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
  emulator.clear();
  await rm(dir, { recursive: true, force: true });
});

// ---- ways to run and to stop a transfer midway ----

function inProcess(
  path: TransferPath,
  transfer: Transfer,
  extra: string[] = [],
  retry: Partial<RetryPolicy> = FAST_RETRY,
): Promise<RunResult> {
  return run(path.command, [...transfer.argv, ...extra], { env: path.env(), cwd: transfer.cwd, retry });
}

function spawned(path: TransferPath, transfer: Transfer, extra: string[] = []) {
  return startScript(path.script, [...transfer.argv, ...extra], { env: path.env(), cwd: transfer.cwd });
}

/**
 * Stop `path` in the middle of its data: chunked paths after 3 chunks (the rest held), the direct
 * upload stalled after 1 MiB of its body. Returns the event that says the run got there.
 */
function stopMidway(path: TransferPath, transfer: Transfer): () => boolean {
  if (path.chunked) {
    const hold = new Hold(3);
    holds.push(hold);
    path.hold(hold);
    return () => hold.held >= 1 && journaled(transfer.cwd).size >= 3;
  }
  const fault = emulator.stub.fault({ ...path.body, action: { delayMs: STALL_MS, afterBytes: MiB } });
  return () => (fault.acted ?? 0) >= 1;
}

/** Answer the path's data requests with an error: a few of many (chunked paths), or its one request. */
function failSome(path: TransferPath, action: { status: number; kind?: string; message: string }) {
  emulator.stub.fault({ ...path.data, every: path.chunked ? 3 : 1, times: path.chunked ? 3 : 1, action });
}

function signalled(signal: NodeJS.Signals) {
  return async (path: TransferPath, transfer: Transfer): Promise<RunResult> => {
    const midway = stopMidway(path, transfer);
    const child = spawned(path, transfer);
    await waitFor(midway, `${path.name} midway`);
    child.kill(signal);
    return child.finished;
  };
}

// ---- what each path says when it stops ----

/** The path's one-line stop message around `reason` (a regex source), or `reason` alone when plain. */
function line(path: PathName, reason: string, plain = false): RegExp {
  if (plain) return new RegExp(`^(upload|download|copy): error: ${reason}$`);
  const lines: Record<PathName, string> = {
    "1.0 upload": `upload: error: upload to drive ${UUID} stopped at .* of .*: ${reason}; to resume, rerun the same command in \\S+ \\(journal \\.drivekit-journal-\\w+\\), or run: upload\\.ts -d ${UUID} -o \\d+ \\S+`,
    "1.0 download": `download: error: download of drive ${UUID} stopped at .* of .*: ${reason}; out\\.img\\.part is kept: rerun the same command in \\S+ to resume`,
    "2.0 chunked upload": `upload: error: upload to drive ${UUID} stopped at .* of .*: ${reason}; to resume, rerun the same command in \\S+ \\(journal \\.drivekit-journal-\\w+\\), or run: upload\\.ts --api 2 -d ${UUID} -c 65536 \\S+`,
    "2.0 direct upload": `upload: error: upload of \\S+ (failed|stopped) after .* of .*: ${reason}; not retried \\(a new attempt would create another drive\\); the server may have created a partial drive: check your drive list`,
    "2.0 download": `download: error: download of drive ${UUID} stopped at .* of .*: ${reason}; out\\.img\\.part is kept: rerun the same command in \\S+ to resume`,
    "copy 1.0 to 2.0": `copy: error: copy to drive ${UUID} stopped at .* of .*: ${reason}; to resume, rerun the same command in \\S+ \\(journal \\.drivekit-journal-\\w+\\), or run: copy\\.ts ${UUID} -d ${UUID} --api 1 --to-api 2 -c 64k`,
  };
  return new RegExp(`^${lines[path]}$`);
}

const DONE: Outcome = { status: 0 };
const JOURNAL = { journal: true };
const JOURNAL_PART = { journal: true, part: true };
const SINGLE = { notApplicable: "a single request, never retried: the 500 and 503 rows end it the same way" };

// ---- the matrix ----

const rows: Row[] = [
  {
    fault: "injected 500",
    provoke: (path, transfer) => {
      failSome(path, { status: 500, message: "injected fault" });
      return inProcess(path, transfer);
    },
    cells: {
      "1.0 upload": DONE,
      "1.0 download": DONE,
      "2.0 chunked upload": DONE,
      "2.0 direct upload": {
        status: 1,
        says: "POST \\S+ failed: 500 backend: injected fault \\(X-REQUEST-ID \\w+\\)",
        left: {},
        rerun: "identical",
      },
      "2.0 download": DONE,
      "copy 1.0 to 2.0": DONE,
    },
  },
  {
    fault: "injected 503",
    provoke: (path, transfer) => {
      failSome(path, { status: 503, message: "injected fault" });
      return inProcess(path, transfer);
    },
    cells: {
      "1.0 upload": DONE,
      "1.0 download": DONE,
      "2.0 chunked upload": DONE,
      "2.0 direct upload": {
        status: 1,
        says: "POST \\S+ failed: 503 backend: injected fault \\(X-REQUEST-ID \\w+\\)",
        left: {},
        rerun: "identical",
      },
      "2.0 download": DONE,
      "copy 1.0 to 2.0": DONE,
    },
  },
  {
    // 1.0: 409 with X-Elastic-Error busy; 2.0: 429 with a JSON error list
    fault: "busy",
    provoke: (path, transfer) => {
      const busy =
        path.api === 1
          ? { status: 409, kind: "busy", message: "Drive is busy" }
          : { status: 429, message: "Too many requests" };
      failSome(path, busy);
      // the 2.0 chunked upload's link requests are API calls too: busy there is retried as well
      if (path.name === "2.0 chunked upload")
        emulator.stub.fault({ method: "POST", path: /\/action\/$/, every: 4, times: 2, action: busy });
      return inProcess(path, transfer);
    },
    cells: {
      "1.0 upload": DONE,
      "1.0 download": DONE,
      "2.0 chunked upload": DONE,
      "2.0 direct upload": {
        status: 1,
        says: "POST \\S+ failed: 429 backend: Too many requests \\(X-REQUEST-ID \\w+\\)",
        left: {},
        rerun: "identical",
      },
      "2.0 download": DONE,
      "copy 1.0 to 2.0": DONE,
    },
  },
  {
    fault: "a 503 that does not pass",
    provoke: (path, transfer) => {
      let passed = 0;
      emulator.intercept((request, urlPath) =>
        request.method === path.data.method && path.data.path.test(urlPath) && passed++ >= 3
          ? path.error(503, "down for maintenance")
          : undefined,
      );
      return inProcess(path, transfer);
    },
    cells: {
      "1.0 upload": {
        status: 1,
        says: "POST \\S+ failed: 503 system: down for maintenance",
        left: JOURNAL,
        rerun: "identical",
      },
      "1.0 download": {
        status: 1,
        says: "GET \\S+ failed: 503 system: down for maintenance",
        left: JOURNAL_PART,
        rerun: "identical",
      },
      "2.0 chunked upload": {
        status: 1,
        says: "POST \\(upload link\\) failed: 503 backend: down for maintenance.*",
        left: JOURNAL,
        rerun: "identical",
      },
      "2.0 direct upload": SINGLE,
      "2.0 download": {
        status: 1,
        says: `GET /api/2\\.0/drives/${UUID}/download/ failed: 503 backend: down for maintenance.*`,
        left: JOURNAL_PART,
        rerun: "identical",
      },
      "copy 1.0 to 2.0": {
        status: 1,
        says: "POST \\(upload link\\) failed: 503 backend: down for maintenance.*",
        left: JOURNAL,
        rerun: "identical",
      },
    },
  },
  {
    fault: "dropped connection mid-body",
    provoke: (path, transfer) => {
      const afterBytes = path.chunked ? 32 * 1024 : MiB;
      emulator.stub.fault({
        ...path.body,
        every: path.chunked ? 3 : 1,
        times: path.chunked ? 3 : 1,
        action: { reset: true, afterBytes },
      });
      return inProcess(path, transfer);
    },
    cells: {
      "1.0 upload": DONE,
      "1.0 download": DONE,
      "2.0 chunked upload": DONE,
      "2.0 direct upload": { status: 1, says: "POST \\S+ failed: network: .*", left: {}, rerun: "identical" },
      "2.0 download": DONE,
      // a reset may take with it what the client had not read yet: the retry resumes from what arrived, if anything
      "copy 1.0 to 2.0": DONE,
    },
  },
  {
    fault: "stalled answer (--timeout 1)",
    provoke: (path, transfer) => {
      if (path.chunked) {
        const hold = new Hold(3);
        holds.push(hold);
        path.hold(hold);
      } else {
        stopMidway(path, transfer);
      }
      // two tries of 1 s each are enough to show a stall ends the run
      return inProcess(path, transfer, ["--timeout", "1"], { ...FAST_RETRY, attempts: 2 });
    },
    cells: {
      "1.0 upload": {
        status: 1,
        says: "POST \\S+ failed: timeout: nothing moved for 1 s",
        left: JOURNAL,
        rerun: "identical",
      },
      "1.0 download": {
        status: 1,
        says: "GET \\S+ failed: timeout: nothing moved for 1 s",
        left: JOURNAL_PART,
        rerun: "identical",
      },
      "2.0 chunked upload": {
        status: 1,
        says: "POST \\(upload link\\) failed: timeout: nothing moved for 1 s",
        left: JOURNAL,
        rerun: "identical",
      },
      "2.0 direct upload": {
        status: 1,
        says: "POST \\S+ failed: timeout: nothing moved for 1 s",
        left: {},
        rerun: "identical",
      },
      "2.0 download": {
        status: 1,
        says: "GET \\S+ failed: timeout: nothing moved for 1 s",
        left: JOURNAL_PART,
        rerun: "identical",
      },
      "copy 1.0 to 2.0": {
        status: 1,
        says: "POST \\(upload link\\) failed: timeout: nothing moved for 1 s",
        left: JOURNAL,
        rerun: "identical",
      },
    },
  },
  {
    fault: "Ctrl-C (SIGINT)",
    provoke: signalled("SIGINT"),
    cells: {
      "1.0 upload": { status: 130, says: "interrupted \\(SIGINT\\)", left: JOURNAL, rerun: "identical" },
      "1.0 download": { status: 130, says: "interrupted \\(SIGINT\\)", left: JOURNAL_PART, rerun: "identical" },
      "2.0 chunked upload": { status: 130, says: "interrupted \\(SIGINT\\)", left: JOURNAL, rerun: "identical" },
      "2.0 direct upload": { status: 130, says: "interrupted \\(SIGINT\\)", left: {}, rerun: "identical" },
      "2.0 download": { status: 130, says: "interrupted \\(SIGINT\\)", left: JOURNAL_PART, rerun: "identical" },
      "copy 1.0 to 2.0": { status: 130, says: "interrupted \\(SIGINT\\)", left: JOURNAL, rerun: "identical" },
    },
  },
  {
    fault: "SIGTERM",
    provoke: signalled("SIGTERM"),
    cells: {
      "1.0 upload": { status: 143, says: "interrupted \\(SIGTERM\\)", left: JOURNAL, rerun: "identical" },
      "1.0 download": { status: 143, says: "interrupted \\(SIGTERM\\)", left: JOURNAL_PART, rerun: "identical" },
      "2.0 chunked upload": { status: 143, says: "interrupted \\(SIGTERM\\)", left: JOURNAL, rerun: "identical" },
      "2.0 direct upload": { status: 143, says: "interrupted \\(SIGTERM\\)", left: {}, rerun: "identical" },
      "2.0 download": { status: 143, says: "interrupted \\(SIGTERM\\)", left: JOURNAL_PART, rerun: "identical" },
      "copy 1.0 to 2.0": { status: 143, says: "interrupted \\(SIGTERM\\)", left: JOURNAL, rerun: "identical" },
    },
  },
  {
    fault: "kill -9, then rerun",
    killed: true,
    provoke: signalled("SIGKILL"),
    cells: {
      "1.0 upload": { status: 137, left: JOURNAL, rerun: "identical" },
      "1.0 download": { status: 137, left: JOURNAL_PART, rerun: "identical" },
      "2.0 chunked upload": { status: 137, left: JOURNAL, rerun: "identical" },
      // the emulator drops a drive whose body was cut; a real server may keep it (docs/promises.md)
      "2.0 direct upload": { status: 137, left: {}, rerun: "identical" },
      "2.0 download": { status: 137, left: JOURNAL_PART, rerun: "identical" },
      "copy 1.0 to 2.0": { status: 137, left: JOURNAL, rerun: "identical" },
    },
  },
  {
    fault: "no space left on the local disk (ENOSPC)",
    skip: () => tmpfsProblem,
    provoke: async (path, transfer) => {
      const small = join(dir, "small");
      // downloads: room for 1.5 MiB of the 2.5; uploads: a folder already full (the journal and lock go there)
      const tmpfs = mountTmpfs(small, path.script === "download" ? "1536k" : "64k");
      const writes = path.script !== "download";
      if (typeof tmpfs === "string") throw new Error(tmpfs);
      cleanups.push(tmpfs.unmount);
      transfer.cwd = small;
      if (writes) {
        const filler = join(small, "filler");
        writeFileSync(filler, new Uint8Array(64 * 1024));
        beforeRerun.push(() => writeFileSync(filler, ""));
      } else {
        beforeRerun.push(() => tmpfs.resize("16m"));
      }
      const requestsBefore = emulator.stub.requests.length;
      const result = await inProcess(path, transfer);
      // an upload that cannot keep a journal stops before it sends anything; a copy, before it makes anything
      if (path.chunked && path.script === "upload") expect(emulator.stub.requests.length).toBe(requestsBefore);
      if (path.script === "copy")
        expect(emulator.stub.requests.slice(requestsBefore).filter((r) => r.method !== "GET")).toEqual([]);
      return result;
    },
    cells: {
      "1.0 upload": {
        status: 1,
        plain: true,
        says: "cannot create the lock \\S+: ENOSPC: no space left on device.*",
        left: {},
        rerun: "identical",
      },
      "1.0 download": { status: 1, says: "ENOSPC: no space left on device.*", left: JOURNAL_PART, rerun: "identical" },
      "2.0 chunked upload": {
        status: 1,
        plain: true,
        says: "cannot create the lock \\S+: ENOSPC: no space left on device.*",
        left: {},
        rerun: "identical",
      },
      // it keeps nothing in its folder: a full one does not matter
      "2.0 direct upload": DONE,
      "2.0 download": { status: 1, says: "ENOSPC: no space left on device.*", left: JOURNAL_PART, rerun: "identical" },
      "copy 1.0 to 2.0": {
        status: 1,
        plain: true,
        says: "cannot create the lock \\S+: ENOSPC: no space left on device.*",
        left: {},
        rerun: "identical",
      },
    },
  },
  {
    fault: "two runs of the same transfer at once",
    provoke: async (path, transfer) => {
      // the first run's data requests wait until the second one has had its answer
      const hold = path.chunked ? new Hold(0) : new Hold(0, 1);
      holds.push(hold);
      path.hold(hold);
      const first = spawned(path, transfer);
      await waitFor(() => hold.held >= 1, "the first run's data request");
      const before = emulator.stub.requests.length;
      const second = await inProcess(path, transfer);
      const sent = emulator.stub.requests.slice(before);
      hold.release();
      const firstResult = await first.finished;
      // the first run is not disturbed: it ends identical
      expect(firstResult.status).toBe(0);
      expect(sameBytes(path.result(transfer, firstResult) ?? new Uint8Array(), transfer.bytes)).toBe(true);
      if (second.status !== 0) {
        // refused before it made a drive, naming the first run (whose data requests all wait meanwhile)
        expect(second.stderr).toContain(`already running in process ${first.pid}`);
        expect(sent.filter((r) => /\/(create|initupload)\/?$/.test(r.path))).toEqual([]);
      } else {
        // the direct upload shares nothing: each run made its own whole drive
        expect(second.stdout.trim()).not.toBe(firstResult.stdout.trim());
      }
      return second;
    },
    cells: {
      "1.0 upload": {
        status: 1,
        plain: true,
        says: "the upload of \\S+ is already running in process \\d+ \\(lock \\S+\\): wait for it to finish, or stop it \\(kill \\d+\\) and run this again",
        left: {},
      },
      "1.0 download": {
        status: 1,
        plain: true,
        says: "a download into out\\.img\\.part is already running in process \\d+ \\(lock \\S+\\): wait for it to finish, or stop it \\(kill \\d+\\) and run this again",
        left: { final: true },
      },
      "2.0 chunked upload": {
        status: 1,
        plain: true,
        says: "the upload of \\S+ is already running in process \\d+ \\(lock \\S+\\): wait for it to finish, or stop it \\(kill \\d+\\) and run this again",
        left: {},
      },
      "2.0 direct upload": DONE,
      "2.0 download": {
        status: 1,
        plain: true,
        says: "a download into out\\.img\\.part is already running in process \\d+ \\(lock \\S+\\): wait for it to finish, or stop it \\(kill \\d+\\) and run this again",
        left: { final: true },
      },
      "copy 1.0 to 2.0": {
        status: 1,
        plain: true,
        says: "the copy of drive \\S+ is already running in process \\d+ \\(lock \\S+\\): wait for it to finish, or stop it \\(kill \\d+\\) and run this again",
        left: {},
      },
    },
  },
  {
    fault: "the server restarted mid-way (its drives gone)",
    provoke: async (path, transfer) => {
      const midway = stopMidway(path, transfer);
      const running = inProcess(path, transfer);
      await waitFor(midway, `${path.name} midway`);
      await emulator.stub.restart();
      for (const hold of holds) hold.release(() => new Response("restarted\n", { status: 503 }));
      return running;
    },
    cells: {
      "1.0 upload": {
        status: 1,
        says: `POST \\S+ failed: 404 missing: Drive ${UUID} could not be found\\..*`,
        left: JOURNAL,
        rerun: "fresh",
      },
      "1.0 download": {
        status: 1,
        says: `GET \\S+ failed: 404 missing: Drive ${UUID} could not be found\\..*`,
        left: JOURNAL_PART,
        rerun: `GET /drives/${UUID}/info failed: 404 missing: Drive ${UUID} could not be found\\..*`,
      },
      "2.0 chunked upload": {
        status: 1,
        says: `POST /api/2\\.0/drives/${UUID}/action/\\?do=upload_chunk failed: 404 notexist: .*`,
        left: JOURNAL,
        rerun: "fresh",
      },
      "2.0 direct upload": { status: 1, says: "POST \\S+ failed: network: .*", left: {}, rerun: "identical" },
      "2.0 download": {
        status: 1,
        // the API's 404, or the download origin's for a link the restart forgot
        says: `GET /api/2\\.0/drives/${UUID}/download/ failed: 404 .*`,
        left: JOURNAL_PART,
        rerun: `GET /api/2\\.0/drives/${UUID}/ failed: 404 notexist: Object with uuid ${UUID} does not exist.*`,
      },
      "copy 1.0 to 2.0": {
        // the source drive is gone too (one emulator): the rerun cannot read it
        status: 1,
        says: "(GET|POST) \\S+ failed: 404 (missing|notexist): .*",
        left: JOURNAL,
        rerun: `GET /drives/${UUID}/info failed: 404 missing: Drive ${UUID} could not be found\\..*`,
      },
    },
  },
];

/** Why a tmpfs cannot be mounted here (not root, no CAP_SYS_ADMIN), or undefined when it can. */
const tmpfsProblem = (() => {
  const probe = join(tmpdir(), `drivekit-tmpfs-probe-${process.pid}`);
  const mounted = mountTmpfs(probe, "64k");
  if (typeof mounted !== "string") mounted.unmount();
  rmSync(probe, { recursive: true, force: true });
  return typeof mounted === "string" ? mounted : undefined;
})();

// ---- the checks every cell gets ----

function journalDrive(cwd: string): string | undefined {
  const [name] = leftIn(cwd).journals;
  return name
    ? (JSON.parse(readFileSync(join(cwd, name), "utf8").split("\n")[0] as string) as { drive: string }).drive
    : undefined;
}

async function check(row: Row, path: TransferPath, outcome: Outcome): Promise<void> {
  beforeRerun.length = 0;
  const transfer = path.prepare(dir, ++seed);
  const first = await row.provoke(path, transfer);
  if (path.name === "1.0 download") {
    // its reads began over the run's own sockets (fetch's carry a User-Agent); the emulator's mid-body
    // faults answer with a redirect to a raw socket, which the socket reads leave to fetch
    const reads = emulator.stub.requests.filter((r) => r.method === "GET" && /\/read\//.test(r.path));
    expect(reads[0]?.headers["user-agent"]).toBeUndefined();
  }
  const { errors, stack } = errorLines(first);
  expect(stack).toBe(false);
  expect({ status: first.status, stderr: first.stderr }).toMatchObject({ status: outcome.status });
  if (outcome.status === 0) {
    expect(errors).toEqual([]);
    expect(sameBytes(path.result(transfer, first) ?? new Uint8Array(), transfer.bytes)).toBe(true);
    expect(leftIn(transfer.cwd)).toEqual({ journals: [], locks: [], parts: [] });
    return;
  }
  expect(first.stdout).toBe("");
  if (!row.killed) {
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(line(path.name, outcome.says ?? "", outcome.plain));
  }
  const left = leftIn(transfer.cwd);
  expect(left.journals.length === 1).toBe(Boolean(outcome.left?.journal));
  if (outcome.left?.part !== "maybe") expect(left.parts.length === 1).toBe(Boolean(outcome.left?.part));
  // a run that ended by itself leaves no lock; a killed one's is taken over by the rerun
  if (!row.killed) expect(left.locks).toEqual([]);
  if (transfer.file) expect(existsSync(join(transfer.cwd, transfer.file))).toBe(Boolean(outcome.left?.final));
  if (outcome.rerun === undefined) return;

  const finished = journaled(transfer.cwd);
  const resumedDrive = journalDrive(transfer.cwd);
  for (const step of beforeRerun.splice(0)) step();
  for (const hold of holds.splice(0)) hold.release(() => new Response("test over\n", { status: 503 }));
  emulator.clear();
  const again = await run(path.command, transfer.argv, { env: path.env(), cwd: transfer.cwd });
  expect(errorLines(again).stack).toBe(false);
  if (outcome.rerun !== "identical" && outcome.rerun !== "fresh") {
    // the promise cannot be kept (the drive is gone): the rerun says so, and still writes no final file
    expect(again.status).toBe(1);
    expect(errorLines(again).errors).toHaveLength(1);
    expect(errorLines(again).errors[0]).toMatch(line(path.name, outcome.rerun, true));
    if (transfer.file) expect(existsSync(join(transfer.cwd, transfer.file))).toBe(false);
    return;
  }
  expect({ status: again.status, stderr: again.stderr }).toMatchObject({ status: 0 });
  expect(sameBytes(path.result(transfer, again) ?? new Uint8Array(), transfer.bytes)).toBe(true);
  expect(leftIn(transfer.cwd)).toEqual({ journals: [], locks: [], parts: [] });
  if (outcome.rerun === "fresh") {
    // the drive of the interrupted upload is gone: a new one, every chunk sent
    expect(again.stderr).toMatch(/is gone: starting over on a new drive/);
    expect(again.stdout.trim()).not.toBe(resumedDrive);
    return;
  }
  if (resumedDrive && path.script !== "download") expect(again.stdout.trim()).toBe(resumedDrive);
  if (finished.size > 0) {
    // resumed: a finished chunk is never sent (or read) again
    expect(again.stderr).toMatch(/resuming/);
    expect(path.chunksDone().filter((index) => finished.has(index))).toEqual([]);
    expect(new Set(path.chunksDone()).size).toBe(path.chunks - finished.size);
  }
}

for (const row of rows) {
  const skip = row.skip?.();
  if (skip) console.log(`skipped "${row.fault}": ${skip}`);
  describe(row.fault, () => {
    for (const name of PATH_NAMES) {
      const cell = row.cells[name];
      if ("notApplicable" in cell) {
        test.skip(`${name}: not applicable (${cell.notApplicable})`, () => {});
        continue;
      }
      const title = `${name}: exit ${cell.status}${cell.rerun ? `, rerun ${cell.rerun === "identical" || cell.rerun === "fresh" ? cell.rerun : "fails: the drive is gone"}` : ""}`;
      if (skip) {
        test.skip(title, () => {});
        continue;
      }
      test(title, () => check(row, paths.find((path) => path.name === name) as TransferPath, cell), 30_000);
    }
  });
}
