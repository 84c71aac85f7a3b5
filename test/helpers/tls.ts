// A private CA and an https front of a reference server, as a deployment with its own CA has:
// for the tests that TLS is verified and that a CA given once (--ca) is trusted.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

/**
 * Writes into dir: ca.pem/ca.key (a CA named `caName`), srv.pem/srv.key (a certificate for
 * 127.0.0.1 it signed) and, with `other`, other.pem (an unrelated CA).
 */
export function makePki(dir: string, caName: string, o: { other?: boolean } = {}): void {
  const ossl = (...a: string[]) => execFileSync('openssl', a, { cwd: dir, stdio: 'ignore' });
  ossl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', `/CN=${caName}`);
  if (o.other) ossl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'other.key', '-out', 'other.pem', '-days', '2', '-subj', '/CN=some other CA');
  ossl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'srv.key', '-out', 'srv.csr', '-subj', '/CN=127.0.0.1');
  writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName = IP:127.0.0.1\n');
  ossl('x509', '-req', '-in', 'srv.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'srv.pem', '-days', '2', '-extfile', 'ext.cnf');
}

/** An https server on 127.0.0.1 with dir's srv.pem that forwards every request to `target`. */
export async function tlsFront(target: string, dir: string): Promise<{ url: string; close(): Promise<void> }> {
  const to = new URL(target);
  const front = https.createServer({ key: readFileSync(join(dir, 'srv.key')), cert: readFileSync(join(dir, 'srv.pem')) }, (req, res) => {
    const up = http.request({ host: to.hostname, port: to.port, method: req.method, path: req.url, headers: { ...req.headers, host: to.host } }, (ur) => {
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      ur.pipe(res);
    });
    up.on('error', () => { res.statusCode = 502; res.end(); });
    req.pipe(up);
  });
  await new Promise<void>((r) => front.listen(0, '127.0.0.1', r));
  return {
    url: `https://127.0.0.1:${(front.address() as AddressInfo).port}`,
    close: () => new Promise<void>((r) => { front.closeAllConnections(); front.close(() => r()); }),
  };
}
