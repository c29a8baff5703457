// The rows that come from outside the node, against the ebpf backend with
// XDP in the driver on node-a's uplink (--bpf-xdp=native), plus what only
// XDP promises: frames for endpoints on other nodes leave from the driver,
// and the program goes with cleanup.
import { runConformance } from './suite.js';

runConformance('ebpf-xdp', [
  'NodePort, external IP and load-balancer IP from outside reach endpoints on both nodes, masqueraded',
  'a real HTTP server and client: curl through a NodePort reaches nginx on both nodes',
  'externalTrafficPolicy Local: outside traffic reaches local endpoints with its source kept; the health check node port counts them',
  'loadBalancerSourceRanges: only sources inside the ranges reach the load-balancer IP',
  'a NodePort without endpoints refuses connections from outside at once',
  'kube-lb.io/lb-algorithm: maglev: each client port, from a pod or from outside, reaches the endpoint the Maglev table names, before and after an endpoint goes',
]);
