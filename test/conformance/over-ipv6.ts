// The core IPv4 rows that also run over IPv6 (ipv6-twins.ts): those whose
// addresses all have IPv6 twins. The host's IPv6 file and the ipvs VM file
// both run them.
export const OVER_IPV6 = [
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
