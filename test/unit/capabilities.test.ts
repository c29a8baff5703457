// The README's capability table is the one src/backends/capabilities.ts
// renders, so that a capability changed without the README fails here; and
// what a backend serves on a kernel follows its row.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { capabilityTableMarkdown } from '../../src/backends/capabilities.js';
import { servedFamilies } from '../../src/backends/families.js';
import { projectRoot } from '../../src/native/index.js';

test("the README shows the capability table as src/backends/capabilities.ts has it (make -s readme-capabilities renders it)", () => {
  const readme = fs.readFileSync(path.join(projectRoot, 'README.md'), 'utf8');
  assert.ok(readme.includes(capabilityTableMarkdown()), 'README.md: paste the output of `make -s readme-capabilities` over its capability table');
});

test('a backend serves the families of its row that the kernel has: without IPv6, IPv4 only', () => {
  assert.deepEqual(servedFamilies('iptables', true), ['IPv4', 'IPv6']);
  assert.deepEqual(servedFamilies('nftables', false), ['IPv4']);
  assert.deepEqual(servedFamilies('iptables', false), ['IPv4']);
});
