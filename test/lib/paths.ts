// Where the compiled tree running this test lives, so tests start the very
// kube-lb they were compiled with, whatever the output folder is called.
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The compiled tree's root: this file runs from <root>/test/lib/. */
export const compiledRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const testLibDir = path.join(compiledRoot, 'test', 'lib');
/** kube-lb's entry point as bin/kube-lb runs it (the bundle `make build` makes), run as [process.execPath, cliPath, ...args]. */
export const cliPath = path.join(compiledRoot, 'bundle', 'cli.js');
/** The command users run (bin/kube-lb, which runs the tree in dist/), for tests of what they see. */
export const binPath = path.resolve(compiledRoot, '..', 'bin', 'kube-lb');
