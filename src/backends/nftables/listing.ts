// Reads `nft -j list table ip kube-lb`: the kernel's state, for full syncs
// and inspect.
import type { FrontendView } from '../backend.js';
import type { Destination, Protocol } from '../../model/contract.js';
import { NO_ENDPOINTS_MAP, SERVICE_IPS_MAP } from './ruleset.js';

type Json = Record<string, unknown>;

export interface Listing {
  chains: Set<string>;
  /** Each chain's rules, as nft's JSON expression lists. */
  rules: Map<string, Json[][]>;
  /** Each map's elements: the key's parts and the verdict's target chain. */
  maps: Map<string, { key: [string, string, number]; target: string }[]>;
}

const obj = (v: unknown): Json => (typeof v === 'object' && v !== null ? (v as Json) : {});

/** An element's key: plain, or wrapped with its comment as {"elem": {"val": ..., "comment": ...}}. */
function elementKey(raw: unknown): [string, string, number] | undefined {
  const val = 'elem' in obj(raw) ? obj(obj(raw)['elem'])['val'] : raw;
  const parts = obj(val)['concat'];
  if (!Array.isArray(parts) || parts.length !== 3) return undefined;
  return [String(parts[0]), String(parts[1]), Number(parts[2])];
}

function verdictTarget(raw: unknown): string | undefined {
  const v = obj(raw);
  const target = obj(v['goto'] ?? v['jump'])['target'];
  return typeof target === 'string' ? target : undefined;
}

export function parseListing(text: string): Listing {
  const listing: Listing = { chains: new Set(), rules: new Map(), maps: new Map() };
  const items = obj(JSON.parse(text))['nftables'];
  for (const item of Array.isArray(items) ? items : []) {
    const o = obj(item);
    if ('chain' in o) {
      const name = String(obj(o['chain'])['name']);
      listing.chains.add(name);
      listing.rules.set(name, []);
    } else if ('rule' in o) {
      const rule = obj(o['rule']);
      listing.rules.get(String(rule['chain']))?.push(Array.isArray(rule['expr']) ? (rule['expr'] as Json[]) : []);
    } else if ('map' in o) {
      const map = obj(o['map']);
      const elements: { key: [string, string, number]; target: string }[] = [];
      for (const pair of Array.isArray(map['elem']) ? map['elem'] : []) {
        const key = Array.isArray(pair) ? elementKey(pair[0]) : undefined;
        const target = Array.isArray(pair) ? verdictTarget(pair[1]) : undefined;
        if (key !== undefined && target !== undefined) elements.push({ key, target });
      }
      listing.maps.set(String(map['name']), elements);
    }
  }
  return listing;
}

/** The chains a service chain's numgen vmap spreads over, in slot order, or its one goto. */
function pickedChains(rules: readonly Json[][]): string[] {
  for (const expr of rules.flat()) {
    const set = obj(obj(obj(expr)['vmap'])['data'])['set'];
    if (Array.isArray(set)) return set.map((pair) => (Array.isArray(pair) ? verdictTarget(pair[1]) : undefined)).filter((t): t is string => t !== undefined);
    const target = 'goto' in obj(expr) ? verdictTarget(expr) : undefined;
    if (target !== undefined) return [target];
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

const frontendOf = ([ip, proto, port]: [string, string, number]): FrontendView['frontend'] => ({ ip, port, protocol: proto.toUpperCase() as Protocol });

/** The service-to-endpoints view: the service map through the service and endpoint chains, and the no-endpoint map. */
export function viewsFromListing(listing: Listing): FrontendView[] {
  const views: FrontendView[] = [];
  for (const { key, target } of listing.maps.get(SERVICE_IPS_MAP) ?? []) {
    const destinations = pickedChains(listing.rules.get(target) ?? [])
      .map((chain) => dnatDestination(listing.rules.get(chain) ?? []))
      .filter((d): d is Destination => d !== undefined);
    views.push({ kind: 'ClusterIP', frontend: frontendOf(key), destinations });
  }
  for (const { key } of listing.maps.get(NO_ENDPOINTS_MAP) ?? []) views.push({ kind: 'ClusterIP', frontend: frontendOf(key), destinations: [] });
  return views;
}
