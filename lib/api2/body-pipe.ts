// A fetch body read through a kernel pipe into buffers of the reader's own: the API 2.0 download's
// way to take a GiB-sized body without a fresh JS buffer per piece of it.
import { closeSync, read } from "node:fs";

type Pipe2 = (fds: Int32Array) => number;
let pipe2: Pipe2 | null | undefined;
const O_CLOEXEC = 0o2000000;
const F_SETPIPE_SZ = 1031;
const PIPE_SIZE = 1024 * 1024;

/**
 * A kernel pipe (read end, write end) through bun:ffi, or undefined where libc's pipe2 is missing.
 * Why a pipe: reading fetch's body as a JS stream allocates a fresh buffer per piece (16 000 a GiB)
 * and took the script to 73-79 MiB of peak RSS (forced collections brought it to 63-67 MiB at half
 * the speed); `Bun.write` into a pipe streams natively, and the pipe is read into one reused buffer:
 * about 20 MiB less, as fast (bench/RESULTS-api2.md).
 */
export async function openPipe(): Promise<[number, number] | undefined> {
  if (pipe2 === undefined) {
    pipe2 = null;
    if (process.platform === "linux") {
      try {
        const { dlopen, FFIType, ptr } = await import("bun:ffi");
        for (const name of ["libc.so.6", "libc.so", "libc.musl-x86_64.so.1", "libc.musl-aarch64.so.1"]) {
          try {
            const lib = dlopen(name, {
              pipe2: { args: [FFIType.ptr, FFIType.i32], returns: FFIType.i32 },
              fcntl: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
            });
            const { pipe2: make, fcntl } = lib.symbols;
            pipe2 = (fds) => {
              const status = make(ptr(fds), O_CLOEXEC);
              // 1 MiB instead of 64 KiB: fewer reads; refused (harmlessly) above the system's limit
              if (status === 0) fcntl(fds[1] as number, F_SETPIPE_SZ, PIPE_SIZE);
              return status;
            };
            break;
          } catch {
            // try the next name
          }
        }
      } catch {
        // no FFI in this runtime: the JS stream it is
      }
    }
  }
  if (!pipe2) return undefined;
  const fds = new Int32Array(2);
  return pipe2(fds) === 0 ? [fds[0] as number, fds[1] as number] : undefined;
}

function readInto(fd: number, into: Uint8Array): Promise<number> {
  return new Promise((resolve, reject) =>
    read(fd, into, 0, into.length, null, (error, n) => (error ? reject(error) : resolve(n))),
  );
}

/**
 * `Bun.write` streams the body into the pipe's write end; each read of the other end lands in the
 * room `space` gives (never empty) and is handed to `onBytes`. Resolves at the body's end; rejects
 * when the body fails (cut, reset, the watchdog's abort) or `onBytes` throws; the pipe is closed
 * either way.
 */
export async function pumpThroughPipe(
  response: Response,
  [readFd, writeFd]: [number, number],
  space: () => Uint8Array,
  onBytes: (n: number) => void,
): Promise<void> {
  // the write end closes when the body ends or fails: the reader then sees the end of the pipe
  const sending = Bun.write(Bun.file(writeFd), response).finally(() => closeSync(writeFd));
  sending.catch(() => undefined);
  try {
    for (;;) {
      const n = await readInto(readFd, space());
      if (n === 0) break;
      onBytes(n);
    }
  } finally {
    // a failure here leaves Bun.write writing into a closed pipe: it fails (EPIPE) and stops
    closeSync(readFd);
  }
  await sending;
}
