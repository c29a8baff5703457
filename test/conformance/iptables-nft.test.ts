// The conformance scenarios and kube-proxy layout checks against iptables-nft.
import { iptablesChecks } from './iptables-checks.js';
import { runConformance } from './suite.js';

runConformance('iptables-nft');
iptablesChecks('nft');
