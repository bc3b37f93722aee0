// An answer's body read into buffers of the reader's own. Through its JS stream each piece of a body
// is a fresh buffer (tens of thousands a GiB) that the GC then has to find (the transfer driver
// collects every 16 MiB for that, at a cost in CPU: bench/RESULTS-speed.md). Through a kernel pipe
// (`Bun.write` streams the body into it natively, the pipe is read straight into the buffer) there
// is no garbage; but each read of a pipe holds one of the runtime's pool threads until bytes come, so
// only one body at a time may go that way (six at once hung: the writes into the pipes had no
// thread left).
import { closeSync, read } from "node:fs";

type Pipe2 = (fds: Int32Array) => number;
/** libc's pipe2 through bun:ffi, looked up once (null: not there, the JS stream it is). */
let pipe2: Pipe2 | null | undefined;
const O_CLOEXEC = 0o2000000;
const F_SETPIPE_SZ = 1031;
const PIPE_SIZE = 1024 * 1024;

/** A kernel pipe (read end, write end), or undefined where libc's pipe2 cannot be had. */
async function openPipe(): Promise<[number, number] | undefined> {
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
        // no FFI in this runtime
      }
    }
  }
  if (!pipe2) return undefined;
  const fds = new Int32Array(2);
  return pipe2(fds) === 0 ? [fds[0] as number, fds[1] as number] : undefined;
}

function readFd(fd: number, into: Uint8Array): Promise<number> {
  return new Promise((resolve, reject) =>
    read(fd, into, 0, into.length, null, (error, n) => (error ? reject(error) : resolve(n))),
  );
}

/** An answer's body, read piece by piece into the caller's buffers. */
export interface BodyReader {
  /** Up to `into.length` bytes of the body into `into`; 0 at its end. Rejects when the body fails. */
  read(into: Uint8Array): Promise<number>;
  /** Stop reading: the rest is dropped (and the connection with it). */
  cancel(): void;
}

/**
 * `response`'s body as a BodyReader: through a kernel pipe when `viaPipe` (one reader at a time: each
 * read of a pipe holds one of the runtime's pool threads until bytes come, so several at once
 * could take them all), else through its JS stream.
 */
export async function bodyReader(response: Response, viaPipe: boolean): Promise<BodyReader> {
  const body = response.body ?? new ReadableStream<Uint8Array>();
  const pipe = viaPipe && response.body ? await openPipe() : undefined;
  return pipe ? pipeReader(response, pipe) : streamReader(body);
}

function pipeReader(response: Response, [readEnd, writeEnd]: [number, number]): BodyReader {
  // the write end closes when the body ends or fails: the reader then sees the end of the pipe
  const sending = Bun.write(Bun.file(writeEnd), response).finally(() => closeSync(writeEnd));
  sending.catch(() => undefined);
  let open = true;
  const close = () => {
    if (!open) return;
    open = false;
    // Bun.write then fails on the closed pipe (EPIPE) and stops
    closeSync(readEnd);
  };
  return {
    async read(into) {
      if (!open) return 0;
      const n = await readFd(readEnd, into);
      if (n > 0) return n;
      close();
      // the end of the pipe: the body's end, or its failure
      await sending;
      return 0;
    },
    cancel: close,
  };
}

function streamReader(body: ReadableStream<Uint8Array>): BodyReader {
  const reader = body.getReader();
  let piece: Uint8Array = new Uint8Array(0);
  let at = 0;
  return {
    async read(into) {
      // bounded: an empty piece is skipped, the next read takes another
      while (at === piece.length) {
        const { value, done } = await reader.read();
        if (done) return 0;
        piece = value;
        at = 0;
      }
      const n = Math.min(into.length, piece.length - at);
      into.set(n === piece.length && at === 0 ? piece : piece.subarray(at, at + n));
      at += n;
      return n;
    },
    cancel: () => void reader.cancel().catch(() => undefined),
  };
}

/** What a body held: the bytes put into the buffer, and whether it held more than the buffer's room. */
export interface BodyRead {
  got: number;
  more: boolean;
}

/**
 * Read `response`'s body into `into`, calling `moved` with the bytes so far after each piece. Stops
 * at the body's end, or as soon as it holds more than `into` has room for (`more`, the rest dropped).
 * Rejects when the body fails (cut, reset, an abort), with what the runtime reported.
 */
export async function readBody(response: Response, into: Uint8Array, moved?: (got: number) => void): Promise<BodyRead> {
  const body = await bodyReader(response, false);
  const spare = new Uint8Array(1);
  let got = 0;
  // bounded by the body: each read takes some of it, or ends the loop
  for (;;) {
    const room = got < into.length ? into.subarray(got) : spare;
    const n = await body.read(room);
    if (n === 0) return { got, more: false };
    if (room === spare) {
      body.cancel();
      return { got, more: true };
    }
    got += n;
    moved?.(got);
  }
}
