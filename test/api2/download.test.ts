// API 2.0 download (lib/pairings/download.ts, lib/api2/drive-source.ts): ranged GETs through the
// redirect to the origin, into FILE.part; a .part left without a journal resumed from its length
// when the server resumes it (else started over), a server that ignores Range or answers another
// range read in one stream, a cut or unannounced length refused, retries off where what a cut
// leaves is the subject.
import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import download from "../../scripts/download.ts";
import { run } from "../helpers.ts";
import { parseContentRange } from "../../lib/api2/content-range.ts";
import { errorLines, journaled, ONE_ATTEMPT } from "../faults/support.ts";
import { sameBytes } from "../images.ts";
import {
  api2,
  content,
  drive,
  freshFolder,
  originStarts,
  restoreHandlers,
  SIZE,
  stub,
  useDirectEmulator,
  useDownloadDrive,
} from "./direct-emulator.ts";

useDirectEmulator();

test("Content-Range", () => {
  expect(parseContentRange("bytes 100-199/200")).toEqual({ start: 100, end: 199, total: 200 });
  expect(parseContentRange("bytes 100-199/*")).toBeUndefined();
  expect(parseContentRange("bytes 200-199/200")).toBeUndefined();
  expect(parseContentRange("bytes 0-200/200")).toBeUndefined();
  expect(parseContentRange(null)).toBeUndefined();
});

describe("download", () => {
  useDownloadDrive();

  test("follows the redirect; credentials go to the API origin only", async () => {
    stub.requests.length = 0;
    api2.originRequests.length = 0;
    const out = await freshFolder();
    const result = await run(download, [drive, "image.raw", "--quiet"], { env: api2.env, cwd: out });
    expect(result.status).toBe(0);
    expect(result.stdout).toBe(`${join(out, "image.raw")}\n`);
    expect(Buffer.from(readFileSync(join(out, "image.raw"))).equals(Buffer.from(content))).toBe(true);
    const first = stub.requests.find((r) => r.path === `/api/2.0/drives/${drive}/download/`);
    expect(first?.status).toBe(302);
    expect(first?.headers.authorization).toStartWith("Basic ");
    expect(api2.originRequests.length).toBeGreaterThan(0);
    for (const request of api2.originRequests) expect(request.headers.authorization).toBeUndefined();
    expect(JSON.stringify(api2.originRequests)).not.toContain(stub.secret);
    expect(readdirSync(out)).toEqual(["image.raw"]);
  });

  test("an existing FILE is kept: exit 2 and nothing sent; --force overwrites", async () => {
    const out = await freshFolder();
    writeFileSync(join(out, "keep.raw"), "precious");
    stub.requests.length = 0;
    const refused = await run(download, [drive, "keep.raw"], { env: api2.env, cwd: out });
    expect(refused.status).toBe(2);
    expect(refused.stderr).toContain("--force");
    expect(stub.requests).toHaveLength(0);
    expect(readFileSync(join(out, "keep.raw"), "utf8")).toBe("precious");
    const forced = await run(download, [drive, "keep.raw", "--force", "--quiet"], { env: api2.env, cwd: out });
    expect(forced.status).toBe(0);
    expect(statSync(join(out, "keep.raw")).size).toBe(SIZE);
    expect(readdirSync(out)).toEqual(["keep.raw"]);
  });

  test("resumes a FILE.part left without a journal from its length, when the server answers that byte with 206", async () => {
    const out = await freshFolder();
    const have = 300_001;
    writeFileSync(join(out, "resume.raw.part"), content.subarray(0, have));
    api2.originRequests.length = 0;
    const result = await run(download, [drive, "resume.raw"], { env: api2.env, cwd: out });
    expect(result.status).toBe(0);
    expect(result.stderr).toContain(`resuming resume.raw.part from byte ${have}`);
    // nothing before the .part's end is asked again
    expect(originStarts().length).toBeGreaterThan(1);
    for (const [start, status] of originStarts()) expect([start >= have, status]).toEqual([true, 206]);
    expect(Buffer.from(readFileSync(join(out, "resume.raw"))).equals(Buffer.from(content))).toBe(true);
    expect(readdirSync(out)).toEqual(["resume.raw"]);
  });

  test("a FILE.part without a journal that is already whole is just renamed", async () => {
    const out = await freshFolder();
    writeFileSync(join(out, "whole.raw.part"), content);
    api2.originRequests.length = 0;
    const result = await run(download, [drive, "whole.raw", "--quiet"], { env: api2.env, cwd: out });
    expect(result.status).toBe(0);
    expect(api2.originRequests).toEqual([]);
    expect(Buffer.from(readFileSync(join(out, "whole.raw"))).equals(Buffer.from(content))).toBe(true);
  });

  test("a server that ignores Range: clean restart from byte 0", async () => {
    const out = await freshFolder();
    writeFileSync(join(out, "restart.raw.part"), new Uint8Array(5000).fill(0xee));
    // bytes, not a Bun.file: Bun.serve would answer the Range of a file body by itself
    api2.originHook = (_request, d) => new Response(stub.readDrive(d.uuid));
    const result = await run(download, [drive, "restart.raw"], { env: api2.env, cwd: out });
    expect(result.status).toBe(0);
    expect(result.stderr).toContain("starting again from 0");
    expect(Buffer.from(readFileSync(join(out, "restart.raw"))).equals(Buffer.from(content))).toBe(true);
    expect(readdirSync(out)).toEqual(["restart.raw"]);
  });

  test("a 206 for the wrong range: clean restart", async () => {
    const out = await freshFolder();
    writeFileSync(join(out, "wrong.raw.part"), content.subarray(0, 1000));
    api2.originHook = (request, d) =>
      request.headers.get("range")
        ? new Response(Bun.file(d.path).slice(500, d.size), {
            status: 206,
            headers: { "content-range": `bytes 500-${d.size - 1}/${d.size}` },
          })
        : undefined;
    const result = await run(download, [drive, "wrong.raw", "--quiet"], { env: api2.env, cwd: out });
    expect(result.status).toBe(0);
    expect(Buffer.from(readFileSync(join(out, "wrong.raw"))).equals(Buffer.from(content))).toBe(true);
  });

  /** A raw TCP origin answering each request with `head` then `body`, then closing: what Bun.serve cannot be made to send. */
  async function rawOrigin(head: string, body: Uint8Array) {
    const requests: string[] = [];
    const server = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        data(socket, data) {
          requests.push(new TextDecoder().decode(data));
          socket.write(head);
          socket.write(body);
          socket.end();
        },
        error() {},
      },
    });
    stub.handlers.unshift((_request, path) =>
      path.endsWith("/download/")
        ? new Response(null, { status: 302, headers: { location: `http://127.0.0.1:${server.port}/raw` } })
        : undefined,
    );
    return { requests, stop: () => server.stop(true) };
  }

  /** The chunks of 64 KiB a journal in `out` records, and that the .part holds them right. */
  function keptChunks(out: string, name: string): Set<number> {
    const kept = journaled(out);
    const part = new Uint8Array(readFileSync(join(out, `${name}.part`)));
    for (const index of kept) {
      const [from, to] = [index * 65536, Math.min(SIZE, (index + 1) * 65536)];
      expect(sameBytes(part.subarray(from, to), content.subarray(from, to))).toBe(true);
    }
    return kept;
  }

  for (const close of [false, true]) {
    test(`a short body is detected${close ? " (Connection: close)" : ""} (retries off): exit 1, the chunks that came whole kept, never under the final name; the next run goes on from them`, async () => {
      const out = await freshFolder();
      const cut = 200_000;
      // a server that answers every GET with the whole drive (Range ignored), cut short
      const raw = await rawOrigin(
        `HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ${SIZE}\r\n${close ? "Connection: close\r\n" : ""}\r\n`,
        content.subarray(0, cut),
      );
      const result = await run(download, [drive, "short.raw", "--quiet", "-c", "64k"], {
        env: api2.env,
        cwd: out,
        retry: ONE_ATTEMPT,
      });
      raw.stop();
      restoreHandlers();
      expect(result.status).toBe(1);
      // on a loaded machine the close can take with it what fetch had not handed over yet
      const partKept = existsSync(join(out, "short.raw.part"));
      const next = partKept
        ? "short\\.raw\\.part is kept: rerun the same command in \\S+ to resume"
        : "nothing was kept: run the same command again";
      expect(errorLines(result).errors).toEqual([
        expect.stringMatching(
          new RegExp(`^download: error: download of drive \\S+ stopped at .*: GET \\S+ failed: network: .*; ${next}$`),
        ),
      ]);
      expect(existsSync(join(out, "short.raw"))).toBe(false);
      // the chunks before the cut that came whole (three at most), and nothing after it
      const kept = partKept ? keptChunks(out, "short.raw") : new Set<number>();
      expect(partKept).toBe(kept.size > 0);
      expect([...kept].every((index) => (index + 1) * 65536 <= cut)).toBe(true);

      api2.originRequests.length = 0;
      const again = await run(download, [drive, "short.raw", "--quiet", "-c", "64k"], { env: api2.env, cwd: out });
      expect(again.status).toBe(0);
      // the kept chunks are not asked again
      for (const [start] of originStarts()) expect(kept.has(start / 65536)).toBe(false);
      expect(Buffer.from(readFileSync(join(out, "short.raw"))).equals(Buffer.from(content))).toBe(true);
      expect(readdirSync(out)).toEqual(["short.raw"]);
    });
  }

  for (const ranged of [false, true]) {
    test(`an answer cut short on a resume is detected too (retries off, ${ranged ? "ranged GETs" : "one stream"}): the .part keeps what it held`, async () => {
      const out = await freshFolder();
      const flags = ["--quiet", "-c", "64k", "--concurrency", ranged ? "2" : "1"];
      // a first run stopped after a few chunks
      stub.fault({
        method: "GET",
        path: /^\/download\//,
        times: 1,
        action: ranged ? { end: true, afterBytes: 1000 } : { end: true, afterBytes: 3 * 65536 + 1000 },
      });
      const first = await run(download, [drive, "short2.raw", ...flags], {
        env: api2.env,
        cwd: out,
        retry: ONE_ATTEMPT,
      });
      expect(first.status).toBe(1);
      const before = keptChunks(out, "short2.raw");
      if (!ranged) expect(before).toEqual(new Set([0, 1, 2]));
      // the rerun's answers are all cut short
      stub.faults.length = 0;
      stub.fault({ method: "GET", path: /^\/download\//, action: { end: true, afterBytes: 1000 } });
      const result = await run(download, [drive, "short2.raw", ...flags], {
        env: api2.env,
        cwd: out,
        retry: ONE_ATTEMPT,
      });
      expect(result.status).toBe(1);
      expect(errorLines(result).errors).toEqual([
        expect.stringMatching(/ \S*short2\.raw\.part is kept: |nothing was kept/),
      ]);
      expect(existsSync(join(out, "short2.raw"))).toBe(false);
      if (before.size > 0) expect(keptChunks(out, "short2.raw")).toEqual(before);
    });
  }

  test("one stream without -c reads 512k chunks; a rerun without -c keeps the chunk its journal was made with (64k from a ranged run)", async () => {
    const out = await freshFolder();
    // stopped after 600 KiB: its journal says 512k chunks, the first one done
    stub.fault({ method: "GET", path: /^\/download\//, times: 1, action: { end: true, afterBytes: 600 * 1024 } });
    const cut = await run(download, [drive, "stream.raw", "--concurrency", "1", "--quiet"], {
      env: api2.env,
      cwd: out,
      retry: ONE_ATTEMPT,
    });
    expect(cut.status).toBe(1);
    const journal = readdirSync(out).find((name) => name.startsWith(".drivekit-journal-")) as string;
    const [header, ...done] = readFileSync(join(out, journal), "utf8").trim().split("\n");
    expect(JSON.parse(header as string).chunk).toBe(512 * 1024);
    expect(done).toEqual(["0"]);
    const fresh = await run(download, [drive, "stream.raw", "--concurrency", "1", "--quiet"], {
      env: api2.env,
      cwd: out,
    });
    expect(fresh.status).toBe(0);
    expect(sameBytes(new Uint8Array(readFileSync(join(out, "stream.raw"))), content)).toBe(true);
    // a ranged run with -c 64k stopped after a few chunks...
    stub.fault({ method: "GET", path: /^\/download\//, times: 1, action: { end: true, afterBytes: 1000 } });
    const first = await run(download, [drive, "kept.raw", "-c", "64k", "--concurrency", "2", "--quiet"], {
      env: api2.env,
      cwd: out,
      retry: ONE_ATTEMPT,
    });
    expect(first.status).toBe(1);
    const before = keptChunks(out, "kept.raw");
    expect(before.size).toBeGreaterThan(0);
    // ...then read in one stream, without -c: it goes on from the journal, in its 64k chunks
    stub.faults.length = 0;
    api2.originRequests.length = 0;
    const again = await run(download, [drive, "kept.raw", "--concurrency", "1"], { env: api2.env, cwd: out });
    expect(again.status).toBe(0);
    expect(again.stderr).toContain(`${before.size} chunks already done`);
    expect(again.stderr).not.toContain("starting it over");
    expect(sameBytes(new Uint8Array(readFileSync(join(out, "kept.raw"))), content)).toBe(true);
  });

  test("no Content-Length: refused, since a cut body could not be told", async () => {
    const out = await freshFolder();
    const raw = await rawOrigin("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", content.subarray(0, 100));
    const result = await run(download, [drive, "nolength.raw", "--quiet"], { env: api2.env, cwd: out });
    raw.stop();
    expect(result.status).toBe(1);
    expect(result.stderr).toContain("without a Content-Length");
    expect(existsSync(join(out, "nolength.raw"))).toBe(false);
  });

  test("a missing drive: exit 1 with the server's message, nothing written", async () => {
    const out = await freshFolder();
    const result = await run(download, [crypto.randomUUID(), "x.raw"], { env: api2.env, cwd: out });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain("404 notexist");
    expect(readdirSync(out)).toEqual([]);
  });

  test("a redirect to plain http on another host is refused", async () => {
    const out = await freshFolder();
    stub.handlers.unshift((_request, path) =>
      path.endsWith("/download/")
        ? new Response(null, { status: 302, headers: { location: "http://192.0.2.10/steal" } })
        : undefined,
    );
    const result = await run(download, [drive, "x.raw", "--quiet"], { env: api2.env, cwd: out });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain("refusing redirect");
    expect(readdirSync(out)).toEqual([]);
  });
});
