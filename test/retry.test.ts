// The retry policy: passed in by whoever runs the transfer (Connection.retry), never a module-level
// default a caller changes; withRetry follows the policy it is given.
import { expect, test } from "bun:test";
import { ApiError } from "../lib/errors.ts";
import { DEFAULT_RETRY, withRetry } from "../lib/retry.ts";
import { connect } from "../lib/connect.ts";
import type { Context } from "../lib/context.ts";
import { quietContext } from "./helpers.ts";

const passing = () => new ApiError({ kind: "network", message: "reset", method: "GET", path: "/x", retryable: true });

test("DEFAULT_RETRY cannot be changed by a caller", () => {
  expect(Object.isFrozen(DEFAULT_RETRY)).toBe(true);
  expect(() => Object.assign(DEFAULT_RETRY, { attempts: 1 })).toThrow();
  expect(DEFAULT_RETRY.attempts).toBe(8);
});

test("withRetry makes the attempts of the policy it is given, then throws the last error", async () => {
  let tries = 0;
  const retried: number[] = [];
  const failing = withRetry(
    async () => {
      tries++;
      throw passing();
    },
    { policy: { attempts: 3, baseMs: 1, capMs: 2 }, onRetry: (_error, retry) => retried.push(retry) },
  );
  await expect(failing).rejects.toThrow("reset");
  expect(tries).toBe(3);
  expect(retried).toEqual([1, 2]);
});

test("a final error is not retried whatever the policy", async () => {
  let tries = 0;
  const failing = withRetry(
    async () => {
      tries++;
      throw new ApiError({ kind: "auth", message: "no", method: "GET", path: "/x", retryable: false });
    },
    { policy: { attempts: 5, baseMs: 1, capMs: 1 } },
  );
  await expect(failing).rejects.toThrow("no");
  expect(tries).toBe(1);
});

test("the connection carries the run's policy: the caller's, else DEFAULT_RETRY", async () => {
  const ctx = (retry?: Context["retry"]) =>
    quietContext({ EHURI: "http://127.0.0.1:9/", EHAUTH: "user:secret" }, { retry });
  const fast = { attempts: 2, baseMs: 1, capMs: 5 };
  expect((await connect({}, ctx(fast))).retry).toEqual(fast);
  expect((await connect({}, ctx())).retry).toBe(DEFAULT_RETRY);
});
