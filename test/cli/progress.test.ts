// Progress on stderr: a live line on a terminal; log lines elsewhere, and on a terminal too when
// several transfers run at once (`live: false`: one live line would overwrite the others').
import { expect, test } from "bun:test";
import { createConsola } from "consola";
import { createProgress } from "../../lib/cli/progress.ts";

function terminal() {
  const written: string[] = [];
  const logged: string[] = [];
  const log = createConsola({ level: 4, reporters: [{ log: (entry) => void logged.push(entry.args.join(" ")) }] });
  const io = { stderr: { write: (text: string | Uint8Array) => void written.push(String(text)) }, stderrIsTTY: true };
  return { written, logged, ctx: { io, log } };
}

test("a terminal gets one live line; with live: false, log lines with the label", () => {
  const live = terminal();
  const one = createProgress(live.ctx, { label: "copy", total: 100 });
  one.update(50);
  one.finish("done");
  expect(live.written.some((text) => text.startsWith("\r\u001b[2Kcopy 50 B / 100 B"))).toBe(true);
  expect(live.logged).toEqual(["done"]);

  const many = terminal();
  const each = createProgress(many.ctx, { label: "copy 1234abcd", total: 100, live: false, logEveryMs: 0 });
  each.update(50);
  each.finish("done");
  expect(many.written).toEqual([]);
  expect(many.logged[0]).toMatch(/^copy 1234abcd 50 B \/ 100 B/);
  expect(many.logged.at(-1)).toBe("done");
});
