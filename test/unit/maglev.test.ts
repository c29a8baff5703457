// The Maglev table the control plane computes (src/backends/ebpf/maglev.ts):
// the paper's population, balance, and how many flows one endpoint more or
// less moves.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_MAGLEV_TABLE_SIZE, MAX_MAGLEV_TABLE_SIZE, isPrime, maglevTable, populate, reassignedFraction } from '../../src/backends/ebpf/maglev.js';
import { maglevSlots } from '../../src/backends/ebpf/service-map.js';
import { destinationKey } from '../../src/model/contract.js';

const endpoint = (i: number) => ({ ip: `10.244.${i >> 8}.${i & 255}`, port: 8080 });
const endpoints = (n: number, from = 1) => Array.from({ length: n }, (_, i) => endpoint(from + i));

function entriesPerEndpoint(table: readonly { ip: string; port: number }[]): number[] {
  const counts = new Map<string, number>();
  for (const d of table) counts.set(destinationKey(d), (counts.get(destinationKey(d)) ?? 0) + 1);
  return [...counts.values()];
}

describe('Maglev table', () => {
  it('populates as the paper does (its Table 1: three backends, seven entries)', () => {
    const paper = [
      { offset: 3, skip: 4 },
      { offset: 0, skip: 2 },
      { offset: 3, skip: 1 },
    ];
    assert.deepEqual([...populate(paper, 7)], [1, 0, 1, 0, 2, 2, 0]);
  });

  it('takes prime sizes only', () => {
    assert.deepEqual([2, 3, 251, 16381, 65521].map(isPrime), [true, true, true, true, true]);
    assert.deepEqual([0, 1, 4, 16383, 65536].map(isPrime), [false, false, false, false, false]);
    assert.throws(() => maglevTable(endpoints(3), 16383), /16383 is not/);
  });

  it('fills every entry, each endpoint within one entry of its share', () => {
    for (const n of [1, 3, 10, 100]) {
      const table = maglevTable(endpoints(n), DEFAULT_MAGLEV_TABLE_SIZE);
      assert.equal(table.length, DEFAULT_MAGLEV_TABLE_SIZE);
      assert.ok(table.every((d) => d !== undefined));
      const counts = entriesPerEndpoint(table);
      assert.equal(counts.length, n, `${n} endpoints all hold entries`);
      assert.ok(Math.max(...counts) - Math.min(...counts) <= 1, `${n} endpoints: ${Math.min(...counts)} to ${Math.max(...counts)} entries each`);
    }
  });

  it('depends on the set of endpoints, not on their order', () => {
    const set = endpoints(20);
    const shuffled = [...set].reverse();
    shuffled.push(shuffled.splice(3, 1)[0]!);
    assert.deepEqual(maglevTable(shuffled, 251), maglevTable(set, 251));
  });

  it('names each endpoint by its slot', () => {
    const slots = [endpoint(3), endpoint(1), endpoint(2)];
    const table = maglevTable(slots, 251);
    const bySlot = maglevSlots(slots, 251);
    assert.deepEqual([...bySlot].map((slot) => slots[slot - 1]), table);
  });

  // Flows hash evenly onto entries, so the share of entries that change
  // owner is the share of new flows that change endpoint.
  // At the largest size, every tenth endpoint is removed in turn, to keep the test short.
  for (const [n, size, removedEvery] of [[10, DEFAULT_MAGLEV_TABLE_SIZE, 1], [100, DEFAULT_MAGLEV_TABLE_SIZE, 1], [100, MAX_MAGLEV_TABLE_SIZE, 10]] as const) {
    it(`moves about 1/N of the flows when one of ${n} endpoints goes or one comes, in a table of ${size}`, (t) => {
      const base = endpoints(n);
      const before = maglevTable(base, size);
      const removed = base.filter((_, i) => i % removedEvery === 0).map((gone) => reassignedFraction(before, maglevTable(base.filter((d) => d !== gone), size)));
      const added = endpoints(10, 1000).map((extra) => reassignedFraction(before, maglevTable([...base, extra], size)));
      const summary = (fractions: number[]) => ({
        mean: fractions.reduce((a, b) => a + b) / fractions.length,
        min: Math.min(...fractions),
        max: Math.max(...fractions),
      });
      const format = ({ mean, min, max }: { mean: number; min: number; max: number }) => `mean ${(mean * 100).toFixed(2)}%, min ${(min * 100).toFixed(2)}%, max ${(max * 100).toFixed(2)}%`;
      t.diagnostic(`table ${size}, ${n} endpoints: one removed (${removed.length} tries) moves ${format(summary(removed))} of the flows; one added (10 tries) moves ${format(summary(added))}; 1/N is ${(100 / n).toFixed(2)}%`);
      // A removed endpoint's flows must move: at least its share.
      assert.ok(summary(removed).min >= Math.floor(size / n) / size, 'the removed endpoint\'s entries moved');
      assert.ok(summary(removed).max < 3 / n, `one removed: at most ${(300 / n).toFixed(1)}% move`);
      assert.ok(summary(added).min >= Math.floor(size / (n + 1)) / size, 'the added endpoint took its share');
      assert.ok(summary(added).max < 3 / n, `one added: at most ${(300 / n).toFixed(1)}% move`);
    });
  }
});
