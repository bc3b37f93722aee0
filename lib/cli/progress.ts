// Progress on stderr: a live line on a terminal, a log line every few seconds elsewhere.
import type { ConsolaInstance } from "consola";
import type { Progress, ProgressOptions } from "../context.ts";
import type { Io } from "./runner.ts";
import { humanBytes } from "../size.ts";

function formatEta(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "--:--";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (n: number) => String(n).padStart(2, "0");
  return h > 0 ? `${h}:${pad(m)}:${pad(s % 60)}` : `${pad(m)}:${pad(s % 60)}`;
}

export function progressLine(label: string, done: number, total: number, elapsedMs: number, note?: string): string {
  const percent = total > 0 ? Math.min(100, (done / total) * 100) : 100;
  const rate = elapsedMs > 0 ? done / (elapsedMs / 1000) : 0;
  const eta = rate > 0 ? (total - done) / rate : Number.NaN;
  const parts = [
    `${label} ${humanBytes(done)} / ${humanBytes(total)}`,
    `${percent.toFixed(1)}%`,
    `${(rate / 1e6).toFixed(1)} MB/s`,
    `ETA ${formatEta(eta)}`,
  ];
  if (note) parts.push(note);
  return parts.join("  ");
}

export function createProgress(
  ctx: { io: Pick<Io, "stderr" | "stderrIsTTY">; log: ConsolaInstance },
  options: ProgressOptions,
): Progress {
  const started = performance.now();
  const live = ctx.io.stderrIsTTY && options.live !== false;
  const every = live ? 200 : (options.logEveryMs ?? 5000);
  // a terminal shows the line at once; a log gets its first line after one interval
  let last = live ? Number.NEGATIVE_INFINITY : started;
  let shown = false;
  let lastNote: string | undefined;
  let lastDone = 0;
  const render = () => progressLine(options.label, lastDone, options.total, performance.now() - started, lastNote);
  return {
    update(done, note) {
      lastDone = done;
      lastNote = note;
      if (options.quiet) return;
      const now = performance.now();
      if (now - last < every) return;
      last = now;
      if (live) {
        ctx.io.stderr.write(`\r\u001b[2K${render()}`);
        shown = true;
      } else {
        ctx.log.info(render());
      }
    },
    finish(summary) {
      if (live && shown) ctx.io.stderr.write("\r\u001b[2K");
      if (!options.quiet && summary) ctx.log.success(summary);
    },
  };
}
