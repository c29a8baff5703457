// Two TCP connections from one client port at once, to two frontends that
// lead to one endpoint: the endpoint would see one 4-tuple for both unless
// the datapath gives one of them another port there (conntrack does it when
// it resolves a clash; the ebpf datapath keeps a port of its own per flow).
import { requireCommand } from './preconditions.js';
import { type NodeSandbox, outputOf } from './sandbox.js';
import { slow } from './slowdown.js';

// Args: TARGET_A TARGET_B PORT LINES TIMEOUT_S. Binds both sockets to one
// port, connects both, then sends LINES lines on each in turn, reading each
// answer; prints one JSON line with the answers per connection, or the error.
const CLIENT = String.raw`
import json, socket, sys

target_a, target_b, port, lines, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
result = {'port': None, 'answers': [[], []]}
try:
    socks = []
    for target in (target_a, target_b):
        ipv6 = ':' in target
        s = socket.socket(socket.AF_INET6 if ipv6 else socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.settimeout(timeout)
        s.bind(('::' if ipv6 else '0.0.0.0', result['port'] or 0))
        result['port'] = s.getsockname()[1]
        s.connect((target, port))
        socks.append((s, s.makefile('r')))
    for i, (s, reader) in enumerate(socks):
        result['answers'][i].append(reader.readline().strip())  # the greeting
    for _ in range(lines):
        for i, (s, reader) in enumerate(socks):
            s.sendall(b'ping\n')
            result['answers'][i].append(reader.readline().strip())
except Exception as err:
    result['error'] = repr(err)
print(json.dumps(result), flush=True)
`;

export interface SharedPortResult {
  /** The client port both connections used. */
  port: number | null;
  /** Per connection: the greeting, then one answer per line sent. */
  answers: [string[], string[]];
  error?: string;
}

export async function sharedPortConnections(sandbox: NodeSandbox, client: string, targets: [string, string], port: number, lines: number): Promise<SharedPortResult> {
  requireCommand('python3', 'apt-get install python3');
  const child = sandbox.spawnInPod(client, 'python3', ['-c', CLIENT, ...targets, String(port), String(lines), String(slow(2000) / 1000)]);
  return JSON.parse((await outputOf(child, 'the shared-port client')).trim()) as SharedPortResult;
}
