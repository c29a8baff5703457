// The IPv4 rows that also run over IPv6 (ipv6-twins.ts): those whose
// addresses all have IPv6 twins.

/**
 * The rows ipvs runs over IPv6 in the VM in every `make test`
 * (ipvs-ipv6.vm-test.ts): under emulation a row costs a minute or two, so
 * CI runs those that program ipvs's own IPv6 state (virtual and real
 * servers, persistence, KUBE-6- sets, kube-ipvs0's addresses). The others
 * pass there too when asked for (docs/development.md).
 */
export const OVER_IPV6_ON_IPVS = [
  'TCP and UDP on several ports spread over ready endpoints only',
  'endpoints added, made not ready and removed reach the datapath without waiting for a resync',
  'a TCP client that tried a cluster IP before its service was programmed gets through from the same source port once it is',
  'hairpin: a pod reaching its own service through itself gets its answers',
  'a held TCP connection survives a kube-lb restart',
  'internalTrafficPolicy Local: pods reach only endpoints on their node; none there, no answer',
  'terminating endpoints serve while nothing ready is left, and stop once one is ready',
  'topology: trafficDistribution PreferClose keeps traffic in the zone',
  'sessionAffinity ClientIP: one client keeps its endpoint',
] as const;

/** Every row that runs over IPv6: every host variant runs them (ipv6.test.ts). */
export const OVER_IPV6 = [
  ...OVER_IPV6_ON_IPVS,
  'a long-lived UDP flow moves to the new endpoint when its endpoint is removed',
  'a service with no ready endpoint gets no traffic, and deleting a service stops it',
  'one client port connected to two services that share an endpoint: each connection keeps its own answers',
  'hostile names are data: invalid ones are rejected by name, the rest keep working',
  'cleanup removes only what kube-lb created: foreign iptables rules and nft tables stay',
  'connections through a ClusterIP and a NodePort are counted under the service and, on request, each endpoint on /metrics, across full resyncs and a restart',
  "headless, ExternalName and other proxies' services are left alone",
  "a cluster IP equal to a pod's address is refused: direct traffic to the pod stays direct",
  'two services claiming one ClusterIP and port: the older keeps it, the newer is refused by name',
  "sessionAffinity ClientIP holds for the node's own connections",
  'NodePort, external IP and load-balancer IP from outside reach endpoints on both nodes, masqueraded',
  "a host-network endpoint of this node and a pod endpoint on the other serve a cluster IP and a NodePort, from a pod and from outside; this node's own endpoint sees the outside client's address",
  'externalTrafficPolicy Local: outside traffic reaches local endpoints with its source kept; the health check node port counts them',
  'loadBalancerSourceRanges: only sources inside the ranges reach the load-balancer IP',
  'kube-lb.io/lb-algorithm: maglev: each client port, from a pod or from outside, reaches the endpoint the Maglev table names, before and after an endpoint goes',
  'traffic from the node itself reaches the ClusterIP, NodePort, external and load-balancer IPs',
  "the node's own processes are shown the frontend as their peer: getpeername over TCP, and the source of replies to an unconnected UDP socket, as a DNS resolver checks",
  '2,000 services are all programmed and every one answers',
  'inspect shows what the manifests say, read back from the kernel, as JSON and text',
  'inspect names what it shows from the manifests, as kubectl get -o wide would, and --service shows one service',
  "an endpoint's out-of-window segment does not reset its connection",
  "with --conntrack-tcp-be-liberal, conntrack de-NATs an endpoint's out-of-window segment, and its connection keeps working",
  'a real HTTP server and client: curl through a NodePort reaches nginx on both nodes',
  'a service without endpoints refuses TCP and UDP from pods rather than let them time out',
  'a service without endpoints refuses TCP and UDP from the node itself rather than let them time out',
  'a NodePort without endpoints refuses connections from outside rather than let them time out',
] as const;
