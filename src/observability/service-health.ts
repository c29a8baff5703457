// kube-proxy's service health checks (pkg/proxy/healthcheck): for each
// LoadBalancer service with externalTrafficPolicy: Local, an HTTP server on
// its healthCheckNodePort tells the cloud load balancer whether this node
// has endpoints of the service: 200 with the count when it has, 503 when
// not, so the load balancer sends traffic only to nodes that can serve it.
import http from 'node:http';
import type { Logger } from '../log.js';
import type { ServiceHealth } from '../model/model.js';
import type { ProxierHealth } from './health.js';

interface Listener {
  server: http.Server;
  health: ServiceHealth;
}

export class ServiceHealthServers {
  private readonly listeners = new Map<number, Listener>();

  constructor(
    private readonly proxier: ProxierHealth,
    private readonly log: Logger,
    /** Where to listen: by default every address of both families, as kube-proxy's servers do on a dual-stack node. */
    private readonly host?: string,
  ) {}

  /** Opens, updates and closes listeners so that exactly `wanted` is served. */
  update(wanted: ReadonlyMap<number, ServiceHealth>): void {
    for (const [port, listener] of this.listeners) {
      if (wanted.has(port)) continue;
      listener.server.close();
      this.listeners.delete(port);
    }
    for (const [port, health] of wanted) {
      const listener = this.listeners.get(port);
      if (listener !== undefined) {
        listener.health = health;
        continue;
      }
      this.listen(port, health);
    }
  }

  private listen(port: number, health: ServiceHealth): void {
    const listener: Listener = { server: http.createServer((_req, res) => this.answer(listener.health, res)), health };
    listener.server.on('error', (err) => {
      // A port taken by another program fails this service's check only; the next update retries.
      this.log.error({ kind: 'Service', namespace: listener.health.namespace, name: listener.health.name, healthCheckNodePort: port, err: err.message }, 'cannot serve the health check node port');
      if (this.listeners.get(port) === listener) this.listeners.delete(port);
    });
    listener.server.listen(port, this.host);
    this.listeners.set(port, listener);
  }

  private answer(health: ServiceHealth, res: http.ServerResponse): void {
    const serviceProxyHealthy = this.proxier.status().healthy;
    const ok = health.localEndpoints > 0 && serviceProxyHealthy;
    res.writeHead(ok ? 200 : 503, {
      'content-type': 'application/json',
      'x-content-type-options': 'nosniff',
      'x-load-balancing-endpoint-weight': String(health.localEndpoints),
    });
    res.end(JSON.stringify({ service: { namespace: health.namespace, name: health.name }, localEndpoints: health.localEndpoints, serviceProxyHealthy }));
  }

  async close(): Promise<void> {
    await Promise.all([...this.listeners.values()].map(({ server }) => new Promise<void>((resolve) => server.close(() => resolve()))));
    this.listeners.clear();
  }
}
