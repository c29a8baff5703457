// The README's capability table is the one src/backends/capabilities.ts
// renders, so that a capability changed without the README fails here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { capabilityTableMarkdown } from '../../src/backends/capabilities.js';
import { projectRoot } from '../../src/native/index.js';

test("the README shows the capability table as src/backends/capabilities.ts has it (make -s readme-capabilities renders it)", () => {
  const readme = fs.readFileSync(path.join(projectRoot, 'README.md'), 'utf8');
  assert.ok(readme.includes(capabilityTableMarkdown()), 'README.md: paste the output of `make -s readme-capabilities` over its capability table');
});
