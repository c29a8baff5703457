// A pod's workload in the test sandboxes: answers every TCP line and every
// UDP datagram with its pod name, so a client can tell who served it.
//   node pod-server.js NAME TCP_PORTS UDP_PORTS [ONE_SHOT_TCP_PORTS]
// (comma-separated ports). On a one-shot port the server answers once and
// closes, as an HTTP/1.0 server does: the TIME_WAIT is then the server's.
// A TCP line or a UDP datagram reading "source" is answered with the name
// and the client address the server saw ("web-1 10.244.0.2"), so a test can
// tell whether a service kept the client's address or masqueraded it.
// Every port is served on IPv4 and, by a socket of its own, on IPv6.
import net from 'node:net';
import dgram from 'node:dgram';

const [name, tcpPorts = '', udpPorts = '', oneShotTcpPorts = ''] = process.argv.slice(2);
if (!name) throw new Error('usage: pod-server NAME TCP_PORTS UDP_PORTS [ONE_SHOT_TCP_PORTS]');
const ports = (list: string): number[] => list.split(',').filter(Boolean).map(Number);
const SOURCE_REQUEST = 'source';
const answer = (request: string, from: string | undefined): string => (request === SOURCE_REQUEST ? `${name} ${from}` : name);

let listening = 0;
// IPv6 sockets take IPv6 alone: IPv4 clients keep seeing their plain addresses reported.
const FAMILIES: { host: string; udp: dgram.SocketOptions }[] = [
  { host: '0.0.0.0', udp: { type: 'udp4' } },
  { host: '::', udp: { type: 'udp6', ipv6Only: true } },
];
const expected = FAMILIES.length * (ports(tcpPorts).length + ports(udpPorts).length + ports(oneShotTcpPorts).length);
const ready = (): void => {
  if (++listening === expected) process.stdout.write('ready\n');
};

for (const { host, udp } of FAMILIES) {
  for (const port of ports(tcpPorts)) {
    net
      .createServer((sock) => {
        sock.on('error', () => sock.destroy());
        // One answer per line received, and one straight away.
        sock.write(`${name}\n`);
        let buffered = '';
        sock.on('data', (chunk) => {
          buffered += chunk.toString();
          const lines = buffered.split('\n');
          buffered = lines.pop()!;
          for (const line of lines) sock.write(`${answer(line, sock.remoteAddress)}\n`);
        });
      })
      .listen({ port, host, ipv6Only: host === '::' }, ready);
  }
  for (const port of ports(oneShotTcpPorts)) {
    net
      .createServer((sock) => {
        sock.on('error', () => sock.destroy());
        sock.end(`${name}\n`);
      })
      .listen({ port, host, ipv6Only: host === '::' }, ready);
  }
  for (const port of ports(udpPorts)) {
    const sock = dgram.createSocket(udp);
    sock.on('message', (msg, rinfo) => sock.send(answer(msg.toString(), rinfo.address), rinfo.port, rinfo.address));
    sock.bind(port, host, ready);
  }
}
process.on('SIGTERM', () => process.exit(0));
