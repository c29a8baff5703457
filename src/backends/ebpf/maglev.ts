// Maglev consistent hashing (Eisenbud et al., NSDI 2016): a lookup table
// of a prime size in which every endpoint holds about the same share of
// entries, and which one endpoint more or less changes in about 1/N of its
// entries. The table depends on the set of endpoints only, so every node
// computes the same one and sends a flow to the same endpoint, and a flow
// whose conntrack entry is lost keeps its endpoint. The datapath (lb.h)
// hashes a new flow with maglevFlowHash and takes the table entry it names.
import { createHash } from 'node:crypto';
import { type Destination, compareDestinations, destinationKey } from '../../model/contract.js';
import { UsageError } from '../../flags.js';
import { LB_MAGLEV_HASH_SEED, type Flow, encodeFlowKey, layouts } from './encoding.js';

/** Cilium's default table size (--bpf-lb-maglev-table-size). */
export const DEFAULT_MAGLEV_TABLE_SIZE = 16381;
/** kube_lb_svc's slot 0 holds the size in 16 bits; the largest prime below 2^16. */
export const MAX_MAGLEV_TABLE_SIZE = 65521;

export function isPrime(n: number): boolean {
  if (!Number.isInteger(n) || n < 2) return false;
  for (let d = 2; d * d <= n; d++) if (n % d === 0) return false;
  return true;
}

/** --bpf-lb-maglev-table-size: a prime the table's size field holds. */
export function parseMaglevTableSize(text: string): number {
  const size = Number(text);
  if (!/^\d+$/.test(text) || !isPrime(size) || size > MAX_MAGLEV_TABLE_SIZE) {
    throw new UsageError(`--bpf-lb-maglev-table-size=${text}: not a prime from 2 to ${MAX_MAGLEV_TABLE_SIZE} (Cilium's sizes: 251, 509, 1021, 2039, 4093, 8191, ${DEFAULT_MAGLEV_TABLE_SIZE}, 32749, 65521)`);
  }
  return size;
}

/** Where an endpoint's permutation of the table's entries starts, and its step: entry j of it is (offset + j * skip) % size. */
export interface Preference {
  offset: number;
  skip: number;
}

/** Two independent hashes of the endpoint's address and port, as the paper derives a permutation. */
function preference(d: Destination, size: number): Preference {
  const digest = createHash('sha256').update(destinationKey(d)).digest();
  return { offset: digest.readUInt32LE(0) % size, skip: (digest.readUInt32LE(4) % (size - 1)) + 1 };
}

/**
 * The paper's population: each endpoint in turn takes the next entry of
 * its permutation that is still free, until every entry is taken. Returns
 * the index of the endpoint each entry names. Every skip is coprime with
 * the prime size, so each permutation visits every entry.
 */
export function populate(preferences: readonly Preference[], size: number): Int32Array {
  const table = new Int32Array(size).fill(-1);
  const next = preferences.map((p) => p.offset);
  for (let filled = 0; filled < size; ) {
    for (let i = 0; i < preferences.length && filled < size; i++) {
      let entry = next[i]!;
      while (table[entry] !== -1) entry = (entry + preferences[i]!.skip) % size;
      table[entry] = i;
      next[i] = (entry + preferences[i]!.skip) % size;
      filled++;
    }
  }
  return table;
}

/**
 * The Maglev table of `destinations`: the endpoint each entry names.
 * Endpoints take turns in address order, so the table does not depend on
 * the order they are given in.
 */
export function maglevTable(destinations: readonly Destination[], size: number): Destination[] {
  if (!isPrime(size)) throw new Error(`a Maglev table size must be a prime; ${size} is not`);
  if (destinations.length === 0) return [];
  const sorted = [...destinations].sort(compareDestinations);
  return Array.from(populate(sorted.map((d) => preference(d, size)), size), (i) => sorted[i]!);
}

const rol32 = (word: number, shift: number): number => ((word << shift) | (word >>> (32 - shift))) >>> 0;

/** maglev_addr_word of lb.h: an IPv4 address's word, an IPv6 address's four XORed, as the program loads them on this little-endian host. */
function addrWord(key: Buffer, at: number, family: Flow['family']): number {
  if (family === 'IPv4') return key.readUInt32LE(at + 12);
  return (key.readUInt32LE(at) ^ key.readUInt32LE(at + 4) ^ key.readUInt32LE(at + 8) ^ key.readUInt32LE(at + 12)) >>> 0;
}

/** maglev_hash of lb.h: Linux's jhash_3words over the flow key's addresses and ports, with the protocol in the seed. */
export function maglevFlowHash(flow: Flow): number {
  const key = encodeFlowKey(flow);
  const fields = layouts.lb_flow_key.fields;
  const initval = (LB_MAGLEV_HASH_SEED + key.readUInt8(fields.proto.offset) + 0xdeadbeef + (3 << 2)) >>> 0;
  let a = (addrWord(key, fields.saddr.offset, flow.family) + initval) >>> 0;
  let b = (addrWord(key, fields.daddr.offset, flow.family) + initval) >>> 0;
  let c = ((key.readUInt16LE(fields.sport.offset) | (key.readUInt16LE(fields.dport.offset) << 16)) + initval) >>> 0;
  c = ((c ^ b) - rol32(b, 14)) >>> 0;
  a = ((a ^ c) - rol32(c, 11)) >>> 0;
  b = ((b ^ a) - rol32(a, 25)) >>> 0;
  c = ((c ^ b) - rol32(b, 16)) >>> 0;
  a = ((a ^ c) - rol32(c, 4)) >>> 0;
  b = ((b ^ a) - rol32(a, 14)) >>> 0;
  c = ((c ^ b) - rol32(b, 24)) >>> 0;
  return c;
}

/** The endpoint a new flow gets from a table, as the datapath picks it. */
export function maglevPick(table: readonly Destination[], flow: Flow): Destination | undefined {
  return table[maglevFlowHash(flow) % table.length];
}

/** The share of table entries whose endpoint differs between two tables of one size. */
export function reassignedFraction(before: readonly Destination[], after: readonly Destination[]): number {
  let moved = 0;
  for (let i = 0; i < before.length; i++) if (destinationKey(before[i]!) !== destinationKey(after[i]!)) moved++;
  return moved / before.length;
}
