// The ipvs backend on a kernel with IPVS: the Service API's conformance
// scenarios, in a file of their own so that test/vm/test-all runs them in a
// VM beside the other ipvs files.
import { runScenarios } from '../conformance/suite.js';
import { serviceApiScenarios } from '../conformance/service-api-scenarios.js';

runScenarios('ipvs', 'Service API conformance scenarios', serviceApiScenarios);
