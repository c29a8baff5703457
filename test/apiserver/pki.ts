// TLS material and a kubeconfig for the test API server: a throwaway CA
// made with the openssl CLI, a server certificate it signs for 127.0.0.1,
// and a bearer token.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { requireCommand } from '../lib/preconditions.js';

const exec = promisify(execFile);

export interface TestPki {
  caCert: string;
  serverCert: string;
  serverKey: string;
  token: string;
}

/** Makes a CA and a server certificate for IP 127.0.0.1 in `dir`. */
export async function createTestPki(dir: string): Promise<TestPki> {
  requireCommand('openssl', 'apt-get install openssl');
  const file = (name: string) => path.join(dir, name);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await exec('openssl', ['req', '-x509', ...ec, '-keyout', file('ca.key'), '-out', file('ca.crt'), '-days', '1', '-subj', '/CN=kube-lb-test-ca']);
  await exec('openssl', ['req', ...ec, '-keyout', file('server.key'), '-out', file('server.csr'), '-subj', '/CN=kube-apiserver']);
  fs.writeFileSync(file('server.ext'), 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  await exec('openssl', ['x509', '-req', '-in', file('server.csr'), '-CA', file('ca.crt'), '-CAkey', file('ca.key'), '-CAcreateserial', '-days', '1', '-extfile', file('server.ext'), '-out', file('server.crt')]);
  const read = (name: string) => fs.readFileSync(file(name), 'utf8');
  return { caCert: read('ca.crt'), serverCert: read('server.crt'), serverKey: read('server.key'), token: randomBytes(24).toString('hex') };
}

/** Writes a kubeconfig that reaches the server at https://127.0.0.1:<port> with the CA and the token. */
export function writeKubeconfig(file: string, port: number, pki: TestPki): void {
  const kubeconfig = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'test', cluster: { server: `https://127.0.0.1:${port}`, 'certificate-authority-data': Buffer.from(pki.caCert).toString('base64') } }],
    users: [{ name: 'kube-lb', user: { token: pki.token } }],
    contexts: [{ name: 'test', context: { cluster: 'test', user: 'kube-lb' } }],
    'current-context': 'test',
  };
  fs.writeFileSync(file, stringify(kubeconfig), { mode: 0o600 });
}
