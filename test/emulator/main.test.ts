// `bun run stub`'s API 2.0 flags (emulator/main.ts): --snapshot-delay (never: snapshots stay
// creating), --concurrency-every (injected 503 concurrency), and bad values refused with status 2.
import { expect, test } from "bun:test";

const MAIN = new URL("../../emulator/main.ts", import.meta.url).pathname;

/** Start `bun run stub` with `flags`; its exported lines, and a way to stop it. */
async function stubWith(flags: string[]): Promise<{ env: Record<string, string>; stop: () => Promise<void> }> {
  const child = Bun.spawn(["bun", MAIN, "--quiet", ...flags], {
    stdout: "pipe",
    stderr: "ignore",
    env: { PATH: process.env.PATH, HOME: process.env.HOME },
  });
  const reader = child.stdout.getReader();
  let text = "";
  // four export lines, then it serves; stop at them (or at the end of the stream)
  for (let i = 0; i < 100 && (text.match(/\n/g) ?? []).length < 4; i++) {
    const { value, done } = await reader.read();
    if (done) break;
    text += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  const env = Object.fromEntries(
    [...text.matchAll(/^export (\w+)=(.*)$/gm)].map((m) => [m[1] as string, m[2] as string]),
  );
  return {
    env,
    stop: async () => {
      child.kill();
      await child.exited;
    },
  };
}

test("--snapshot-delay never keeps snapshots creating; --concurrency-every 2 answers every 2nd POST 503 concurrency", async () => {
  const { env, stop } = await stubWith([
    "--status-delay",
    "0",
    "--snapshot-delay",
    "never",
    "--concurrency-every",
    "2",
  ]);
  try {
    const authorization = `Basic ${Buffer.from(env.CSAUTH as string).toString("base64")}`;
    const call = (path: string, body: unknown) =>
      fetch(`${env.CSURI}${path}`, {
        method: "POST",
        headers: { authorization, "content-type": "application/json" },
        body: JSON.stringify(body),
      });
    const get = async (path: string) =>
      (await (await fetch(`${env.CSURI}${path}`, { headers: { authorization } })).json()) as { status: string };
    const created = await call("drives/", { name: "d", size: 1 << 20, media: "disk" });
    expect(created.status).toBe(201);
    const drive = ((await created.json()) as { objects: { uuid: string }[] }).objects[0]!.uuid;
    // a drive still creating cannot be snapshotted: wait until it settles (bounded)
    let status = "creating";
    for (let i = 0; i < 500 && status !== "unmounted"; i++) status = (await get(`drives/${drive}/`)).status;
    expect(status).toBe("unmounted");
    const refused = await call("snapshots/", { drive });
    expect(refused.status).toBe(503);
    expect(((await refused.json()) as { error_type: string }[])[0]!.error_type).toBe("concurrency");
    const snapshot = await call("snapshots/", { drive });
    expect(snapshot.status).toBe(201);
    const made = ((await snapshot.json()) as { objects: { uuid: string; status: string }[] }).objects[0]!;
    expect(made.status).toBe("creating");
    // a drive created after it settles (status delay 0) while the snapshot stays creating
    // POSTs 1 and 3 went through, 2 was refused; 4 is refused too, 5 goes through
    expect((await call("drives/", { name: "later", size: 1 << 20, media: "disk" })).status).toBe(503);
    const later = await call("drives/", { name: "later", size: 1 << 20, media: "disk" });
    expect(later.status).toBe(201);
    const uuid = ((await later.json()) as { objects: { uuid: string }[] }).objects[0]!.uuid;
    status = "creating";
    for (let i = 0; i < 500 && status !== "unmounted"; i++) status = (await get(`drives/${uuid}/`)).status;
    expect(status).toBe("unmounted");
    expect((await get(`snapshots/${made.uuid}/`)).status).toBe("creating");
  } finally {
    await stop();
  }
});

test("bad values exit 2 with one line naming both flags", async () => {
  for (const flags of [
    ["--snapshot-delay", "soon"],
    ["--concurrency-every", "1.5"],
  ]) {
    const run = Bun.spawnSync(["bun", MAIN, ...flags], { env: { PATH: process.env.PATH, HOME: process.env.HOME } });
    expect(run.exitCode).toBe(2);
    expect(run.stderr.toString()).toContain("--snapshot-delay takes milliseconds or never");
  }
});
