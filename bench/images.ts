// Benchmark images, built once into bench/work/ and reused: a real ext4 filesystem about 70% full
// of real files copied from /usr (mkfs.ext4 -d), or, where mkfs.ext4 is missing, a generated mix
// of text, binaries, random data and zero runs in the same proportions.
import { spawnSync } from "node:child_process";
import {
  closeSync,
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  renameSync,
  rmSync,
  writeSync,
  ftruncateSync,
} from "node:fs";
import { join } from "node:path";

export const WORK = new URL("./work/", import.meta.url).pathname;
const FILL = 0.7;

function which(command: string): string | undefined {
  for (const dir of ["/usr/sbin", "/sbin", "/usr/bin", "/bin", ...(process.env.PATH ?? "").split(":")]) {
    const path = join(dir, command);
    if (existsSync(path)) return path;
  }
  return undefined;
}

/** Real files from /usr, in a stable order, until `budget` bytes. */
function stageFiles(staging: string, budget: number): number {
  let total = 0;
  const walk = (dir: string): boolean => {
    let names: string[];
    try {
      names = readdirSync(dir).sort();
    } catch {
      return true;
    }
    for (const name of names) {
      const path = join(dir, name);
      let info: ReturnType<typeof lstatSync>;
      try {
        info = lstatSync(path);
      } catch {
        continue;
      }
      if (info.isDirectory()) {
        if (!walk(path)) return false;
      } else if (info.isFile() && info.size > 0 && info.size < 64 * 1024 * 1024) {
        if (total + info.size > budget) return total < budget * 0.98;
        const target = join(staging, path.slice(1));
        mkdirSync(join(target, ".."), { recursive: true });
        try {
          copyFileSync(path, target);
          total += info.size;
        } catch {
          // unreadable file: skip it
        }
      }
    }
    return true;
  };
  for (const root of ["/usr/lib", "/usr/share", "/usr/bin", "/usr/libexec", "/usr/include"]) {
    if (!walk(root)) break;
  }
  return total;
}

function ext4Image(path: string, size: number): boolean {
  const mkfs = which("mkfs.ext4");
  if (!mkfs) return false;
  const staging = `${path}.staging`;
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true });
  const staged = stageFiles(staging, Math.floor(size * FILL));
  const temporary = `${path}.tmp`;
  rmSync(temporary, { force: true });
  const result = spawnSync(
    mkfs,
    ["-q", "-F", "-t", "ext4", "-i", "8192", "-d", staging, temporary, `${size / 1024}k`],
    { stdio: ["ignore", "ignore", "inherit"] },
  );
  rmSync(staging, { recursive: true, force: true });
  if (result.status !== 0) {
    rmSync(temporary, { force: true });
    return false;
  }
  renameSync(temporary, path);
  console.error(`bench: built ${path}: ext4, ${(staged / 1e6).toFixed(0)} MB of files from /usr`);
  return true;
}

/** The fallback: 4 MiB stretches of text, binary-like bytes, random bytes and zeros, ~70% non-zero. */
function generatedImage(path: string, size: number): void {
  const fd = openSync(`${path}.tmp`, "w");
  ftruncateSync(fd, size);
  const piece = 4 * 1024 * 1024;
  const words = "the quick brown fox jumps over a lazy dog while drives move in chunks of four mebibytes ".split(" ");
  let x = 12345;
  const next = () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
  const buffer = new Uint8Array(piece);
  for (let offset = 0, n = 0; offset < size; offset += piece, n++) {
    const kind = n % 10;
    if (kind >= 7) continue; // 30% zero: left as a hole
    if (kind < 3) {
      let text = "";
      while (text.length < piece) text += `${words[next() % words.length]} ${next() % 1000}\n`;
      buffer.set(new TextEncoder().encode(text.slice(0, piece)));
    } else if (kind < 6) {
      // binary-like: short repeated opcodes and small numbers, compresses ~2-3x
      for (let i = 0; i < piece; i++) buffer[i] = next() % 4 === 0 ? next() & 255 : (i * 7) & 0x1f;
    } else {
      for (let i = 0; i < piece; i += 4) new DataView(buffer.buffer).setUint32(i, next());
    }
    writeSync(fd, buffer, 0, Math.min(piece, size - offset), offset);
  }
  closeSync(fd);
  renameSync(`${path}.tmp`, path);
  console.error(`bench: built ${path}: generated mix (mkfs.ext4 not used)`);
}

/** The image for `label` (e.g. 256M), built on first use. `kind` "ext4" falls back to "mix". */
export function benchImage(label: string, size: number, kind: "ext4" | "mix" = "ext4"): string {
  mkdirSync(WORK, { recursive: true });
  const path = join(WORK, `${kind}-${label}.img`);
  if (existsSync(path)) return path;
  if (kind === "ext4" && ext4Image(path, size)) return path;
  const mix = join(WORK, `mix-${label}.img`);
  if (!existsSync(mix)) generatedImage(mix, size);
  return mix;
}

if (import.meta.main) {
  for (const [label, size] of [
    ["256M", 256 * 2 ** 20],
    ["1G", 2 ** 30],
  ] as const)
    console.log(benchImage(label, size));
  console.log(benchImage("4G", 4 * 2 ** 30, "mix"));
}
