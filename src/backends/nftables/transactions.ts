// What each `nft -f` transaction holds: everything on a full sync, only
// what differs on a partial one. Pure: the backend reads the kernel and
// runs nft.
import { MAPS, type PortRules, type Transaction, emptyTransaction, endpointCounters, isServicePortChain } from './ruleset.js';

/** The table's content per service port key. */
export type PortTable = ReadonlyMap<string, PortRules>;

/** What a full sync finds in kube-lb's table. */
export interface KernelObjects {
  chains: ReadonlySet<string>;
  /** Affinity sets by name, with their timeout in seconds. */
  sets: ReadonlyMap<string, number>;
  /** Named counters (of endpoint chains, and their traffic counters). */
  counters: ReadonlySet<string>;
}

/** Everything, with the maps refilled from scratch and stale chains and affinity sets removed. */
export function fullTransaction(fixed: ReadonlyMap<string, string[]>, wanted: PortTable, kernel: KernelObjects): Transaction {
  const tx = emptyTransaction();
  tx.write = new Map(fixed);
  tx.flushMaps = [...MAPS];
  const wantedSets = new Set<string>();
  for (const rules of wanted.values()) {
    for (const [chain, body] of rules.chains) tx.write.set(chain, body);
    for (const [map, elements] of rules.elements) for (const element of elements.values()) tx.addElements.push({ map, element });
    for (const [set, timeout] of rules.sets) {
      wantedSets.add(set);
      // A set is kept, with its clients' affinity, unless its timeout changed.
      const found = kernel.sets.get(set);
      if (found === timeout) continue;
      if (found !== undefined) tx.deleteSets.push(set);
      tx.addSets.set(set, timeout);
    }
  }
  tx.removeChains = [...kernel.chains].filter((c) => isServicePortChain(c) && !tx.write.has(c));
  tx.deleteSets.push(...[...kernel.sets.keys()].filter((s) => !wantedSets.has(s)));
  tx.addCounters = endpointCounters(tx.write.keys());
  const wantedCounters = new Set(tx.addCounters);
  tx.deleteCounters = [...kernel.counters].filter((c) => !wantedCounters.has(c));
  return tx;
}

const NONE: PortRules = { chains: new Map(), elements: new Map(), sets: new Map() };

/** Only the ports whose translation changed (by identity), and within them only the chains, sets and elements that differ. */
export function partialTransaction(wanted: PortTable, written: PortTable): Transaction {
  const tx = emptyTransaction();
  for (const key of new Set([...wanted.keys(), ...written.keys()])) {
    const now = wanted.get(key) ?? NONE;
    const before = written.get(key) ?? NONE;
    if (now === before) continue;
    for (const [chain, body] of now.chains) if (before.chains.get(chain)?.join('\n') !== body.join('\n')) tx.write.set(chain, body);
    for (const chain of before.chains.keys()) if (!now.chains.has(chain)) tx.removeChains.push(chain);
    for (const map of MAPS) {
      const was = before.elements.get(map) ?? new Map();
      const is = now.elements.get(map) ?? new Map();
      for (const [k, element] of is) {
        const old = was.get(k);
        if (old?.verdict === element.verdict && old.comment === element.comment) continue;
        if (old !== undefined) tx.deleteElements.push({ map, key: k });
        tx.addElements.push({ map, element });
      }
      for (const k of was.keys()) if (!is.has(k)) tx.deleteElements.push({ map, key: k });
    }
    for (const [set, timeout] of now.sets) {
      const old = before.sets.get(set);
      if (old === timeout) continue;
      tx.addSets.set(set, timeout);
      if (old === undefined) continue;
      // A set's timeout cannot change in place: the set is made again, and every rule naming it first let go.
      tx.deleteSets.push(set);
      for (const [chain, body] of now.chains) if (body.some((rule) => rule.includes(`@${set} `))) tx.write.set(chain, body);
    }
    for (const set of before.sets.keys()) if (!now.sets.has(set)) tx.deleteSets.push(set);
  }
  // What was written was written whole, endpoint chains with their counters.
  tx.addCounters = endpointCounters(tx.write.keys());
  tx.deleteCounters = endpointCounters(tx.removeChains);
  return tx;
}
