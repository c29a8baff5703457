// Runs every conformance scenario against one backend variant. A scenario
// whose capability the backend lacks is skipped visibly, with the reason
// src/backends/capabilities.ts gives; nothing else is ever skipped.
import { describe, it } from 'node:test';
import { unsupportedReason } from '../../src/backends/capabilities.js';
import { withContext } from './context.js';
import { scenarios } from './scenarios.js';
import { variant } from './variants.js';

export function runConformance(variantName: string): void {
  const v = variant(variantName);
  describe(`${v.name}: conformance scenarios`, () => {
    for (const scenario of scenarios) {
      const reasons = scenario.needs.map((c) => unsupportedReason(v.backend, c)).filter((r) => r !== undefined);
      const skip = reasons.length > 0 ? `unsupported by ${v.backend} per src/backends/capabilities.ts: ${reasons.join('; ')}` : false;
      it(scenario.name, { skip }, () => withContext(v, scenario.pods, (ctx) => scenario.run(ctx)));
    }
  });
}
