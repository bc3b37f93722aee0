// https for the emulator: a CA and a server certificate made with `openssl` when the emulator
// starts, written into its temporary folder. Clients trust the CA with NODE_EXTRA_CA_CERTS=ca.pem
// (fetch and Bun.connect both read it). By default the certificate names 127.0.0.1 (an IP entry)
// and localhost (a DNS entry); tests ask for another name or an expired one to see clients refuse it.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { isIP } from "node:net";
import { join } from "node:path";

export interface StubTlsOptions {
  /** The names the server certificate holds (default 127.0.0.1 and localhost). */
  names?: string[];
  /** A certificate that expired yesterday. */
  expired?: boolean;
}

export interface Certificates {
  /** The CA's certificate (PEM): what a client trusts. */
  caPath: string;
  /** The server's key and certificate (PEM), for Bun.serve. */
  key: string;
  cert: string;
}

const DAY_MS = 24 * 60 * 60 * 1000;
const CURVE = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

/** `openssl ca` time: YYMMDDHHMMSSZ. */
function caTime(ms: number): string {
  return `${new Date(ms).toISOString().replace(/[-:T]/g, "").slice(2, 14)}Z`;
}

function config(names: string[]): string {
  const entries = names.map((name) => `${isIP(name) ? "IP" : "DNS"}:${name}`).join(", ");
  return `[req]
distinguished_name = dn
prompt = no
[dn]
CN = drivekit emulator
[emulator_ca]
database = index.txt
new_certs_dir = .
default_md = sha256
policy = any_name
unique_subject = no
rand_serial = yes
[any_name]
commonName = supplied
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = ${entries}
authorityKeyIdentifier = keyid
`;
}

function openssl(dir: string, args: string[]): void {
  const binary = Bun.which("openssl");
  if (!binary) throw new Error("serving https needs openssl to make its certificate (Debian: apt-get install openssl)");
  const made = Bun.spawnSync([binary, ...args], { cwd: dir, stdin: "ignore", stdout: "ignore", stderr: "pipe" });
  if (made.exitCode !== 0) {
    const why = made.stderr.toString().trim().split("\n").at(-1);
    throw new Error(`openssl ${args[0]} failed (${made.exitCode}): ${why}`);
  }
}

/**
 * Make a CA and a server certificate it signed, in `parent`/tls/. Synchronous (three short openssl
 * runs with EC keys), so a test helper can call it too.
 */
export function makeCertificates(parent: string, options: StubTlsOptions = {}): Certificates {
  const dir = join(parent, "tls");
  mkdirSync(dir, { recursive: true });
  const names = options.names ?? ["127.0.0.1", "localhost"];
  writeFileSync(join(dir, "openssl.cnf"), config(names));
  writeFileSync(join(dir, "index.txt"), "");
  const req = ["req", "-config", "openssl.cnf", ...CURVE];
  const ca = ["-x509", "-extensions", "ca_ext", "-days", "30", "-subj", "/CN=drivekit emulator CA"];
  openssl(dir, [...req, ...ca, "-keyout", "ca-key.pem", "-out", "ca.pem"]);
  const subject = `/CN=${names[0] ?? "localhost"}`;
  openssl(dir, [...req, "-new", "-subj", subject, "-keyout", "key.pem", "-out", "server.csr"]);
  const now = Date.now();
  const [from, until] = options.expired ? [now - 2 * DAY_MS, now - DAY_MS] : [now - DAY_MS, now + 30 * DAY_MS];
  const signer = [
    "-batch",
    "-config",
    "openssl.cnf",
    "-name",
    "emulator_ca",
    "-cert",
    "ca.pem",
    "-keyfile",
    "ca-key.pem",
  ];
  const validity = ["-startdate", caTime(from), "-enddate", caTime(until)];
  const extensions = ["-extfile", "openssl.cnf", "-extensions", "server_ext", "-notext"];
  openssl(dir, ["ca", ...signer, "-in", "server.csr", "-out", "cert.pem", ...validity, ...extensions]);
  return {
    caPath: join(dir, "ca.pem"),
    key: readFileSync(join(dir, "key.pem"), "utf8"),
    cert: readFileSync(join(dir, "cert.pem"), "utf8"),
  };
}
