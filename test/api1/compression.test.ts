// The compression planner's model (no timing: the figures are fed in).
import { expect, test } from "bun:test";
import { CompressionPlan } from "../../lib/api1/compression.ts";

const CHUNK = 4 * 1024 * 1024;

test("fixed modes: never is raw, always is level 6", async () => {
  const raw = new Uint8Array(CHUNK).fill(97);
  expect(new CompressionPlan("never", 8).level).toBe(0);
  const never = await new CompressionPlan("never", 8).encode(raw);
  expect(never).toEqual({ body: raw, gzipped: false });
  const always = await new CompressionPlan("always", 8).encode(raw);
  expect(always.gzipped).toBe(true);
  expect(Bun.gunzipSync(always.body as Uint8Array<ArrayBuffer>)).toEqual(raw);
});

test("auto sends a chunk raw when gzip cannot shrink it (already-compressed data)", async () => {
  const random = new Uint8Array(256 * 1024);
  for (let i = 0; i < random.length; i += 65536) crypto.getRandomValues(random.subarray(i, i + 65536));
  const encoded = await new CompressionPlan("auto", 8).encode(random);
  expect(encoded.gzipped).toBe(false);
  expect(encoded.body).toBe(random);
});

test("the model: gzip -6 wins on a 10 MB/s link, raw on a fast one, with 100 ms per request too", () => {
  const plan = new CompressionPlan("auto", 8);
  plan.noteLatency(1);
  const best = (link: number) =>
    ([0, 1, 6, 9] as const).reduce((a, b) => (plan.predict(b, link, CHUNK) > plan.predict(a, link, CHUNK) ? b : a));
  expect(best(10e6)).toBe(6);
  expect(best(1e9)).toBe(0);
  const far = new CompressionPlan("auto", 8);
  far.noteLatency(100);
  expect(
    ([0, 1, 6, 9] as const).reduce((a, b) => (far.predict(b, 1e9, CHUNK) > far.predict(a, 1e9, CHUNK) ? b : a)),
  ).toBe(0);
});

test("data that one level cannot shrink is not expected to shrink at another (random, already compressed)", async () => {
  const random = new Uint8Array(CHUNK);
  for (let i = 0; i < random.length; i += 65536) crypto.getRandomValues(random.subarray(i, i + 65536));
  const plan = new CompressionPlan("always", 8);
  // level 6 measured on data that does not compress
  await plan.encode(random);
  plan.noteLatency(50);
  // every level then moves what raw moves at best, on any link: raw is never worse
  for (const link of [8e6, 32e6, 1e9])
    for (const level of [1, 9] as const)
      expect(plan.predict(level, link, CHUNK)).toBeLessThanOrEqual(plan.predict(0, link, CHUNK));
});

test("the model counts each level at the requests it runs with: gzip at its 4 lanes, raw at 12; at 100 ms a round trip a 300 MB/s link is raw's, a 32 MB/s one gzip's", () => {
  const levels = [0, 1, 6, 9] as const;
  const bestOf = (plan: CompressionPlan, link: number) =>
    levels.reduce((a, b) => (plan.predict(b, link, CHUNK) > plan.predict(a, link, CHUNK) ? b : a));
  const plan = new CompressionPlan("auto", 12, undefined, 4);
  plan.noteLatency(100);
  expect(bestOf(plan, 300e6)).toBe(0);
  expect(bestOf(plan, 32e6)).toBe(6);
  expect(bestOf(plan, 10e6)).toBe(6);
  // counting 12 gzipped requests in flight, which the upload never runs, took gzip for the faster link
  const twelve = new CompressionPlan("auto", 12);
  twelve.noteLatency(100);
  expect(bestOf(twelve, 300e6)).toBe(1);
  // a near link: the number in flight hardly matters, the choices are the same
  const near = new CompressionPlan("auto", 12, undefined, 4);
  near.noteLatency(1);
  expect(bestOf(near, 10e6)).toBe(6);
  expect(bestOf(near, 1e9)).toBe(0);
});
