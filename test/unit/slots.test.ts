// Slot planning: minimal rewrites, and an order that keeps lookups valid.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { planSlots } from '../../src/backends/ebpf/slots.js';

const d = (n: number) => ({ ip: `10.0.0.${n}`, port: 80 });
const names = (slots: { ip: string }[]) => slots.map((s) => Number(s.ip.split('.')[3]));

describe('planSlots', () => {
  it('writes every slot of a new service', () => {
    assert.deepEqual(planSlots([], [d(1), d(2)]), { slots: [d(1), d(2)], writes: [1, 2], deletes: [] });
  });

  it('appends added backends without touching the others', () => {
    const plan = planSlots([d(1), d(2)], [d(1), d(2), d(3)]);
    assert.deepEqual(names(plan.slots), [1, 2, 3]);
    assert.deepEqual(plan.writes, [3]);
    assert.deepEqual(plan.deletes, []);
  });

  it('fills a removed backend\'s slot with an added one', () => {
    const plan = planSlots([d(1), d(2), d(3)], [d(1), d(4), d(3)]);
    assert.deepEqual(names(plan.slots), [1, 4, 3]);
    assert.deepEqual(plan.writes, [2]);
    assert.deepEqual(plan.deletes, []);
  });

  it('moves the last backend into a hole and deletes the top slot', () => {
    const plan = planSlots([d(1), d(2), d(3), d(4)], [d(1), d(3), d(4)]);
    assert.deepEqual(names(plan.slots), [1, 4, 3]);
    assert.deepEqual(plan.writes, [2]);
    assert.deepEqual(plan.deletes, [4]);
  });

  it('shrinks to nothing', () => {
    assert.deepEqual(planSlots([d(1), d(2)], []), { slots: [], writes: [], deletes: [1, 2] });
  });

  it('keeps every wanted backend exactly once, whatever the change', () => {
    for (let trial = 0; trial < 500; trial++) {
      const pick = () => [...new Set(Array.from({ length: Math.floor(Math.random() * 8) }, () => 1 + Math.floor(Math.random() * 10)))].map(d);
      const current = pick();
      const wanted = pick();
      const plan = planSlots(current, wanted);
      assert.deepEqual(names(plan.slots).sort(), names(wanted).sort());
      // Slots that keep their backend are not rewritten.
      for (let i = 0; i < plan.slots.length; i++) {
        if (current[i] && current[i]!.ip === plan.slots[i]!.ip) assert.ok(!plan.writes.includes(i + 1), `slot ${i + 1} rewritten needlessly`);
        else assert.ok(plan.writes.includes(i + 1), `slot ${i + 1} changed but is not written`);
      }
      assert.deepEqual(plan.deletes, Array.from({ length: Math.max(0, current.length - wanted.length) }, (_, i) => wanted.length + i + 1));
    }
  });
});
