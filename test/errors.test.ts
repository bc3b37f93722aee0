import { describe, expect, test } from "bun:test";
import { ApiError, exitStatusOf, OperationError } from "../lib/errors.ts";

describe("ApiError", () => {
  test("built from named fields: the one-line message, the retry default, the cause kept", () => {
    const cause = Object.assign(new Error("socket hang up"), { code: "ECONNRESET" });
    const error = new ApiError({
      kind: "network",
      message: "connection reset by api.example",
      method: "GET",
      path: "/drives/list",
      cause,
    });
    expect(error.message).toBe("GET /drives/list failed: network: connection reset by api.example");
    expect(error.retryable).toBe(true);
    expect(error.cause).toBe(cause);
    expect(error).toBeInstanceOf(OperationError);
    expect(exitStatusOf(error)).toBe(1);
  });

  test("status, error type and request id are shown; 5xx retryable, full and 4xx final unless told", () => {
    const error = new ApiError({
      kind: "system",
      message: "unknown error",
      status: 503,
      method: "POST",
      path: "/api/2.0/drives/",
      requestId: "a1b2c3",
      errorType: "backend",
    });
    expect(error.message).toBe("POST /api/2.0/drives/ failed: 503 backend: unknown error (X-REQUEST-ID a1b2c3)");
    expect(error.retryable).toBe(true);
    expect(new ApiError({ kind: "full", message: "", status: 507, method: "POST", path: "/w" }).retryable).toBe(false);
    expect(new ApiError({ kind: "usage", message: "bad", status: 400, method: "POST", path: "/w" }).retryable).toBe(
      false,
    );
    expect(
      new ApiError({ kind: "usage", message: "bad", status: 400, method: "POST", path: "/w", retryable: true })
        .retryable,
    ).toBe(true);
  });

  test("with() changes a field and keeps the rest (request id, error type, cause)", () => {
    const cause = new Error("inner");
    const error = new ApiError({
      kind: "conflict",
      message: "busy",
      status: 409,
      method: "POST",
      path: "/x",
      retryable: true,
      requestId: "id1",
      errorType: "permission",
      cause,
    });
    const final = error.with({ retryable: false });
    expect(final.retryable).toBe(false);
    expect(final.message).toBe(error.message);
    expect(final.requestId).toBe("id1");
    expect(final.errorType).toBe("permission");
    expect(final.cause).toBe(cause);
  });
});
