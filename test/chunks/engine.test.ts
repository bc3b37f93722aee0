import { expect, test } from "bun:test";
import { runLimited } from "../../lib/chunks/engine.ts";

test("runLimited runs up to the limit, and retires lanes when fewer are wanted", async () => {
  let running = 0;
  let peakEarly = 0;
  let peakLate = 0;
  let wanted = 8;
  const done: number[] = [];
  const waiting: Array<() => void> = [];
  // each task waits until the test lets it finish, so the test sees how many run at once
  const task = (item: number) =>
    new Promise<void>((resolve) => {
      running++;
      if (done.length < 8) peakEarly = Math.max(peakEarly, running);
      // by 16 done, the 8 tasks in flight when the limit dropped have finished
      if (done.length >= 16) peakLate = Math.max(peakLate, running);
      waiting.push(() => {
        running--;
        done.push(item);
        resolve();
      });
    });
  const items = Array.from({ length: 40 }, (_, i) => i);
  const finished = runLimited(
    items,
    8,
    task,
    () => undefined,
    () => false,
    () => wanted,
  );
  for (let step = 0; step < 1000 && done.length < items.length; step++) {
    await Bun.sleep(0);
    if (done.length >= 8) wanted = 3;
    waiting.shift()?.();
  }
  await finished;
  expect(done.toSorted((a, b) => a - b)).toEqual(items);
  expect(peakEarly).toBe(8);
  expect(peakLate).toBeGreaterThan(0);
  expect(peakLate).toBeLessThanOrEqual(3);
  expect(running).toBe(0);
});
