// SCTP servers and clients for the sandbox. Node.js has no SCTP sockets, so
// these are small Python programs, run where the TCP and UDP ones run. The
// kernel must have SCTP sockets (CONFIG_IP_SCTP): the host's does not, the
// VM's (test/vm) does; without them the server fails and says so.
import { requireCommand } from './preconditions.js';
import { type ClientPlace, type ClientResult, type NodeSandbox, outputOf, waitForLine } from './sandbox.js';
import { slow } from './slowdown.js';

// Args: NAME PORT. Answers each association with its name, then closes it.
const SERVER = String.raw`
import socket, sys
name, port = sys.argv[1], int(sys.argv[2])
try:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
except OSError as err:
    sys.exit(f'this kernel has no SCTP sockets (CONFIG_IP_SCTP); the SCTP rows run in the VM (test/vm): {err}')
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', port))
s.listen(64)
print('ready', flush=True)
while True:
    conn, _ = s.accept()
    try:
        conn.sendall(f'{name}\n'.encode())
    except OSError:
        pass
    conn.close()
`;

// Args: TARGET PORT COUNT TIMEOUT_S [SOURCE]. Opens COUNT associations one
// after another, reads each answer; prints a ClientResult as JSON.
const CLIENT = String.raw`
import json, socket, sys
target, port, count, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
source = sys.argv[5] if len(sys.argv) > 5 else None
result = {'answers': {}, 'failures': 0, 'errors': []}
for _ in range(count):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
    s.settimeout(timeout)
    try:
        if source:
            s.bind((source, 0))
        s.connect((target, port))
        answer = b''
        while not answer.endswith(b'\n'):
            chunk = s.recv(256)
            if not chunk:
                raise ConnectionError(f'closed after {answer!r}')
            answer += chunk
        name = answer.decode().strip()
        result['answers'][name] = result['answers'].get(name, 0) + 1
    except Exception as err:
        result['failures'] += 1
        result['errors'].append(repr(err))
    finally:
        s.close()
print(json.dumps(result), flush=True)
`;

/** Starts an SCTP server in each pod, answering with the pod's name; resolves once all listen. */
export async function startSctpServers(sandbox: NodeSandbox, podNames: readonly string[], port: number): Promise<void> {
  requireCommand('python3', 'apt-get install python3');
  await Promise.all(
    podNames.map((name) => waitForLine(sandbox.spawnInPod(name, 'python3', ['-c', SERVER, name, String(port)]), /ready/, slow(10_000), `SCTP server in pod ${name}`)),
  );
}

/** Opens `count` SCTP associations from a place to target:port, one after another. */
export async function sctpClient(sandbox: NodeSandbox, place: ClientPlace, target: string, port: number, count: number, source?: string): Promise<ClientResult> {
  const args = ['-c', CLIENT, target, String(port), String(count), String(slow(2000) / 1000), ...(source === undefined ? [] : [source])];
  return JSON.parse((await outputOf(sandbox.spawnAt(place, 'python3', args), 'the SCTP client')).trim()) as ClientResult;
}
