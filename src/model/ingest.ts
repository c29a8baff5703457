// The model's front door: every source feeds the model through this sink,
// so invalid objects are rejected and reported in exactly one place.
import type { Logger } from '../log.js';
import type { ProxyModel } from './model.js';
import { InvalidObjectError, parseObject, type KubeObject, type ObjectKind, type RawObject } from './objects.js';

/** What sources deliver to: the model's front door. */
export interface ObjectSink {
  /**
   * A new or changed object, with apiVersion and kind set. `origin` says where
   * it came from (a file path, "apiserver") so rejections can point at it.
   */
  upsert(object: RawObject, origin: string): void;
  /** The object is gone. Nodes have namespace ''. */
  delete(kind: ObjectKind, namespace: string, name: string): void;
  /**
   * The initial state has been delivered in full. Before this an absent
   * object may simply not have been read yet, so nothing may be removed
   * from the datapath on its account.
   */
  synced(): void;
}

export interface IngestHooks {
  /** The model changed; a sync should follow. */
  onChange(): void;
  /** The source delivered its initial state. */
  onSynced(): void;
}

export class ModelSink implements ObjectSink {
  constructor(
    private readonly model: ProxyModel,
    private readonly log: Logger,
    private readonly hooks: IngestHooks,
  ) {}

  upsert(raw: RawObject, origin: string): void {
    let object: KubeObject;
    try {
      object = parseObject(raw);
    } catch (err) {
      if (!(err instanceof InvalidObjectError)) throw err;
      const { kind, namespace, name } = err.object;
      // The previous version, if any, stays in force: one bad edit must not take a service down.
      this.log.warn({ kind, namespace, name, origin, reason: err.reason }, `rejected invalid ${err.message}`);
      return;
    }
    if (object.kind === 'EndpointSlice' && object.ignoredReason !== null) {
      this.log.debug({ kind: object.kind, namespace: object.namespace, name: object.name, origin, reason: object.ignoredReason }, 'ignoring endpoints');
    }
    if (this.model.upsert(object)) this.hooks.onChange();
  }

  delete(kind: ObjectKind, namespace: string, name: string): void {
    if (this.model.delete(kind, namespace, name)) this.hooks.onChange();
  }

  synced(): void {
    this.hooks.onSynced();
  }
}
