// Where cluster objects come from: a directory of manifests, or the API
// server's informers. A source only delivers raw objects to the model's
// sink (model/ingest.ts); parsing and validation happen there, the same for
// every source.
import type { ObjectSink } from '../model/ingest.js';

export interface Source {
  /** Starts delivering to `sink`; rejects if the source cannot run at all. */
  start(sink: ObjectSink): Promise<void>;
  /** Stops delivering; once this resolves, the sink is not called again. */
  stop(): Promise<void>;
}
