// Where cluster objects come from: a directory of manifests today, the API
// server's informers later. A source only delivers raw objects; parsing and
// validation happen at the model boundary, the same for every source.
import type { ObjectKind, RawObject } from '../model/objects.js';

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

export interface Source {
  /** Starts delivering to `sink`; rejects if the source cannot run at all. */
  start(sink: ObjectSink): Promise<void>;
  /** Stops delivering; once this resolves, the sink is not called again. */
  stop(): Promise<void>;
}
