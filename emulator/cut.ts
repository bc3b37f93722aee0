// Answers that stop short of their Content-Length, which Bun.serve cannot send (it drops the
// Content-Length of a streamed body and frames it chunked): a raw socket writes the status, the
// headers with the whole body's length, the first bytes of the body, then (after a pause: a stalled
// server) resets the connection, or closes it cleanly (a body that is just short). The emulator
// sends a download there with a 307 when a fault asks to cut, stall or end it mid-body.
import type { Socket, TCPSocketListener } from "bun";

interface CutAnswer {
  status: number;
  headers: Headers;
  body: Blob;
  /** Bytes of the body sent before the cut. */
  sendBytes: number;
  /** Nothing more is sent for this long before the connection is reset. */
  pauseMs: number;
  /** How the connection ends: a reset, or a clean close (the body simply stops short). */
  close: "reset" | "end";
}

interface Pending {
  bytes: Uint8Array;
  sent: number;
  after: () => void;
}

const STATUS_TEXT: Record<number, string> = { 200: "OK", 206: "Partial Content" };

export class CutServer {
  private listener?: TCPSocketListener<Pending | undefined>;
  private readonly answers = new Map<string, CutAnswer>();

  /** A one-time URL that answers `response`'s status, headers and length, then only `sendBytes` of its body. */
  async add(response: Response, sendBytes: number, pauseMs: number, close: "reset" | "end"): Promise<string> {
    const token = crypto.randomUUID();
    this.answers.set(token, {
      status: response.status,
      headers: response.headers,
      body: await response.blob(),
      sendBytes,
      pauseMs,
      close,
    });
    return `http://127.0.0.1:${this.start().port}/cut/${token}`;
  }

  stop(): void {
    this.listener?.stop(true);
    this.listener = undefined;
    this.answers.clear();
  }

  private start(): TCPSocketListener<Pending | undefined> {
    this.listener ??= Bun.listen<Pending | undefined>({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        data: (socket, data) => void this.answer(socket, data),
        drain: (socket) => CutServer.flush(socket),
        error() {},
      },
    });
    return this.listener;
  }

  private async answer(socket: Socket<Pending | undefined>, data: Uint8Array): Promise<void> {
    if (socket.data) return; // the request's head was read already
    const token = /^GET \/cut\/([0-9a-f-]{36}) /.exec(new TextDecoder().decode(data.subarray(0, 200)))?.[1];
    const answer = token ? this.answers.get(token) : undefined;
    if (!token || !answer) {
      socket.end("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
      return;
    }
    this.answers.delete(token);
    const head = [`HTTP/1.1 ${answer.status} ${STATUS_TEXT[answer.status] ?? "Answer"}`];
    answer.headers.forEach((value, key) => {
      if (key !== "content-length" && key !== "transfer-encoding" && key !== "connection")
        head.push(`${key}: ${value}`);
    });
    head.push(`content-length: ${answer.body.size}`, "connection: close", "", "");
    const body = await answer.body.slice(0, Math.min(answer.sendBytes, answer.body.size)).bytes();
    socket.data = {
      bytes: Buffer.concat([Buffer.from(head.join("\r\n")), body]),
      sent: 0,
      after: () => setTimeout(() => (answer.close === "end" ? socket.end() : socket.terminate()), answer.pauseMs),
    };
    CutServer.flush(socket);
  }

  /** Write what is left of the answer as the socket takes it; then the pause and the reset. */
  private static flush(socket: Socket<Pending | undefined>): void {
    const pending = socket.data;
    if (!pending || pending.sent === pending.bytes.length) return;
    pending.sent += Math.max(0, socket.write(pending.bytes.subarray(pending.sent)));
    if (pending.sent === pending.bytes.length) pending.after();
  }
}
