// The node's pod CIDR for --detect-local-mode=NodeCIDR, read from its Node
// object as the source delivers it (the API server, or --manifests), once
// at start, as kube-proxy reads it.
import type { Logger } from '../log.js';
import { parseObject, type Node } from '../model/objects.js';
import { type Cidr, parseCidr } from '../net/ip.js';
import type { Source } from './source.js';

/** How long the source may take to deliver its objects. */
const SOURCE_WAIT_MS = 60_000;

/** The node's spec.podCIDRs, one per family; fails when the source has no such Node or it has no pod CIDR. */
export async function readNodePodCidrs(source: Source, nodeName: string, log: Logger): Promise<Cidr[]> {
  let node: unknown;
  let timer: NodeJS.Timeout | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`--detect-local-mode=NodeCIDR: the source did not deliver Node ${nodeName} within ${SOURCE_WAIT_MS / 1000} s`)), SOURCE_WAIT_MS);
      const sink = {
        upsert: (object: Record<string, unknown>) => {
          const meta = object.metadata as { name?: unknown } | undefined;
          if (object.kind === 'Node' && meta?.name === nodeName) node = object;
        },
        delete: () => {},
        synced: resolve,
      };
      source.start(sink).catch(reject);
    });
  } finally {
    clearTimeout(timer);
    await source.stop();
  }
  if (node === undefined) throw new Error(`--detect-local-mode=NodeCIDR: no Node named ${nodeName} (--hostname-override) to read its pod CIDR from`);
  const cidrs = (parseObject(node) as Node).podCIDRs;
  if (cidrs.length === 0) throw new Error(`--detect-local-mode=NodeCIDR: Node ${nodeName} has no pod CIDR in spec.podCIDRs`);
  log.info({ node: nodeName, podCIDRs: cidrs }, 'local traffic: the node\'s pod CIDRs');
  return cidrs.map(parseCidr);
}
