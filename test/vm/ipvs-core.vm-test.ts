// The ipvs backend on a kernel with IPVS: the core conformance scenarios, in
// a file of their own so that test/vm/test-all runs them in a VM beside the
// other ipvs files (ipvs.vm-test.ts has what only IPVS has).
import { scenarios } from '../conformance/scenarios.js';
import { runScenarios } from '../conformance/suite.js';

runScenarios('ipvs', 'core conformance scenarios', scenarios);
