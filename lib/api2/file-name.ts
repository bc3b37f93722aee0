// The file an API 2.0 download goes to without FILE: the name the server gives the drive in its
// download's Content-Disposition, reduced to a plain name in the current folder.
import { directClient, type Connection } from "../connect.ts";
import { downloadPath } from "./drive-source.ts";

/** The file name a Content-Disposition header proposes, undecoded by any safety rule yet. */
export function dispositionName(header: string | null): string | undefined {
  if (!header) return undefined;
  // RFC 6266: filename* (RFC 5987, percent-encoded) wins over filename
  const extended = /(?:^|;)\s*filename\*\s*=\s*([^']*)'[^']*'([^;]*)/i.exec(header);
  if (extended) {
    try {
      return decodeURIComponent((extended[2] ?? "").trim());
    } catch {
      // a broken encoding: fall back to the plain parameter
    }
  }
  const quoted = /(?:^|;)\s*filename\s*=\s*"((?:[^"\\]|\\.)*)"/i.exec(header);
  if (quoted) return (quoted[1] ?? "").replace(/\\(.)/g, "$1");
  const token = /(?:^|;)\s*filename\s*=\s*([^;]*)/i.exec(header);
  return token ? (token[1] ?? "").trim() : undefined;
}

/**
 * A name the server proposes, reduced to a plain base name that stays in the current folder: the
 * last path segment (either separator), no control characters, not empty, not `.` or `..`, at most
 * 255 bytes. Anything else gives the fallback (the drive UUID).
 */
export function safeFileName(proposed: string | undefined, fallback: string): string {
  if (proposed === undefined) return fallback;
  const segment = proposed.split(/[/\\]/).pop() ?? "";
  const name = segment.replace(/[\x00-\x1f\x7f-\x9f]/g, "").trim();
  if (name === "" || /^\.+$/.test(name) || Buffer.byteLength(name) > 255) return fallback;
  return name;
}

/** The server's (sanitised) name for drive `drive`: the headers of a GET of its first byte, whose body is not read. */
export async function serverFileName(connection: Connection, drive: string, signal?: AbortSignal): Promise<string> {
  const response = await directClient(connection).request("GET", downloadPath(drive), {
    headers: { range: "bytes=0-0", "accept-encoding": "identity" },
    signal,
  });
  await response.body?.cancel().catch(() => undefined);
  return safeFileName(dispositionName(response.headers.get("content-disposition")), drive);
}
