// A pod's workload in the test sandboxes: answers every TCP line and every
// UDP datagram with its pod name, so a client can tell who served it.
//   node pod-server.js NAME TCP_PORTS UDP_PORTS [ONE_SHOT_TCP_PORTS]
// (comma-separated ports). On a one-shot port the server answers once and
// closes, as an HTTP/1.0 server does: the TIME_WAIT is then the server's.
import net from 'node:net';
import dgram from 'node:dgram';

const [name, tcpPorts = '', udpPorts = '', oneShotTcpPorts = ''] = process.argv.slice(2);
if (!name) throw new Error('usage: pod-server NAME TCP_PORTS UDP_PORTS [ONE_SHOT_TCP_PORTS]');
const ports = (list: string): number[] => list.split(',').filter(Boolean).map(Number);

let listening = 0;
const expected = ports(tcpPorts).length + ports(udpPorts).length + ports(oneShotTcpPorts).length;
const ready = (): void => {
  if (++listening === expected) process.stdout.write('ready\n');
};

for (const port of ports(tcpPorts)) {
  net
    .createServer((sock) => {
      sock.on('error', () => sock.destroy());
      // One answer per line received, and one straight away.
      sock.write(`${name}\n`);
      sock.on('data', (chunk) => {
        for (let i = 0; i < chunk.toString().split('\n').length - 1; i++) sock.write(`${name}\n`);
      });
    })
    .listen(port, '0.0.0.0', ready);
}
for (const port of ports(oneShotTcpPorts)) {
  net
    .createServer((sock) => {
      sock.on('error', () => sock.destroy());
      sock.end(`${name}\n`);
    })
    .listen(port, '0.0.0.0', ready);
}
for (const port of ports(udpPorts)) {
  const sock = dgram.createSocket('udp4');
  sock.on('message', (_msg, rinfo) => sock.send(name, rinfo.port, rinfo.address));
  sock.bind(port, '0.0.0.0', ready);
}
process.on('SIGTERM', () => process.exit(0));
