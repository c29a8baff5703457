// The ipvs backend on a kernel with IPVS: the IPv6 rows (the IPv6
// scenarios, and the core rows run over IPv6), in a file of their own so
// that test/vm/test-all can run them beside the other ipvs files. The
// dual-stack layout row is in ipvs.vm-test.ts.
import { ipv6Scenarios } from '../conformance/ipv6-scenarios.js';
import { OVER_IPV6, OVER_IPV6_ON_IPVS } from '../conformance/over-ipv6.js';
import { runConformance, runScenarios } from '../conformance/suite.js';

runScenarios('ipvs', 'IPv6 scenarios', ipv6Scenarios);
// KUBE_LB_IPVS_IPV6_ROWS=all runs every row the host variants run over IPv6.
runConformance('ipvs', process.env.KUBE_LB_IPVS_IPV6_ROWS === 'all' ? OVER_IPV6 : OVER_IPV6_ON_IPVS, 'IPv6');
