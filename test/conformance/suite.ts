// Runs every conformance scenario against one backend variant. A scenario
// whose capability the backend lacks is skipped visibly, with the reason
// src/backends/capabilities.ts gives; nothing else is ever skipped.
import { describe, it } from 'node:test';
import { type Capability, unsupportedReason } from '../../src/backends/capabilities.js';
import type { IPFamily } from '../../src/model/contract.js';
import { withContext } from './context.js';
import { type Scenario, scenarios as coreScenarios } from './scenarios.js';
import { serviceApiScenarios } from './service-api-scenarios.js';

const scenarios = [...coreScenarios, ...serviceApiScenarios];
import { variant } from './variants.js';

/**
 * `subset`, when given, names the scenarios to run (the VM's kernel matrix
 * runs a subset); it must name existing scenarios, and the suite's title
 * says it is a subset. With `family` IPv6 they run over IPv6 (runScenarios).
 */
export function runConformance(variantName: string, subset?: readonly string[], family: IPFamily = 'IPv4'): void {
  const unknown = subset?.filter((name) => !scenarios.some((s) => s.name === name)) ?? [];
  if (unknown.length > 0) throw new Error(`no such conformance scenarios: ${unknown.join('; ')}`);
  const chosen = subset ? scenarios.filter((s) => subset.includes(s.name)) : scenarios;
  const title = `conformance scenarios${family === 'IPv6' ? ' over IPv6' : ''}${subset ? ` (subset of ${chosen.length} of ${scenarios.length})` : ''}`;
  runScenarios(variantName, title, chosen, family);
}

/**
 * Runs `chosen` against a variant, each in a fresh context, skipping visibly
 * what the capability table marks unsupported; with `family` IPv6, IPv4 rows
 * run over IPv6 (ipv6-twins.ts), which needs the ipv6 capability too.
 */
export function runScenarios(variantName: string, title: string, chosen: readonly Scenario[], family: IPFamily = 'IPv4'): void {
  const v = variant(variantName);
  describe(`${v.name}: ${title}`, () => {
    for (const scenario of chosen) {
      const needs: readonly Capability[] = family === 'IPv6' ? [...scenario.needs, 'ipv6'] : scenario.needs;
      const reasons = [...new Set(needs.map((c) => unsupportedReason(v.backend, c)).filter((r) => r !== undefined))];
      const skip = reasons.length > 0 ? `unsupported by ${v.backend} per src/backends/capabilities.ts: ${reasons.join('; ')}` : false;
      it(scenario.name, { skip }, () => withContext(v, scenario.pods, (ctx) => scenario.run(ctx), family));
    }
  });
}
