// What the emulator's API 2.0 suites share: one emulator per file (started before its tests,
// stopped after), its drives and snapshots emptied before each test, and calls with plain fetch.
import { afterAll, beforeAll, beforeEach } from "bun:test";
import { installApi2, type Api2Options, type Api2Stub } from "../../emulator/api2.ts";
import { startStub, type DriveStub } from "../../emulator/server.ts";

export interface Emulated {
  stub: DriveStub;
  api2: Api2Stub;
  /** A call with the emulator's credentials; `body` goes as JSON (a string as it is). */
  call(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<Response>;
  /** The JSON of a call that must answer `status`. */
  json<T = Record<string, unknown>>(method: string, path: string, body?: unknown, status?: number): Promise<T>;
  /** Poll `path` (a drive or a snapshot) until its status is `wanted`; the last status seen (bounded: 500 checks). */
  statusOf(path: string, wanted: string): Promise<string>;
}

export function emulated(options: Api2Options = {}): Emulated {
  const self = {} as Emulated;
  beforeAll(async () => {
    self.stub = await startStub();
    self.api2 = await installApi2(self.stub, options);
  });
  afterAll(async () => {
    self.api2.stop();
    await self.stub.stop();
  });
  beforeEach(() => {
    self.stub.faults.length = 0;
    self.api2.drives.statusDelayMs = options.statusDelayMs ?? 0;
    self.api2.snapshots.creatingMs = options.snapshotCreatingMs ?? 0;
    for (const server of [...self.stub.servers.keys()]) self.stub.servers.delete(server);
    for (const drive of [...self.stub.drives.values()]) self.stub.removeDrive(drive);
  });
  self.call = (method, path, body, headers = {}) =>
    fetch(`${self.api2.uri}${path}`, {
      method,
      headers: {
        authorization: `Basic ${Buffer.from(`${self.stub.user}:${self.stub.secret}`).toString("base64")}`,
        "content-type": "application/json",
        ...headers,
      },
      body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
    });
  self.json = async <T>(method: string, path: string, body?: unknown, status = 200) => {
    const answer = await self.call(method, path, body);
    const text = await answer.text();
    if (answer.status !== status) throw new Error(`${method} ${path}: ${answer.status}, not ${status}: ${text}`);
    return JSON.parse(text) as T;
  };
  self.statusOf = async (path, wanted) => {
    let status = "";
    for (let i = 0; i < 500 && status !== wanted; i++) {
      status = ((await (await self.call("GET", path)).json()) as { status: string }).status;
      if (status !== wanted) await Bun.sleep(1);
    }
    return status;
  };
  return self;
}

/** The one error of a 2.0 error answer, after checking its form (a JSON list, a request id). */
export async function errorOf(
  answer: Response,
): Promise<{ error_point: string | null; error_type: string; error_message: string }> {
  if (!/^[0-9a-f]{16}$/.test(answer.headers.get("x-request-id") ?? "")) throw new Error("no X-REQUEST-ID");
  const body = (await answer.json()) as { error_point: string | null; error_type: string; error_message: string }[];
  if (!Array.isArray(body) || body.length !== 1) throw new Error(`not a list of one error: ${JSON.stringify(body)}`);
  return body[0]!;
}
