// The conformance scenarios and kube-proxy layout checks against iptables-legacy.
import { iptablesChecks } from './iptables-checks.js';
import { runConformance } from './suite.js';

runConformance('iptables-legacy');
iptablesChecks('legacy');
