// What a client process is shown as its peer when it reaches a frontend:
//   node peer-client.js IP TCP_PORT UDP_PORT
// connects over TCP and prints getpeername's address and who answered, then
// sends one datagram from an unconnected UDP socket and prints the source
// recvmsg gave its reply and who answered; one JSON line.
import net from 'node:net';
import dgram from 'node:dgram';

const [ip, tcpPort, udpPort] = process.argv.slice(2);
if (!ip || !tcpPort || !udpPort) throw new Error('usage: peer-client IP TCP_PORT UDP_PORT');
const timeoutMs = 5000;

function tcp(): Promise<{ peer: string; answer: string }> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(Number(tcpPort), ip, () => {
      const peer = `${sock.remoteAddress}:${sock.remotePort}`;
      sock.once('data', (d) => {
        sock.destroy();
        resolve({ peer, answer: d.toString().trim() });
      });
    });
    sock.setTimeout(timeoutMs, () => sock.destroy(new Error('tcp: timeout')));
    sock.on('error', reject);
  });
}

function udp(): Promise<{ peer: string; answer: string }> {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket(net.isIPv6(ip) ? 'udp6' : 'udp4');
    const timer = setTimeout(() => {
      sock.close();
      reject(new Error('udp: timeout'));
    }, timeoutMs);
    sock.on('error', reject);
    sock.on('message', (msg, rinfo) => {
      clearTimeout(timer);
      sock.close();
      resolve({ peer: `${rinfo.address}:${rinfo.port}`, answer: msg.toString() });
    });
    sock.send('who', Number(udpPort), ip);
  });
}

process.stdout.write(`${JSON.stringify({ tcp: await tcp(), udp: await udp() })}\n`);
