// kube-ipvs0: the dummy interface holding every ClusterIP, as in kube-proxy.
// An address bound here makes its ClusterIP local, so the node delivers
// traffic to it to IPVS; the addresses also mark which virtual servers
// kube-lb owns.
import type { IPFamily } from '../../model/contract.js';
import type { NativeAddon } from '../../native/index.js';

export const DUMMY_INTERFACE = 'kube-ipvs0';

const hasCode = (err: unknown, code: string): boolean => (err as { code?: string }).code === code;

export class DummyLink {
  /** The addresses bound and their families, as of the last addresses() and this process's changes since. */
  private readonly bound = new Map<string, IPFamily>();

  private constructor(
    private readonly lib: NativeAddon,
    readonly ifindex: number,
  ) {}

  /** The interface, created if missing. */
  static ensure(lib: NativeAddon): DummyLink {
    const existing = lib.linkIndex(DUMMY_INTERFACE);
    if (existing !== null) return new DummyLink(lib, existing);
    try {
      lib.linkAddDummy(DUMMY_INTERFACE);
    } catch (err) {
      if (!hasCode(err, 'EEXIST')) throw err;
    }
    const ifindex = lib.linkIndex(DUMMY_INTERFACE);
    if (ifindex === null) throw new Error(`${DUMMY_INTERFACE} vanished right after it was created`);
    return new DummyLink(lib, ifindex);
  }

  /** The interface if it exists. */
  static find(lib: NativeAddon): DummyLink | null {
    const ifindex = lib.linkIndex(DUMMY_INTERFACE);
    return ifindex === null ? null : new DummyLink(lib, ifindex);
  }

  /** Reads the bound addresses and their families from the kernel. */
  addresses(): Map<string, IPFamily> {
    this.bound.clear();
    for (const { address, family } of this.lib.addressList(this.ifindex)) this.bound.set(address, family);
    return new Map(this.bound);
  }

  /** Binds the addresses not bound yet, together, on a worker thread; resolves to the errors by address. */
  async bind(addresses: Iterable<[string, IPFamily]>): Promise<Map<string, Error>> {
    const missing = [...new Map(addresses)].filter(([ip]) => !this.bound.has(ip));
    const failed = new Map<string, Error>();
    if (missing.length === 0) return failed;
    (await this.lib.addressAdd(this.ifindex, missing)).forEach((err, i) => {
      const [ip, family] = missing[i]!;
      if (err === null || hasCode(err, 'EEXIST')) this.bound.set(ip, family);
      else failed.set(ip, err);
    });
    return failed;
  }

  /** Unbinds the addresses, together, on a worker thread; rejects naming those it could not. */
  async unbind(addresses: Iterable<[string, IPFamily]>): Promise<void> {
    const list = [...new Map(addresses)];
    if (list.length === 0) return;
    const failed: string[] = [];
    (await this.lib.addressDelete(this.ifindex, list)).forEach((err, i) => {
      if (err === null || hasCode(err, 'EADDRNOTAVAIL')) this.bound.delete(list[i]![0]);
      else failed.push(err.message);
    });
    if (failed.length > 0) throw new Error(failed.join('; '));
  }

  delete(): void {
    this.lib.linkDelete(this.ifindex);
  }
}
