// The six transfer paths the fault matrix runs on, each as the requests that carry its data, how
// to prepare a transfer (an image to upload, a drive to download or copy), what it ended with, and
// which chunks the emulator saw go through whole. The copy reads an API 1.0 drive and writes an
// API 2.0 chunked upload on the same emulator: its faults act on the destination's chunk POSTs.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { CommandDef } from "citty";
import upload from "../../scripts/upload.ts";
import download from "../../scripts/download.ts";
import copy from "../../scripts/copy.ts";
import { api2Error, elasticError } from "../../emulator/errors.ts";
import { imageBytes } from "../images.ts";
import type { RunResult } from "../helpers.ts";
import type { Emulator, Hold } from "./support.ts";

export const CHUNK = 64 * 1024;
/** 40 chunks and a tail off the chunk grid: big enough to stop in the middle, small enough to be quick. */
export const SIZE = 40 * CHUNK + 1000;

export type PathName =
  | "1.0 upload"
  | "1.0 download"
  | "2.0 chunked upload"
  | "2.0 direct upload"
  | "2.0 download"
  | "copy 1.0 to 2.0";

/** The columns, in order. */
export const PATH_NAMES: readonly PathName[] = [
  "1.0 upload",
  "1.0 download",
  "2.0 chunked upload",
  "2.0 direct upload",
  "2.0 download",
  "copy 1.0 to 2.0",
];

export interface Requests {
  method: string;
  path: RegExp;
}

/** One transfer on a path: its arguments, the folder it runs in, the bytes it must end with. */
export interface Transfer {
  argv: string[];
  cwd: string;
  bytes: Uint8Array;
  /** Downloads: the file it writes (relative to cwd). */
  file?: string;
}

export interface TransferPath {
  name: PathName;
  api: 1 | 2;
  script: "upload" | "download" | "copy";
  // biome-ignore lint/suspicious/noExplicitAny: a command of any flag set
  command: CommandDef<any>;
  /** In chunks, each retried on passing errors, recorded in a resume journal. */
  chunked: boolean;
  /** Chunks in a transfer of SIZE bytes (1.0: the last one short; 2.0: the last one larger). */
  chunks: number;
  /** The requests whose answers carry the data or the errors about it. */
  data: Requests;
  /** The requests whose bodies carry the data (faults mid-body act there). */
  body: Requests;
  env(): Record<string, string>;
  prepare(dir: string, seed: number): Transfer;
  /** What the transfer ended with after a run that succeeded: the drive's bytes, or the file's. */
  result(transfer: Transfer, run: RunResult): Uint8Array | undefined;
  /** Chunks the emulator took in (uploads) or gave out (downloads) whole since its records were cleared. */
  chunksDone(): number[];
  /** Hold its data requests (emulator handlers; the 2.0 download's origin). */
  hold(hold: Hold): void;
  /** An error answer of its API (a JSON list on 2.0). */
  error(status: number, message: string): Response;
}

export function transferPaths(emulator: Emulator): TransferPath[] {
  const { stub, api2 } = emulator;
  const driveBytes = (run: RunResult, size: number) => {
    const uuid = run.stdout.trim().split("\n").pop() ?? "";
    return stub.drives.has(uuid) ? stub.readDrive(uuid, 0, size) : undefined;
  };
  const fileBytes = (transfer: Transfer) => {
    const path = join(transfer.cwd, transfer.file as string);
    return existsSync(path) ? new Uint8Array(readFileSync(path)) : undefined;
  };
  const image = (dir: string, seed: number): Transfer => {
    const bytes = imageBytes(SIZE, seed);
    const path = join(dir, `image-${seed}.img`);
    writeFileSync(path, bytes);
    return { argv: [path], cwd: dir, bytes };
  };
  const drive = (dir: string, seed: number): Transfer => {
    const bytes = imageBytes(SIZE, seed);
    return { argv: [stub.addDrive(SIZE, {}, bytes).uuid, "out.img"], cwd: dir, bytes, file: "out.img" };
  };
  const offsets = (method: string, path: RegExp, ok: number) =>
    stub.requests
      .filter((r) => r.method === method && r.status === ok && path.test(r.path))
      .map((r) => Number(/\/(\d+)(?:\/\d+)?$/.exec(r.path)?.[1]) / CHUNK);
  const intercept = (requests: Requests) => (hold: Hold) =>
    emulator.intercept(hold.handler(requests.method, requests.path));
  const error1 = (status: number, message: string) => elasticError(status, status === 409 ? "busy" : "system", message);
  const error2 = (status: number, message: string) => api2Error(status, "backend", message);

  const write1 = { method: "POST", path: /^\/drives\/[0-9a-f-]{36}\/write\/\d+$/ };
  const read1 = { method: "GET", path: /^\/drives\/[0-9a-f-]{36}\/read\/\d+\/\d+$/ };
  const link2 = { method: "POST", path: /^\/api\/2\.0\/upload\/chunk\// };
  const direct2 = { method: "POST", path: /^\/api\/2\.0\/drives\/upload\// };
  const download2 = { method: "GET", path: /^\/api\/2\.0\/drives\/[0-9a-f-]{36}\/download\/$/ };
  const origin2 = { method: "GET", path: /^\/download\// };

  const download1: TransferPath = {
    name: "1.0 download",
    api: 1,
    script: "download",
    command: download,
    chunked: true,
    chunks: Math.ceil(SIZE / CHUNK),
    data: read1,
    body: read1,
    env: () => stub.env,
    prepare: (dir, seed) => {
      const transfer = drive(dir, seed);
      transfer.argv.push("-c", "64k", "--concurrency", "2");
      return transfer;
    },
    result: (transfer) => fileBytes(transfer),
    chunksDone: () => offsets("GET", read1.path, 200),
    hold: intercept(read1),
    error: error1,
  };

  return [
    {
      name: "1.0 upload",
      api: 1,
      script: "upload",
      command: upload,
      chunked: true,
      chunks: Math.ceil(SIZE / CHUNK),
      data: write1,
      body: write1,
      env: () => stub.env,
      prepare: (dir, seed) => {
        const transfer = image(dir, seed);
        transfer.argv.push("-c", "64k", "--concurrency", "2");
        return transfer;
      },
      result: (transfer, run) => driveBytes(run, transfer.bytes.length),
      chunksDone: () => offsets("POST", write1.path, 204),
      hold: intercept(write1),
      error: error1,
    },
    download1,
    {
      name: "2.0 chunked upload",
      api: 2,
      script: "upload",
      command: upload,
      chunked: true,
      chunks: Math.floor(SIZE / CHUNK),
      data: link2,
      body: link2,
      env: () => api2.env,
      prepare: (dir, seed) => {
        const transfer = image(dir, seed);
        transfer.argv.push("-c", "64k", "--concurrency", "2");
        return transfer;
      },
      result: (transfer, run) => driveBytes(run, transfer.bytes.length),
      chunksDone: () => api2.chunked.chunkPosts.filter((post) => post.status === 200).map((post) => post.chunk),
      hold: intercept(link2),
      error: error2,
    },
    {
      name: "2.0 direct upload",
      api: 2,
      script: "upload",
      command: upload,
      chunked: false,
      chunks: 1,
      data: direct2,
      body: direct2,
      env: () => api2.env,
      prepare: (dir, seed) => {
        const transfer = image(dir, seed);
        transfer.argv.push("--direct");
        return transfer;
      },
      result: (transfer, run) => driveBytes(run, transfer.bytes.length),
      chunksDone: () => [],
      hold: intercept(direct2),
      error: error2,
    },
    {
      name: "2.0 download",
      api: 2,
      script: "download",
      command: download,
      chunked: true,
      chunks: Math.ceil(SIZE / CHUNK),
      data: download2,
      body: origin2,
      env: () => api2.env,
      prepare: (dir, seed) => {
        const transfer = drive(dir, seed);
        transfer.argv.push("-c", "64k", "--concurrency", "2");
        return transfer;
      },
      result: (transfer) => fileBytes(transfer),
      // each chunk is one ranged GET the origin answered 206, whole
      chunksDone: () =>
        api2.originRequests
          .filter((request) => request.status === 206)
          .map((request) => Number(/^bytes=(\d+)-/.exec(request.headers.range ?? "")?.[1]) / CHUNK),
      hold: (hold) => {
        api2.originHook = () => hold.take();
      },
      error: error2,
    },
    {
      name: "copy 1.0 to 2.0",
      api: 2,
      script: "copy",
      command: copy,
      chunked: true,
      chunks: Math.floor(SIZE / CHUNK),
      data: link2,
      body: link2,
      env: () => ({ ...stub.env, ...api2.env }),
      prepare: (dir, seed) => {
        const bytes = imageBytes(SIZE, seed);
        const source = stub.addDrive(SIZE, {}, bytes).uuid;
        const argv = [source, "--api", "1", "--to-api", "2", "-c", "64k", "--concurrency", "2"];
        return { argv, cwd: dir, bytes };
      },
      result: (transfer, run) => driveBytes(run, transfer.bytes.length),
      chunksDone: () => api2.chunked.chunkPosts.filter((post) => post.status === 200).map((post) => post.chunk),
      hold: intercept(link2),
      error: error2,
    },
  ];
}
