// Certificates for TLS tests, made with openssl: a CA, and a server certificate it signs for the
// given names (DNS names or IP addresses). A client trusts the CA (`ca` in-process, or
// NODE_EXTRA_CA_CERTS=caPath for a spawned script).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface Certificates {
  dir: string;
  /** The CA's certificate (PEM): what a client must trust. */
  ca: string;
  caPath: string;
  key: string;
  cert: string;
  remove(): void;
}

/** A CA and a server certificate signed by it for `names` (DNS names or IP addresses), made with openssl. */
export function makeCertificates(names: string[]): Certificates {
  const openssl = Bun.which("openssl");
  if (!openssl) throw new Error("openssl is needed to make test certificates");
  const dir = mkdtempSync(join(tmpdir(), "drivekit-certs-"));
  const path = (name: string) => join(dir, name);
  // each step as openssl's words; {NAME} is a file in dir (split first: dir may hold spaces)
  const run = (words: string) => {
    const args = words.split(" ").map((word) => word.replace(/\{(.+)\}/, (_, name: string) => path(name)));
    const made = Bun.spawnSync([openssl, ...args], { stderr: "pipe" });
    if (made.exitCode !== 0) throw new Error(`openssl ${args[0]} failed: ${made.stderr.toString()}`);
  };
  const alt = names.map((name) => (/^[\d.]+$|:/.test(name) ? `IP:${name}` : `DNS:${name}`)).join(",");
  writeFileSync(path("ext.cnf"), `subjectAltName=${alt}\nextendedKeyUsage=serverAuth\n`);
  const newKey = "-newkey rsa:2048 -nodes -keyout";
  run(
    `req -x509 ${newKey} {ca-key.pem} -days 2 -subj /CN=drivekit-test-CA -out {ca.pem} ` +
      "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign",
  );
  run(`req ${newKey} {key.pem} -subj /CN=${names[0]} -out {server.csr}`);
  run(
    "x509 -req -in {server.csr} -CA {ca.pem} -CAkey {ca-key.pem} -CAcreateserial -days 2 -extfile {ext.cnf} -out {cert.pem}",
  );
  const read = (name: string) => readFileSync(path(name), "utf8");
  return {
    dir,
    ca: read("ca.pem"),
    caPath: path("ca.pem"),
    key: read("key.pem"),
    cert: read("cert.pem"),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
