import { describe, expect, test } from "bun:test";
import { GcPacing, runLimited } from "../../lib/chunks/engine.ts";

/**
 * Tasks that each wait until the test lets the oldest finish (`next()`), so the test sees how many
 * run at once; `started(running, done)` is told at each start.
 */
function heldTasks(started: (running: number, done: number) => void) {
  const waiting: Array<() => void> = [];
  const done: number[] = [];
  let running = 0;
  const task = (item: number) =>
    new Promise<void>((resolve) => {
      running++;
      started(running, done.length);
      waiting.push(() => {
        running--;
        done.push(item);
        resolve();
      });
    });
  return { task, done, running: () => running, next: () => waiting.shift()?.() };
}

/** 40 items through `held`'s tasks, at most `limit` at once and `wanted()` wanted. */
function runHeld(held: ReturnType<typeof heldTasks>, limit: number, wanted: () => number) {
  const items = Array.from({ length: 40 }, (_, i) => i);
  const finished = runLimited(
    items,
    limit,
    held.task,
    () => undefined,
    () => false,
    wanted,
  );
  return { items, finished };
}

test("runLimited runs up to the limit, and retires lanes when fewer are wanted", async () => {
  let peakEarly = 0;
  let peakLate = 0;
  let wanted = 8;
  const held = heldTasks((running, done) => {
    if (done < 8) peakEarly = Math.max(peakEarly, running);
    // by 16 done, the 8 tasks in flight when the limit dropped have finished
    if (done >= 16) peakLate = Math.max(peakLate, running);
  });
  const { items, finished } = runHeld(held, 8, () => wanted);
  for (let step = 0; step < 1000 && held.done.length < items.length; step++) {
    await Bun.sleep(0);
    if (held.done.length >= 8) wanted = 3;
    held.next();
  }
  await finished;
  expect(held.done.toSorted((a, b) => a - b)).toEqual(items);
  expect(peakEarly).toBe(8);
  expect(peakLate).toBeGreaterThan(0);
  expect(peakLate).toBeLessThanOrEqual(3);
  expect(held.running()).toBe(0);
});

test("runLimited starts more tasks when more lanes are wanted, never above its limit", async () => {
  let peak = 0;
  let wanted = 2;
  const held = heldTasks((running) => {
    peak = Math.max(peak, running);
  });
  const { items, finished } = runHeld(held, 6, () => wanted);
  const peaks: number[] = [];
  for (let step = 0; step < 1000 && held.done.length < items.length; step++) {
    await Bun.sleep(0);
    peaks.push(held.running());
    // 2 at first; from the 10th done, 20 wanted: the limit of 6 holds
    if (held.done.length >= 10) wanted = 20;
    held.next();
  }
  await finished;
  expect(held.done.toSorted((a, b) => a - b)).toEqual(items);
  expect(Math.max(...peaks.slice(0, 5))).toBe(2);
  expect(peak).toBe(6);
});

describe("GcPacing", () => {
  const MiB = 1024 * 1024;
  /** A process holding more than a full collection waits for. */
  const held = { rss: () => 200 * MiB, fullAbove: 96 * MiB };

  test("a full collection every fullEvery bytes, one without waiting every asyncEvery between, counted from the last of either", () => {
    const pacing = new GcPacing(() => 16 * MiB, 4 * MiB, held);
    const asked = Array.from({ length: 10 }, () => pacing.moved(2 * MiB));
    expect(asked).toEqual([
      undefined,
      "async",
      undefined,
      "async",
      undefined,
      "async",
      undefined,
      "full",
      undefined,
      "async",
    ]);
  });

  test("none where nothing is left for the GC (fullEvery infinite); the figure is read at each step", () => {
    let every = Number.POSITIVE_INFINITY;
    const pacing = new GcPacing(() => every, 4 * MiB, held);
    expect([pacing.moved(8 * MiB), pacing.moved(8 * MiB)]).toEqual([undefined, undefined]);
    // a source that changes its way mid-run (a drive read in spans from then on): the bytes moved
    // before count toward its first full collection
    every = 32 * MiB;
    expect(pacing.moved(4 * MiB)).toBe("async");
    expect(pacing.moved(4 * MiB)).toBe("async");
    expect(pacing.moved(8 * MiB)).toBe("full");
    expect(pacing.moved(4 * MiB)).toBe("async");
  });

  test("a full collection that is due waits while the process holds less than fullAbove, asked again at each step; the next is counted from it", () => {
    let rss = 60 * MiB;
    const pacing = new GcPacing(() => 16 * MiB, 4 * MiB, { rss: () => rss, fullAbove: 96 * MiB });
    const step = () => pacing.moved(4 * MiB);
    // 16 MiB moved, the process small: only the collections without waiting
    expect([step(), step(), step(), step(), step()]).toEqual(["async", "async", "async", "async", "async"]);
    rss = 100 * MiB;
    expect(step()).toBe("full");
    expect([step(), step(), step(), step()]).toEqual(["async", "async", "async", "full"]);
  });
});
