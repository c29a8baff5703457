// A Source fed by the API server: @kubernetes/client-node informers (list,
// then watch) on Services, EndpointSlices and this node's Node object, with
// kube-proxy's selectors. Lists come in pages (limit and continue), as
// kube-proxy's reflectors read them. The informers' caches keep only each
// object's identity and version: the model keeps what it needs. The informers keep a cache and diff a relist
// (after 410 Gone) against it, so a reconnect removes only what vanished.
import {
  CoreV1Api,
  DiscoveryV1Api,
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

type ListPage = (page: { limit: number; _continue?: string }) => Promise<KubernetesListObject<KubernetesObject>>;

/**
 * Every page of a list, as one list with the last page's resourceVersion
 * (the snapshot the first page opened), each item as `keep` makes it as
 * its page arrives.
 */
async function listInPages(listPage: ListPage, keep: (item: KubernetesObject) => KubernetesObject): Promise<KubernetesListObject<KubernetesObject>> {
  const items: KubernetesObject[] = [];
  let page: KubernetesListObject<KubernetesObject> | undefined;
  do {
    page = await listPage({ limit: LIST_PAGE_SIZE, ...(page?.metadata?._continue && { _continue: page.metadata._continue }) });
    for (const item of page.items) items.push(keep(item));
  } while (page.metadata?._continue);
  return { ...page, metadata: { ...page.metadata, _continue: undefined }, items };
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
  /** The watch path; the list goes through the typed client for the same resource. */
  path: string;
  labelSelector?: string;
  fieldSelector?: string;
  listPage: ListPage;
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
      callback(phase, phase === 'ADDED' || phase === 'MODIFIED' || phase === 'DELETED' ? cacheEntry({ ...(object as RawObject), apiVersion: this.spec.apiVersion, kind: this.spec.kind }) : object, watchObject);
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
    const core = this.kubeConfig.makeApiClient(CoreV1Api);
    const discovery = this.kubeConfig.makeApiClient(DiscoveryV1Api);
    const labelSelector = PROXY_LABEL_SELECTOR;
    const fieldSelector = `metadata.name=${this.opts.nodeName}`;
    return [
      { kind: 'Service', apiVersion: 'v1', path: '/api/v1/services', labelSelector, listPage: (page) => core.listServiceForAllNamespaces({ labelSelector, ...page }) },
      {
        kind: 'EndpointSlice',
        apiVersion: 'discovery.k8s.io/v1',
        path: '/apis/discovery.k8s.io/v1/endpointslices',
        labelSelector,
        listPage: (page) => discovery.listEndpointSliceForAllNamespaces({ labelSelector, ...page }),
      },
      { kind: 'Node', apiVersion: 'v1', path: '/api/v1/nodes', fieldSelector, listPage: (page) => core.listNode({ fieldSelector, ...page }) },
    ];
  }

  private createInformer(spec: InformerSpec): RunningInformer {
    const list = (): Promise<KubernetesListObject<KubernetesObject>> => listInPages(spec.listPage, (item) => cacheEntry(listItemObject(item, spec)));
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

/**
 * A list item as the API sends it: the typed client makes items class
 * instances with Date fields and without apiVersion and kind, which a JSON
 * round trip undoes. (Watch events are plain JSON already.)
 */
function listItemObject(object: KubernetesObject, spec: InformerSpec): RawObject {
  return { ...(JSON.parse(JSON.stringify(object)) as RawObject), apiVersion: spec.apiVersion, kind: spec.kind };
}

function describeError(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { statusCode?: number; code?: number | string }).statusCode ?? (err as { code?: number | string }).code;
    return code === undefined ? err.message : `${err.message} (${code})`;
  }
  return String(err);
}
