// A small Kubernetes API server for tests: the list and watch protocol of
// Services, EndpointSlices and Nodes over HTTPS with bearer-token auth, as
// the real one speaks it (lists carry a resourceVersion, watches stream
// newline-delimited JSON events in chunks, bookmarks, 410 Gone as a watch
// ERROR event, lists in pages by limit and continue), plus faults on demand: dropped watches, compaction, outages.
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

type Kind = 'Service' | 'EndpointSlice' | 'Node';
type JsonObject = Record<string, any>;

interface Resource {
  kind: Kind;
  apiVersion: string;
  path: string;
  namespaced: boolean;
}

const RESOURCES: Resource[] = [
  { kind: 'Service', apiVersion: 'v1', path: '/api/v1/services', namespaced: true },
  { kind: 'EndpointSlice', apiVersion: 'discovery.k8s.io/v1', path: '/apis/discovery.k8s.io/v1/endpointslices', namespaced: true },
  { kind: 'Node', apiVersion: 'v1', path: '/api/v1/nodes', namespaced: false },
];

export interface ServerStats {
  /** List requests per kind. */
  lists: Record<string, number>;
  /** Watch requests per kind. */
  watches: Record<string, number>;
  /** Query parameters of the last watch request per kind. */
  lastWatchQuery: Record<string, Record<string, string>>;
  /** List pages served past the first, by continue token, per kind. */
  continuedLists: Record<string, number>;
  /** Watch streams open now. */
  openWatches: number;
  /** Requests refused for a missing or wrong token. */
  unauthorized: number;
}

/** What a test can do to an API server, whether it runs in this process or in another network namespace. */
export interface ApiServerControl {
  /** Creates or replaces an object (apiVersion, kind, metadata.name, and metadata.namespace when namespaced). */
  apply(object: JsonObject): Promise<void>;
  /** apply() of each object in order, in one call: how a benchmark loads thousands. */
  applyAll(objects: JsonObject[]): Promise<void>;
  delete(kind: Kind, namespace: string, name: string): Promise<void>;
  /** Cuts every open watch connection, as a load balancer or a restarting API server does. */
  dropWatches(): Promise<void>;
  /** Compacts history: open watches get 410 Gone, and so does any watch from an older resourceVersion. */
  compact(): Promise<void>;
  /** While down, every connection is refused and the open ones are cut. */
  setOutage(down: boolean): Promise<void>;
  stats(): Promise<ServerStats>;
}

export interface TestApiServerOptions {
  cert: string;
  key: string;
  token: string;
  host?: string;
  port?: number;
  /** How often open watches that asked for them get a bookmark. */
  bookmarkIntervalMs?: number;
}

interface Event {
  resourceVersion: number;
  kind: Kind;
  old: JsonObject | undefined;
  current: JsonObject | undefined;
}

/** A paged list's remaining items, as of its first page, as the real server pages one etcd snapshot. */
interface ListSnapshot {
  resourceVersion: number;
  items: JsonObject[];
  /** Set while a continue token names it. */
  expires: NodeJS.Timeout | undefined;
}

/** How long a continue token stays good: the real server's is bounded by compaction, minutes. */
const CONTINUE_TTL_MS = 5 * 60_000;

interface OpenWatch {
  resource: Resource;
  matches: (object: JsonObject) => boolean;
  response: ServerResponse;
  bookmarkTimer: NodeJS.Timeout | undefined;
}

export class TestApiServer implements ApiServerControl {
  private readonly objects = new Map<string, JsonObject>();
  private readonly history: Event[] = [];
  private resourceVersion = 1000;
  /** Watches from before this resourceVersion get 410 Gone. */
  private compactedBelow = 0;
  private down = false;
  private readonly watches = new Set<OpenWatch>();
  private readonly sockets = new Set<Socket>();
  private readonly snapshots = new Map<string, ListSnapshot>();
  private nextSnapshot = 0;
  private readonly counters: ServerStats = { lists: {}, watches: {}, lastWatchQuery: {}, continuedLists: {}, openWatches: 0, unauthorized: 0 };

  private constructor(
    private readonly server: https.Server,
    private readonly opts: TestApiServerOptions,
  ) {}

  static async start(opts: TestApiServerOptions): Promise<TestApiServer> {
    const server = https.createServer({ cert: opts.cert, key: opts.key });
    const api = new TestApiServer(server, opts);
    server.on('connection', (socket: Socket) => {
      if (api.down) return socket.destroy();
      api.sockets.add(socket);
      socket.once('close', () => api.sockets.delete(socket));
    });
    server.on('request', (req: IncomingMessage, res: ServerResponse) => api.handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => resolve());
    });
    return api;
  }

  get port(): number {
    return (this.server.address() as { port: number }).port;
  }

  async apply(object: JsonObject): Promise<void> {
    const resource = resourceOf(object.kind);
    const id = objectId(resource.kind, object.metadata?.namespace ?? '', object.metadata?.name);
    const old = this.objects.get(id);
    const stored = structuredClone(object);
    stored.metadata = { ...stored.metadata, resourceVersion: String(++this.resourceVersion), uid: old?.metadata.uid ?? `uid-${this.resourceVersion}` };
    this.objects.set(id, stored);
    this.publish({ resourceVersion: this.resourceVersion, kind: resource.kind, old, current: stored });
  }

  async applyAll(objects: JsonObject[]): Promise<void> {
    for (const object of objects) await this.apply(object);
  }

  async delete(kind: Kind, namespace: string, name: string): Promise<void> {
    const id = objectId(kind, namespace, name);
    const old = this.objects.get(id);
    if (old === undefined) throw new Error(`no ${kind} ${namespace}/${name} to delete`);
    this.objects.delete(id);
    this.publish({ resourceVersion: ++this.resourceVersion, kind, old, current: undefined });
  }

  async dropWatches(): Promise<void> {
    for (const watch of this.watches) watch.response.socket?.destroy();
  }

  async compact(): Promise<void> {
    this.compactedBelow = this.resourceVersion;
    this.history.length = 0;
    for (const watch of [...this.watches]) {
      this.forget(watch);
      this.endWithGone(watch.response, `too old resource version: compacted at ${this.compactedBelow}`);
    }
  }

  async setOutage(down: boolean): Promise<void> {
    this.down = down;
    if (down) for (const socket of this.sockets) socket.destroy();
  }

  async stats(): Promise<ServerStats> {
    return structuredClone({ ...this.counters, openWatches: this.watches.size });
  }

  async close(): Promise<void> {
    for (const snapshot of this.snapshots.values()) clearTimeout(snapshot.expires);
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    if (req.headers.authorization !== `Bearer ${this.opts.token}`) {
      this.counters.unauthorized++;
      return sendStatus(res, 401, 'Unauthorized', 'Unauthorized');
    }
    const url = new URL(req.url ?? '/', 'https://localhost');
    const resource = RESOURCES.find((r) => r.path === url.pathname);
    if (req.method !== 'GET' || resource === undefined) return sendStatus(res, 404, 'NotFound', `the server could not find the requested resource ${url.pathname}`);
    const query = Object.fromEntries(url.searchParams);
    let matches: (object: JsonObject) => boolean;
    try {
      matches = selectorMatcher(query.labelSelector ?? '', query.fieldSelector ?? '');
    } catch (err) {
      return sendStatus(res, 400, 'BadRequest', (err as Error).message);
    }
    if (query.watch === 'true' || query.watch === '1') this.watch(resource, query, matches, res);
    else this.list(resource, query, matches, res);
  }

  /**
   * A list, or one page of it: with `limit`, the first page snapshots the
   * selection and names the rest by a continue token, which later pages
   * read from, at the first page's resourceVersion.
   */
  private list(resource: Resource, query: Record<string, string>, matches: (object: JsonObject) => boolean, res: ServerResponse): void {
    const limit = query.limit === undefined ? 0 : Number(query.limit);
    if (!Number.isInteger(limit) || limit < 0) return sendStatus(res, 400, 'BadRequest', `invalid limit ${JSON.stringify(query.limit)}`);
    let snapshot: ListSnapshot;
    let offset = 0;
    if (query.continue) {
      const [id, from] = query.continue.split(':');
      const found = this.snapshots.get(id ?? '');
      if (found === undefined || found.resourceVersion < this.compactedBelow) {
        return sendStatus(res, 410, 'Expired', 'The provided continue parameter is too old to display a consistent list result.');
      }
      snapshot = found;
      offset = Number(from);
      this.counters.continuedLists[resource.kind] = (this.counters.continuedLists[resource.kind] ?? 0) + 1;
    } else {
      this.counters.lists[resource.kind] = (this.counters.lists[resource.kind] ?? 0) + 1;
      // List items carry no apiVersion and kind: the list says what they are.
      const items = this.current(resource)
        .filter(matches)
        .map(({ apiVersion: _apiVersion, kind: _kind, ...item }) => item);
      snapshot = { resourceVersion: this.resourceVersion, items, expires: undefined };
    }
    const end = limit === 0 ? snapshot.items.length : Math.min(snapshot.items.length, offset + limit);
    const metadata: JsonObject = { resourceVersion: String(snapshot.resourceVersion) };
    const id = query.continue?.split(':')[0] ?? String(++this.nextSnapshot);
    clearTimeout(snapshot.expires);
    if (end < snapshot.items.length) {
      metadata.continue = `${id}:${end}`;
      snapshot.expires = setTimeout(() => this.snapshots.delete(id), CONTINUE_TTL_MS);
      this.snapshots.set(id, snapshot);
    } else {
      this.snapshots.delete(id);
    }
    sendJson(res, 200, { apiVersion: resource.apiVersion, kind: `${resource.kind}List`, metadata, items: snapshot.items.slice(offset, end) });
  }

  private watch(resource: Resource, query: Record<string, string>, matches: (object: JsonObject) => boolean, res: ServerResponse): void {
    this.counters.watches[resource.kind] = (this.counters.watches[resource.kind] ?? 0) + 1;
    this.counters.lastWatchQuery[resource.kind] = query;
    // No content-length: node streams the body with Transfer-Encoding: chunked.
    // Headers go out now, as the real server sends them before any event.
    res.writeHead(200, { 'content-type': 'application/json' });
    res.flushHeaders();
    const from = query.resourceVersion ?? '';
    if (from !== '' && from !== '0' && Number(from) < this.compactedBelow) {
      return this.endWithGone(res, `too old resource version: ${from} (${this.compactedBelow})`);
    }
    const watch: OpenWatch = { resource, matches, response: res, bookmarkTimer: undefined };
    if (from === '' || from === '0') {
      for (const object of this.current(resource).filter(matches)) writeEvent(res, 'ADDED', object);
    } else {
      for (const event of this.history) if (event.resourceVersion > Number(from)) this.deliver(watch, event);
    }
    if (query.allowWatchBookmarks === 'true') {
      watch.bookmarkTimer = setInterval(
        () => writeEvent(res, 'BOOKMARK', { apiVersion: resource.apiVersion, kind: resource.kind, metadata: { resourceVersion: String(this.resourceVersion) } }),
        this.opts.bookmarkIntervalMs ?? 1000,
      );
    }
    this.watches.add(watch);
    res.once('close', () => this.forget(watch));
  }

  /** Sends the watch nothing more. */
  private forget(watch: OpenWatch): void {
    clearInterval(watch.bookmarkTimer);
    this.watches.delete(watch);
  }

  private publish(event: Event): void {
    this.history.push(event);
    for (const watch of this.watches) this.deliver(watch, event);
  }

  /** Sends an event as a selector-filtered watch sees it: entering the selection is ADDED, leaving it DELETED. */
  private deliver(watch: OpenWatch, event: Event): void {
    if (event.kind !== watch.resource.kind) return;
    const before = event.old !== undefined && watch.matches(event.old);
    const after = event.current !== undefined && watch.matches(event.current);
    if (after) writeEvent(watch.response, before ? 'MODIFIED' : 'ADDED', event.current!);
    // A deleted object is sent in its last state, with the deletion's resourceVersion.
    else if (before) writeEvent(watch.response, 'DELETED', event.current ?? { ...event.old!, metadata: { ...event.old!.metadata, resourceVersion: String(event.resourceVersion) } });
  }

  private endWithGone(res: ServerResponse, message: string): void {
    writeEvent(res, 'ERROR', { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason: 'Expired', code: 410 });
    res.end();
  }

  private current(resource: Resource): JsonObject[] {
    return [...this.objects.values()].filter((o) => o.kind === resource.kind);
  }
}

function resourceOf(kind: unknown): Resource {
  const resource = RESOURCES.find((r) => r.kind === kind);
  if (resource === undefined) throw new Error(`the test API server does not serve kind ${String(kind)}`);
  return resource;
}

function objectId(kind: Kind, namespace: string, name: unknown): string {
  if (typeof name !== 'string' || name === '') throw new Error(`${kind} without metadata.name`);
  return `${kind}/${resourceOf(kind).namespaced ? namespace || 'default' : ''}/${name}`;
}

function writeEvent(res: ServerResponse, type: string, object: JsonObject): void {
  res.write(`${JSON.stringify({ type, object })}\n`);
}

function sendJson(res: ServerResponse, code: number, body: JsonObject): void {
  res.writeHead(code, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

function sendStatus(res: ServerResponse, code: number, reason: string, message: string): void {
  sendJson(res, code, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code });
}

/** Label selector terms (key, !key, key=value, key==value, key!=value) and metadata.name/namespace field selectors. */
function selectorMatcher(labelSelector: string, fieldSelector: string): (object: JsonObject) => boolean {
  const labelTerms = terms(labelSelector).map((term) => {
    const m = /^(!?)([^=!]+)(?:(==|=|!=)(.*))?$/.exec(term);
    if (m === null) throw new Error(`unable to parse requirement: ${JSON.stringify(term)}`);
    const [, not, key, op, value] = m;
    return (labels: Record<string, string>) => {
      if (op === undefined) return (key! in labels) !== (not === '!');
      return op === '!=' ? labels[key!] !== value : labels[key!] === value;
    };
  });
  const fieldTerms = terms(fieldSelector).map((term) => {
    const m = /^metadata\.(name|namespace)(==|=|!=)(.*)$/.exec(term);
    if (m === null) throw new Error(`field label not supported: ${JSON.stringify(term)}`);
    const [, field, op, value] = m;
    return (object: JsonObject) => (object.metadata?.[field!] === value) !== (op === '!=');
  });
  return (object) => labelTerms.every((t) => t(object.metadata?.labels ?? {})) && fieldTerms.every((t) => t(object));
}

function terms(selector: string): string[] {
  return selector.split(',').map((t) => t.trim()).filter((t) => t !== '');
}
