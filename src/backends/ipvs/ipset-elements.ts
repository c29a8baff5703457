// The ipvs backend keeps its set entries as ipset's text ("10.96.0.10,tcp:80",
// as `ipset save` prints them and `ipset restore` reads them); ipsetApply
// takes them as the parts the kernel stores. The family is the set's, from
// the caller: never read from the text.
import type { IPFamily } from '../../model/contract.js';
import type { IpsetElement, IpsetType } from '../../native/index.js';
import { PROTOCOL_NUMBERS } from './virtual-servers.js';

/** IP protocol numbers by ipset's names for them, as the entries spell them. */
const PROTOCOLS = new Map(Object.entries(PROTOCOL_NUMBERS).map(([name, n]) => [name.toLowerCase(), n]));

/** How many comma-separated parts an entry of each type has. */
const PARTS: Record<IpsetType, number> = { 'hash:ip': 1, 'hash:ip,port': 2, 'hash:ip,port,ip': 3, 'hash:ip,port,net': 3, 'bitmap:port': 1 };

/** An entry of a set of `type` and `family` as ipsetApply takes it; throws naming the entry where it is not one. */
export function ipsetElement(type: IpsetType, family: IPFamily, entry: string): IpsetElement {
  const fail = (): never => {
    throw new Error(`ipset entry ${entry} is not an element of a ${type} set`);
  };
  const parts = entry.split(',');
  if (parts.length !== PARTS[type]) fail();
  const [first, second, third] = parts as [string, string, string];
  const number = (text: string, max: number): number => (/^\d{1,5}$/.test(text) && Number(text) <= max ? Number(text) : fail());
  // "tcp:80" after the address.
  const ipPort = (): [ip: string, protocol: number, port: number] => {
    const [name, port, ...rest] = second.split(':');
    const protocol = PROTOCOLS.get(name!);
    return protocol === undefined || port === undefined || rest.length > 0 ? fail() : [first, protocol, number(port, 65535)];
  };
  switch (type) {
    case 'bitmap:port':
      return [type, number(first, 65535)];
    case 'hash:ip':
      return [type, family, first];
    case 'hash:ip,port':
      return [type, family, ...ipPort()];
    case 'hash:ip,port,ip':
      return [type, family, ...ipPort(), third];
    case 'hash:ip,port,net': {
      const [net, cidr, ...rest] = third.split('/');
      return cidr === undefined || rest.length > 0 ? fail() : [type, family, ...ipPort(), net!, number(cidr, family === 'IPv6' ? 128 : 32)];
    }
  }
}
