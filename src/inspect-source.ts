// What `kube-lb inspect` names frontends with. The kernel holds addresses
// (BPF maps, IPVS tables), not names, so the names come from where `run`
// reads its objects, resolved by the model as `run` resolves them: the
// services as the source holds them now, not a memory of the last sync.
import type { Logger } from './log.js';
import { type ResolvedFrontend, type ServicePortState, frontendKey } from './model/contract.js';
import { ModelSink } from './model/ingest.js';
import { type ModelOptions, ProxyModel } from './model/model.js';
import type { Source } from './sources/source.js';

/** A frontend's service port, its decisions, and the node of each of the service's endpoint addresses. */
export interface FrontendSource {
  servicePort: ServicePortState;
  frontend: ResolvedFrontend;
  endpointNodes: ReadonlyMap<string, string>;
}

/** How long the source may take to deliver its objects: an unreachable API server is retried, never refused. */
const SOURCE_WAIT_MS = 60_000;

/** Every frontend the source's objects resolve to on this node, by frontendKey. */
export async function readFrontendSources(source: Source, model: ModelOptions, log: Logger): Promise<Map<string, FrontendSource>> {
  const proxyModel = new ProxyModel(model);
  let timer: NodeJS.Timeout | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`the source did not deliver its objects within ${SOURCE_WAIT_MS / 1000} s`)), SOURCE_WAIT_MS);
      source.start(new ModelSink(proxyModel, log, { onChange: () => {}, onSynced: resolve })).catch(reject);
    });
  } finally {
    clearTimeout(timer);
    await source.stop();
  }
  await proxyModel.resolveChanges();
  const frontends = new Map<string, FrontendSource>();
  for (const servicePort of proxyModel.desiredState().values()) {
    const endpointNodes = proxyModel.endpointNodes(servicePort.namespace, servicePort.name);
    for (const frontend of servicePort.frontends) frontends.set(frontendKey(frontend), { servicePort, frontend, endpointNodes });
  }
  return frontends;
}
