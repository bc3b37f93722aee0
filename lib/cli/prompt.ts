// A yes/no question on stderr, answered on stdin (stdout stays for results).
import type { RunContext } from "./runner.ts";

const MAX_ANSWER = 256;

export async function confirm(ctx: RunContext, question: string): Promise<boolean> {
  ctx.io.stderr.write(`${question} [y/N] `);
  const reader = ctx.io.stdin().getReader();
  const decoder = new TextDecoder();
  let answer = "";
  try {
    while (!answer.includes("\n") && answer.length < MAX_ANSWER) {
      const { value, done } = await reader.read();
      if (done) break;
      answer += decoder.decode(value, { stream: true });
    }
  } finally {
    reader.releaseLock();
  }
  return /^\s*y(es)?\s*$/i.test(answer.split("\n")[0] ?? "");
}
