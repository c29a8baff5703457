// A Source fed by the API server: @kubernetes/client-node informers (list,
// then watch) on Services, EndpointSlices and this node's Node object, with
// kube-proxy's selectors. Lists come in pages (limit and continue), as
// kube-proxy's reflectors read them, as plain JSON: the typed client's
// deserialization into classes cost more than the rest of the list. The
// informers keep a cache and diff a relist (after 410 Gone) against it, so
// a reconnect removes only what vanished; the cache keeps each object's
// identity and version only, the model what it needs of the object.
import http from 'node:http';
import https from 'node:https';
import {
  KubeConfig,
  ListWatch,
  Watch,
  type KubernetesListObject,
  type KubernetesObject,
} from '@kubernetes/client-node';
import type { Logger } from '../log.js';
import type { ObjectKind, RawObject } from '../model/objects.js';
import type { ObjectSink } from '../model/ingest.js';
import type { Source } from './source.js';

/**
 * kube-proxy's label selector for Services and EndpointSlices: services
 * that name another proxy are not ours, and headless services' slices carry
 * nothing to proxy.
 */
export const PROXY_LABEL_SELECTOR = '!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless';

export interface ApiServerSourceOptions {
  /** A kubeconfig file; undefined means the in-cluster service account. */
  kubeconfig: string | undefined;
  /** This node's name: only its Node object is watched. */
  nodeName: string;
  log: Logger;
  /** Reconnect backoff: the first retry waits minBackoffMs, doubling up to maxBackoffMs. */
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

/** Objects per list page: a large cluster's list then arrives in pieces, not as one response the size of the cluster. */
const LIST_PAGE_SIZE = 500;

/** A list page as the API sends it. */
interface ListPage {
  metadata?: { resourceVersion?: string; continue?: string };
  items: KubernetesObject[];
}

/** A failed API request: its HTTP status and the Status message the server sent. */
class ApiError extends Error {
  constructor(
    readonly statusCode: number,
    body: string,
  ) {
    let message = body;
    try {
      message = (JSON.parse(body) as { message?: string }).message ?? body;
    } catch {
      // Not a Status object: the body says it.
    }
    super(`HTTP ${statusCode}: ${message}`);
  }
}

/** GETs `url` with the kubeconfig's credentials and parses the JSON answer. */
async function getJson(kubeConfig: KubeConfig, url: URL): Promise<ListPage> {
  const options: https.RequestOptions = { method: 'GET', headers: { accept: 'application/json' } };
  await kubeConfig.applyToHTTPSOptions(options);
  return new Promise((resolve, reject) => {
    const request = (url.protocol === 'http:' ? http : https).request(url, options, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('error', reject);
      response.on('end', () => {
        const body = Buffer.concat(chunks).toString();
        if (response.statusCode !== 200) reject(new ApiError(response.statusCode ?? 0, body));
        else resolve(JSON.parse(body) as ListPage);
      });
    });
    request.on('error', reject);
    request.end();
  });
}

/**
 * Every page of a list, as one list with the last page's resourceVersion
 * (the snapshot the first page opened), each item as `keep` makes it as
 * its page arrives.
 */
async function listInPages(kubeConfig: KubeConfig, spec: InformerSpec, keep: (item: KubernetesObject) => KubernetesObject): Promise<KubernetesListObject<KubernetesObject>> {
  const items: KubernetesObject[] = [];
  let page: ListPage | undefined;
  do {
    const url = new URL(`${kubeConfig.getCurrentCluster()!.server}${spec.path}`);
    if (spec.labelSelector !== undefined) url.searchParams.set('labelSelector', spec.labelSelector);
    if (spec.fieldSelector !== undefined) url.searchParams.set('fieldSelector', spec.fieldSelector);
    url.searchParams.set('limit', String(LIST_PAGE_SIZE));
    if (page?.metadata?.continue) url.searchParams.set('continue', page.metadata.continue);
    page = await getJson(kubeConfig, url);
    for (const item of page.items) items.push(keep(item));
  } while (page.metadata?.continue);
  return { metadata: { resourceVersion: page.metadata?.resourceVersion }, items };
}

/**
 * What an informer's cache holds of an object: the metadata it keys, diffs
 * relists and compares versions by, and the object itself until the
 * add or update handler takes it for the model.
 */
interface CacheEntry extends KubernetesObject {
  object: RawObject | undefined;
}

function cacheEntry(object: RawObject): CacheEntry {
  const { namespace, name, resourceVersion } = (object.metadata ?? {}) as { namespace?: string; name?: string; resourceVersion?: string };
  return { metadata: { namespace, name, resourceVersion }, object };
}

/** The object an add or update carries, once: the cache keeps the entry without it. */
function takeObject(entry: KubernetesObject): RawObject {
  const cached = entry as CacheEntry;
  const object = cached.object;
  if (object === undefined) throw new Error(`informer delivered ${entry.metadata?.namespace ?? ''}/${entry.metadata?.name ?? ''} twice`);
  cached.object = undefined;
  return object;
}

interface InformerSpec {
  kind: ObjectKind;
  apiVersion: string;
  /** The list and watch path. */
  path: string;
  labelSelector?: string;
  fieldSelector?: string;
}

/**
 * Asks every watch for bookmarks, so a reconnect resumes from a recent
 * resourceVersion instead of relisting, and hands the informer cache
 * entries of the objects its events carry.
 */
class InformerWatch extends Watch {
  constructor(
    kubeConfig: KubeConfig,
    private readonly spec: InformerSpec,
  ) {
    super(kubeConfig);
  }

  override watch(...[path, queryParams, callback, done]: Parameters<Watch['watch']>): Promise<AbortController> {
    const entries: typeof callback = (phase, object, watchObject) =>
      callback(phase, phase === 'ADDED' || phase === 'MODIFIED' || phase === 'DELETED' ? cacheEntry(rawObject(object, this.spec)) : object, watchObject);
    return super.watch(path, { ...queryParams, allowWatchBookmarks: true }, entries, done);
  }
}

/** One informer and its reconnect state. */
interface RunningInformer {
  spec: InformerSpec;
  listWatch: ListWatch<KubernetesObject>;
  /** Consecutive failures; sets the next backoff. */
  failures: number;
  retryTimer: NodeJS.Timeout | undefined;
  listed: boolean;
}

export class ApiServerSource implements Source {
  private readonly kubeConfig = new KubeConfig();
  private readonly log: Logger;
  private readonly minBackoffMs: number;
  private readonly maxBackoffMs: number;
  private informers: RunningInformer[] = [];
  private sink: ObjectSink | null = null;
  private stopped = false;
  private syncedReported = false;

  constructor(private readonly opts: ApiServerSourceOptions) {
    this.log = opts.log.child({ source: 'apiserver' });
    this.minBackoffMs = opts.minBackoffMs ?? 500;
    this.maxBackoffMs = opts.maxBackoffMs ?? 30_000;
  }

  /** Loads the client config and starts the informers; synced() follows once every one has listed. */
  async start(sink: ObjectSink): Promise<void> {
    this.loadConfig();
    this.sink = sink;
    const server = this.kubeConfig.getCurrentCluster()?.server;
    this.log.info({ server, node: this.opts.nodeName }, 'watching the API server');
    this.informers = this.informerSpecs().map((spec) => this.createInformer(spec));
    for (const informer of this.informers) void this.startInformer(informer);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const informer of this.informers) {
      clearTimeout(informer.retryTimer);
      await informer.listWatch.stop();
    }
  }

  private loadConfig(): void {
    if (this.opts.kubeconfig !== undefined) {
      this.kubeConfig.loadFromFile(this.opts.kubeconfig);
      return;
    }
    if (!process.env.KUBERNETES_SERVICE_HOST || !process.env.KUBERNETES_SERVICE_PORT) {
      throw new Error('not running in a cluster (KUBERNETES_SERVICE_HOST/PORT unset): pass --kubeconfig or --manifests');
    }
    this.kubeConfig.loadFromCluster();
  }

  private informerSpecs(): InformerSpec[] {
    const labelSelector = PROXY_LABEL_SELECTOR;
    const fieldSelector = `metadata.name=${this.opts.nodeName}`;
    return [
      { kind: 'Service', apiVersion: 'v1', path: '/api/v1/services', labelSelector },
      { kind: 'EndpointSlice', apiVersion: 'discovery.k8s.io/v1', path: '/apis/discovery.k8s.io/v1/endpointslices', labelSelector },
      { kind: 'Node', apiVersion: 'v1', path: '/api/v1/nodes', fieldSelector },
    ];
  }

  private createInformer(spec: InformerSpec): RunningInformer {
    const list = (): Promise<KubernetesListObject<KubernetesObject>> => listInPages(this.kubeConfig, spec, (item) => cacheEntry(rawObject(item, spec)));
    const listWatch = new ListWatch(spec.path, new InformerWatch(this.kubeConfig, spec), list, false, spec.labelSelector, spec.fieldSelector);
    const informer: RunningInformer = { spec, listWatch, failures: 0, retryTimer: undefined, listed: false };
    const upsert = (object: KubernetesObject): void => {
      const raw = takeObject(object);
      if (!this.stopped) this.sink!.upsert(raw, 'apiserver');
    };
    listWatch.on('add', upsert);
    listWatch.on('update', upsert);
    listWatch.on('delete', (object) => {
      if (!this.stopped) this.sink!.delete(spec.kind, spec.kind === 'Node' ? '' : (object.metadata?.namespace ?? ''), object.metadata?.name ?? '');
    });
    // The informer stops on any error but 410 Gone (which it answers with a relist): retry with backoff.
    listWatch.on('error', (err) => this.scheduleRetry(informer, err));
    return informer;
  }

  private async startInformer(informer: RunningInformer): Promise<void> {
    const failuresBefore = informer.failures;
    // Resolves once the list is delivered and the watch is open, or once an error was reported.
    await informer.listWatch.start();
    if (this.stopped || informer.failures > failuresBefore) return;
    informer.failures = 0;
    if (!informer.listed && informer.listWatch.latestResourceVersion() !== '') {
      informer.listed = true;
      this.log.info({ kind: informer.spec.kind, resourceVersion: informer.listWatch.latestResourceVersion() }, 'initial list delivered');
      if (!this.syncedReported && this.informers.every((i) => i.listed)) {
        this.syncedReported = true;
        this.sink!.synced();
      }
    }
  }

  private scheduleRetry(informer: RunningInformer, err: unknown): void {
    if (this.stopped) return;
    informer.failures++;
    const backoffMs = Math.min(this.maxBackoffMs, this.minBackoffMs * 2 ** (informer.failures - 1));
    // Up to 20% jitter, so the nodes of a cluster do not reconnect in lockstep.
    const delayMs = Math.round(backoffMs * (1 + Math.random() * 0.2));
    this.log.warn({ kind: informer.spec.kind, err: describeError(err), retryInMs: delayMs }, 'API server watch failed; the datapath keeps its state');
    clearTimeout(informer.retryTimer);
    informer.retryTimer = setTimeout(() => void this.startInformer(informer), delayMs);
  }
}

/** An object of a list or a watch event, which the API sends without apiVersion and kind in lists. */
function rawObject(object: KubernetesObject, spec: InformerSpec): RawObject {
  return Object.assign(object, { apiVersion: spec.apiVersion, kind: spec.kind }) as unknown as RawObject;
}

function describeError(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { statusCode?: number; code?: number | string }).statusCode ?? (err as { code?: number | string }).code;
    return code === undefined ? err.message : `${err.message} (${code})`;
  }
  return String(err);
}
