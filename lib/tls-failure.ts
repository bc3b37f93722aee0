// A server certificate the client refused, in words a user can act on: which check failed and,
// for a CA this machine does not trust, how to trust one. fetch and the upload socket (Bun.connect's
// handshake) report the same OpenSSL codes on their errors' `code`.

const TRUST_HINT = "if the server uses a private CA, trust it with NODE_EXTRA_CA_CERTS=/path/to/ca.pem";

/** The chain ends at a CA this machine does not trust. */
const UNKNOWN_CA = new Set([
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "CERT_UNTRUSTED",
]);

/** The other refusals of a certificate: final too, worded by their message. */
const REFUSED = new Set([
  "CERT_SIGNATURE_FAILURE",
  "CERT_REVOKED",
  "CERT_REJECTED",
  "INVALID_CA",
  "INVALID_PURPOSE",
  "PATH_LENGTH_EXCEEDED",
  "CERT_CHAIN_TOO_LONG",
  "UNABLE_TO_DECRYPT_CERT_SIGNATURE",
  "UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY",
  "ERROR_IN_CERT_NOT_BEFORE_FIELD",
  "ERROR_IN_CERT_NOT_AFTER_FIELD",
]);

/**
 * One line for a refused server certificate of `url`'s host, or undefined when
 * `error` is not one: unknown CA (and how to trust one), self-signed, another name, expired, not
 * valid yet, or another refusal with its code.
 */
export function describeTlsFailure(error: unknown, url: URL): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== "string") return undefined;
  const name = url.hostname.replace(/^\[|\]$/g, "");
  const its = `the certificate of ${url.host}`;
  if (UNKNOWN_CA.has(code)) return `${its} is not signed by a CA this machine trusts (${code}): ${TRUST_HINT}`;
  if (code === "DEPTH_ZERO_SELF_SIGNED_CERT")
    return `${its} is self-signed (${code}): to trust it, set NODE_EXTRA_CA_CERTS to a file holding it`;
  if (code === "ERR_TLS_CERT_ALTNAME_INVALID" || code === "HOSTNAME_MISMATCH") {
    // the upload socket's message lists the names the certificate holds; fetch's does not
    const names = /is not in the cert's altnames: (\S.*)$/.exec((error as Error).message ?? "")?.[1];
    return `${its} does not name ${name} (${code})${names ? `: it names ${names}` : ""}; use a host name it holds`;
  }
  if (code === "CERT_HAS_EXPIRED")
    return `${its} has expired (${code}): the server must renew it, or this machine's clock is wrong`;
  if (code === "CERT_NOT_YET_VALID")
    return `${its} is not valid yet (${code}): this machine's clock may be wrong, or the server's certificate is new`;
  if (REFUSED.has(code)) {
    const message = ((error as Error).message ?? "").replace(/^TLS: /, "").replace(/\.? For more information.*$/s, "");
    return `${its} was refused: ${message || code} (${code})`;
  }
  return undefined;
}
