// Kubernetes issue 74839 made reproducible: an endpoint sends a TCP segment
// that lies beyond the client's receive window. Conntrack marks it INVALID
// and does not de-NAT it, so unless the node drops it, it reaches the client
// from the endpoint's own address; the client has no socket for that
// address and answers with a RST, which the endpoint accepts (it carries
// exactly the sequence number the endpoint expects) and the connection dies.
//
// The client holds a connection through a service to the endpoint and goes
// quiet; a sniffer in the endpoint's namespace has seen the connection's
// sequence numbers, crafts the segment with a raw socket and watches for the
// client's answer; then the client sends one more line.
import { type IdleUse, idleConnection, lastLine } from './idle-connection.js';
import { requireCommand } from './preconditions.js';
import { type NodeSandbox, outputOf, waitForLine } from './sandbox.js';
import { slow } from './slowdown.js';

// Args: CLIENT_IP SERVER_PORT ANSWER_WAIT_MS, the client's address of
// either family. Prints "listening" once it sniffs eth0; on SIGUSR2 sends
// the segment, waits for the client's answer and prints one JSON line.
const INJECTOR = String.raw`
import json, signal, socket, struct, sys, time

client_ip, server_port, answer_wait_ms = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ETH_HEADER, RST = 14, 0x04
ipv6 = ':' in client_ip
af = socket.AF_INET6 if ipv6 else socket.AF_INET

sniffer = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x86dd if ipv6 else 0x0800))
sniffer.bind(('eth0', 0))
sniffer.settimeout(0.05)
go = False
def on_usr2(*_):
    global go
    go = True
signal.signal(signal.SIGUSR2, on_usr2)
print('listening', flush=True)

def from_client():
    """The next segment the client sent to the server port, or None."""
    try:
        frame, addr = sniffer.recvfrom(65535)
    except socket.timeout:
        return None
    if addr[2] == socket.PACKET_OUTGOING:
        return None
    ip = frame[ETH_HEADER:]
    # The client's segments carry no IPv6 extension headers: TCP follows the fixed header.
    if ipv6:
        protocol, source, local, tcp = ip[6], ip[8:24], ip[24:40], ip[40:40 + struct.unpack('!H', ip[4:6])[0]]
    else:
        protocol, source, local, tcp = ip[9], ip[12:16], ip[16:20], ip[(ip[0] & 15) * 4:struct.unpack('!H', ip[2:4])[0]]
    if protocol != socket.IPPROTO_TCP or socket.inet_ntop(af, source) != client_ip:
        return None
    sport, dport, seq, ack = struct.unpack('!HHII', tcp[:12])
    if dport != server_port:
        return None
    return {'local': socket.inet_ntop(af, local), 'sport': sport, 'seq': seq, 'ack': ack, 'length': len(tcp) - (tcp[12] >> 4) * 4, 'flags': tcp[13]}

last = None
while not go:
    last = from_client() or last
if last is None:
    sys.exit('no segment of the connection was seen before SIGUSR2')

def checksum(data):
    if len(data) % 2:
        data += b'\0'
    total = sum(struct.unpack('!%dH' % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xffff) + (total >> 16)
    return ~total & 0xffff

# The client's next sequence number, so that its RST is one the server
# accepts; and a sequence number a quarter of the number space past what
# the client has acknowledged, far beyond any receive window.
ack = (last['seq'] + last['length']) % 2**32
seq = (last['ack'] + 2**30) % 2**32
payload = b'stale\n'
header = struct.pack('!HHIIBBHHH', server_port, last['sport'], seq, ack, 5 << 4, 0x18, 65535, 0, 0)
addresses = socket.inet_pton(af, last['local']) + socket.inet_pton(af, client_ip)
length = len(header) + len(payload)
pseudo = addresses + (struct.pack('!IxxxB', length, socket.IPPROTO_TCP) if ipv6 else struct.pack('!BBH', 0, socket.IPPROTO_TCP, length))
header = header[:16] + struct.pack('!H', checksum(pseudo + header + payload)) + header[18:]
raw = socket.socket(af, socket.SOCK_RAW, socket.IPPROTO_TCP)
# From the address the client reached, as the checksum has it.
raw.bind((last['local'], 0))
raw.sendto(header + payload, (client_ip, 0))

# The client answers a segment it gets: a RST if it came un-NATed (no
# socket has that peer), an ACK restating its window if it came de-NATed.
answer = None
deadline = time.monotonic() + answer_wait_ms / 1000
while answer is None and time.monotonic() < deadline:
    segment = from_client()
    if segment is not None and segment['sport'] == last['sport']:
        answer = 'rst' if segment['flags'] & RST else 'ack'
print(json.dumps({'clientAnswer': answer}), flush=True)
`;

export interface OutOfWindowResult {
  /**
   * How the client answered the segment: 'rst' if it got it un-NATed, 'ack'
   * if it got it de-NATed, null if the segment never reached it.
   */
  clientAnswer: 'rst' | 'ack' | null;
  /** What the client's line after the segment got: the endpoint's answer, or the error. */
  after: IdleUse;
}


/**
 * Holds a connection from pod `client` (at `clientIp`, of the target's
 * family) to `target`:`port` (which must lead to `endpoint` only, on
 * `endpointPort`), has the endpoint send an out-of-window segment of it,
 * then uses the connection once more.
 */
export async function outOfWindowSegment(
  sandbox: NodeSandbox,
  opts: { client: string; clientIp: string; endpoint: string; target: string; port: number; endpointPort: number },
): Promise<OutOfWindowResult> {
  requireCommand('python3', 'apt-get install python3');
  const injector = sandbox.spawnInPod(opts.endpoint, 'python3', ['-c', INJECTOR, opts.clientIp, String(opts.endpointPort), String(slow(1000))]);
  const injected = outputOf(injector, 'the segment injector');
  // Handled below; should the injector fail early, waitForLine reports it first.
  injected.catch(() => undefined);
  await waitForLine(injector, /listening/, slow(10_000), 'the segment injector');
  const connection = await idleConnection(sandbox, opts.client, opts.target, opts.port);
  injector.kill('SIGUSR2');
  const { clientAnswer } = JSON.parse(lastLine(await injected)) as Pick<OutOfWindowResult, 'clientAnswer'>;
  return { clientAnswer, after: await connection.use() };
}
