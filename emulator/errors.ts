// The emulator's error answers, one builder per API generation:
// - API 1.0 (ElasticStack): a plain-text `errors:KIND message` body and the `X-Elastic-Error` header.
// - API 2.0 (CloudSigma): a JSON list of `{error_point, error_type, error_message}` and the
//   `X-REQUEST-ID` header every 2.0 answer carries (support asks for it).

export function elasticError(
  status: number,
  kind: string,
  message: string,
  headers: Record<string, string> = {},
): Response {
  return new Response(`errors:${kind} ${message}\n`, {
    status,
    headers: { "content-type": "text/plain", "x-elastic-error": kind, ...headers },
  });
}

/** A fresh API 2.0 request id: 16 hex digits. */
export function requestId(): string {
  return crypto.randomUUID().replace(/-/g, "").slice(0, 16);
}

/**
 * An API 2.0 error: the JSON list CloudSigma answers with; `point` names the field at fault
 * (`error_point`, null when none). Error types: validation, notexist, permission, concurrency,
 * backend, billing...
 */
export function api2Error(
  status: number,
  type: string,
  message: string,
  headers: Record<string, string> = {},
  point: string | null = null,
): Response {
  return Response.json([{ error_point: point, error_type: type, error_message: message }], {
    status,
    headers: { "x-request-id": requestId(), ...headers },
  });
}
