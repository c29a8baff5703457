// Reads `nft -j list table ip kube-lb` (or ip6): the kernel's state, for inspect and
// the endpoint chains' counters.
import type { EndpointCounters, FrontendView } from '../backend.js';
import type { Destination, Frontend, FrontendKind, Protocol } from '../../model/contract.js';
import { type MapName, NO_ENDPOINT_NODEPORTS_MAP, NO_ENDPOINT_SERVICES_MAP, SERVICE_IPS_MAP, SERVICE_NODEPORTS_MAP, kindOfComment, trafficCounterName } from './ruleset.js';

type Json = Record<string, unknown>;

export interface MapElement {
  key: [string, string, number];
  comment: string | undefined;
  /** The chain a goto or jump verdict leads to; undefined for drop and accept. */
  target: string | undefined;
}

export interface Listing {
  /** Each chain's rules, as nft's JSON expression lists. */
  rules: Map<string, Json[][]>;
  maps: Map<string, MapElement[]>;
  /** Named counters' packets and bytes, by name. */
  counters: Map<string, { packets: number; bytes: number }>;
}

const obj = (v: unknown): Json => (typeof v === 'object' && v !== null ? (v as Json) : {});

/** An element's key and comment: plain, or wrapped as {"elem": {"val": ..., "comment": ...}}. */
function elementKey(raw: unknown): { key: [string, string, number]; comment: string | undefined } | undefined {
  const wrapped = 'elem' in obj(raw) ? obj(obj(raw)['elem']) : undefined;
  const parts = obj(wrapped === undefined ? raw : wrapped['val'])['concat'];
  if (!Array.isArray(parts) || parts.length !== 3) return undefined;
  const comment = wrapped?.['comment'];
  return { key: [String(parts[0]), String(parts[1]), Number(parts[2])], comment: typeof comment === 'string' ? comment : undefined };
}

function verdictTarget(raw: unknown): string | undefined {
  const v = obj(raw);
  const target = obj(v['goto'] ?? v['jump'])['target'];
  return typeof target === 'string' ? target : undefined;
}

export function parseListing(text: string): Listing {
  const listing: Listing = { rules: new Map(), maps: new Map(), counters: new Map() };
  const items = obj(JSON.parse(text))['nftables'];
  for (const item of Array.isArray(items) ? items : []) {
    const o = obj(item);
    if ('chain' in o) {
      listing.rules.set(String(obj(o['chain'])['name']), []);
    } else if ('rule' in o) {
      const rule = obj(o['rule']);
      listing.rules.get(String(rule['chain']))?.push(Array.isArray(rule['expr']) ? (rule['expr'] as Json[]) : []);
    } else if ('map' in o) {
      const map = obj(o['map']);
      const elements: MapElement[] = [];
      for (const pair of Array.isArray(map['elem']) ? map['elem'] : []) {
        const key = Array.isArray(pair) ? elementKey(pair[0]) : undefined;
        if (key !== undefined) elements.push({ ...key, target: verdictTarget(pair[1]) });
      }
      listing.maps.set(String(map['name']), elements);
    } else if ('counter' in o) {
      const counter = obj(o['counter']);
      listing.counters.set(String(counter['name']), { packets: Number(counter['packets']), bytes: Number(counter['bytes']) });
    }
  }
  return listing;
}

/**
 * The chains a chain hands every remaining packet to: its numgen vmap's
 * targets, in slot order, or the target of a goto with no match before it.
 * Conditional gotos (pod and node short-circuits, affinity) are skipped.
 */
function unconditionalTargets(rules: readonly Json[][]): string[] {
  for (const rule of rules) {
    if (rule.length !== 1) continue;
    const expr = obj(rule[0]);
    const set = obj(obj(expr['vmap'])['data'])['set'];
    if ('numgen' in obj(obj(expr['vmap'])['key']) && Array.isArray(set)) {
      return set.map((pair) => (Array.isArray(pair) ? verdictTarget(pair[1]) : undefined)).filter((t): t is string => t !== undefined);
    }
    if ('goto' in expr) return [verdictTarget(expr)!];
  }
  return [];
}

function dnatDestination(rules: readonly Json[][]): Destination | undefined {
  for (const expr of rules.flat()) {
    const dnat = obj(obj(expr)['dnat']);
    if (typeof dnat['addr'] === 'string') return { ip: dnat['addr'], port: Number(dnat['port']) };
  }
  return undefined;
}

/** The endpoint chains (those that DNAT) reached from `chain`: through an external chain, a policy chain. */
function endpointChainsOf(listing: Listing, chain: string, depth = 0): string[] {
  const rules = listing.rules.get(chain) ?? [];
  if (dnatDestination(rules) !== undefined) return [chain];
  // external -> policy -> endpoint is the deepest path; a loop in foreign rules ends here.
  if (depth === 3) return [];
  return unconditionalTargets(rules).flatMap((target) => endpointChainsOf(listing, target, depth + 1));
}

const DISPATCH: readonly [MapName, FrontendKind][] = [
  [SERVICE_IPS_MAP, 'ClusterIP'],
  [SERVICE_NODEPORTS_MAP, 'NodePort'],
];
const NO_ENDPOINTS: readonly [MapName, FrontendKind][] = [
  [NO_ENDPOINT_SERVICES_MAP, 'ClusterIP'],
  [NO_ENDPOINT_NODEPORTS_MAP, 'NodePort'],
];

/**
 * Every frontend the dispatch and no-endpoint maps hold, with the endpoints
 * traffic from outside the node reaches. The kind is the first word of the
 * element's comment; an element without one is taken as its map's plainest kind.
 */
export function viewsFromListing(listing: Listing): FrontendView[] {
  const views = new Map<string, FrontendView>();
  const add = (maps: readonly [MapName, FrontendKind][], follow: boolean): void => {
    for (const [map, fallback] of maps) {
      for (const { key, comment, target } of listing.maps.get(map) ?? []) {
        const id = key.join(' . ');
        if (views.has(id)) continue;
        const destinations = follow && target !== undefined ? endpointChainsOf(listing, target).map((c) => dnatDestination(listing.rules.get(c)!)!) : [];
        views.set(id, { kind: kindOfComment(comment) ?? fallback, frontend: frontendOfKey(key), destinations });
      }
    }
  };
  add(DISPATCH, true);
  add(NO_ENDPOINTS, false);
  return [...views.values()];
}

/** The frontend a map element's key names. */
function frontendOfKey([ip, proto, port]: MapElement['key']): Frontend {
  return { ip, port, protocol: proto.toUpperCase() as Protocol };
}

/** The named counter an endpoint chain's rules count in. */
function counterName(rules: readonly Json[][]): string | undefined {
  const counter = rules.flat().map((expr) => obj(expr)['counter']).find((c) => typeof c === 'string');
  return counter as string | undefined;
}

/**
 * The packets each endpoint chain's counter counted: the chains DNAT in the
 * nat hooks, which see only the first packet of a connection, so they count
 * new connections. Chains without a named counter are left out. Packets
 * and bytes come from the chain's traffic counter, where it has one.
 */
export function endpointCountersFromListing(listing: Listing): EndpointCounters[] {
  const reaching = new Map<string, Frontend[]>();
  for (const [map] of DISPATCH) {
    for (const { key, target } of listing.maps.get(map) ?? []) {
      if (target === undefined) continue;
      for (const chain of endpointChainsOf(listing, target)) reaching.set(chain, [...(reaching.get(chain) ?? []), frontendOfKey(key)]);
    }
  }
  return [...reaching].flatMap(([chain, frontends]) => {
    const rules = listing.rules.get(chain)!;
    const name = counterName(rules);
    const connections = name === undefined ? undefined : listing.counters.get(name)?.packets;
    if (connections === undefined) return [];
    const traffic = listing.counters.get(trafficCounterName(name!));
    return [{ frontends, destination: dnatDestination(rules)!, connections, ...(traffic && { packets: traffic.packets, bytes: traffic.bytes }) }];
  });
}
