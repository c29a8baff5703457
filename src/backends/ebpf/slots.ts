// Backend slot planning for one service. Slots are the random-pick table
// the datapath indexes (1..count); a change rewrites as few slots as
// possible so established picks stay where they are, and the plan carries
// the order that keeps every lookup valid while it is applied.
import type { Destination } from '../../model/contract.js';

export interface SlotPlan {
  /** The new table: slots[i] is slot i + 1. */
  slots: Destination[];
  /** 1-based slots to write, before the count changes. */
  writes: number[];
  /** 1-based slots to delete, after the count shrinks. */
  deletes: number[];
}

const destKey = (d: Destination): string => `${d.ip}:${d.port}`;

export function planSlots(current: readonly Destination[], wanted: readonly Destination[]): SlotPlan {
  const wantedKeys = new Set(wanted.map(destKey));
  const currentKeys = new Set(current.map(destKey));
  const added = wanted.filter((d) => !currentKeys.has(destKey(d)));

  // Keep surviving backends in place; removed ones leave holes.
  const table: (Destination | null)[] = current.map((d) => (wantedKeys.has(destKey(d)) ? d : null));
  const written = new Set<number>();
  for (let i = 0; i < table.length && added.length > 0; i++) {
    if (table[i] === null) {
      table[i] = added.shift()!;
      written.add(i);
    }
  }
  for (const d of added) {
    table.push(d);
    written.add(table.length - 1);
  }
  // Fewer backends than before: fill the remaining holes below the new
  // count with the backends that sit above it.
  const count = wanted.length;
  for (let hole = 0, top = table.length - 1; hole < count; hole++) {
    if (table[hole] !== null) continue;
    while (table[top] === null) top--;
    table[hole] = table[top]!;
    table[top] = null;
    written.add(hole);
  }

  const deletes: number[] = [];
  for (let slot = count + 1; slot <= current.length; slot++) deletes.push(slot);
  return {
    slots: table.slice(0, count) as Destination[],
    writes: [...written].filter((i) => i < count).sort((a, b) => a - b).map((i) => i + 1),
    deletes,
  };
}
