// A Source reading Kubernetes manifests from a directory: the standalone
// mode, and the test bench for everything downstream. The directory is
// watched; on any change the full object set is re-read and diffed against
// the previous one, so edits, renames and deletions all come out right.
import { watch, type FSWatcher } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { parseAllDocuments } from 'yaml';
import type { Logger } from '../log.js';
import { InvalidObjectError, isRecord, objectRef, supportedKind, type ObjectRef, type RawObject } from '../model/objects.js';
import type { ObjectSink } from '../model/ingest.js';
import type { Source } from './source.js';

export interface ManifestsSourceOptions {
  directory: string;
  log: Logger;
  /** fs.watch can miss events (editors, network filesystems): rescan this often regardless. */
  rescanIntervalMs?: number;
  /** Events arriving within this window are handled by one rescan. */
  debounceMs?: number;
}

interface ManifestObject {
  id: string;
  ref: ObjectRef;
  file: string;
  /** Identifies the object's content, so unchanged objects are not delivered again. */
  fingerprint: string;
  /** Kept until delivered: the model holds delivered objects, the source need not. */
  raw: RawObject | null;
}

interface FileState {
  /** Identifies the content last read: a changed file gets a new inode, size or mtime. */
  version: string;
  objects: ManifestObject[];
}

const MANIFEST_EXTENSIONS = new Set(['.yaml', '.yml', '.json']);

export class ManifestsSource implements Source {
  private readonly directory: string;
  private readonly log: Logger;
  private readonly rescanIntervalMs: number;
  private readonly debounceMs: number;

  private sink: ObjectSink | null = null;
  private watcher: FSWatcher | null = null;
  private rescanTimer: NodeJS.Timeout | null = null;
  private debounceTimer: NodeJS.Timeout | null = null;
  private scanning: Promise<void> | null = null;
  private rescanRequested = false;
  private stopped = false;

  private readonly files = new Map<string, FileState>();
  /** What the sink has been given, by object id. */
  private delivered = new Map<string, ManifestObject>();

  constructor(options: ManifestsSourceOptions) {
    this.directory = path.resolve(options.directory);
    this.log = options.log.child({ source: 'manifests', directory: this.directory });
    this.rescanIntervalMs = options.rescanIntervalMs ?? 2000;
    this.debounceMs = options.debounceMs ?? 100;
  }

  async start(sink: ObjectSink): Promise<void> {
    this.sink = sink;
    try {
      // Watch before the first read, so a change made during it is not missed.
      this.watcher = watch(this.directory, () => this.scheduleScan());
      this.watcher.on('error', (err) => this.log.warn({ err }, 'directory watch failed; relying on periodic rescans'));
      this.rescanTimer = setInterval(() => this.scheduleScan(), this.rescanIntervalMs);
      await this.scanSerially();
    } catch (err) {
      await this.stop();
      throw new Error(`cannot read manifests directory ${this.directory}: ${(err as Error).message}`, { cause: err });
    }
    sink.synced();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.watcher?.close();
    if (this.rescanTimer !== null) clearInterval(this.rescanTimer);
    if (this.debounceTimer !== null) clearTimeout(this.debounceTimer);
    await this.scanning?.catch(() => {});
  }

  private scheduleScan(): void {
    if (this.stopped || this.debounceTimer !== null) return;
    this.debounceTimer = setTimeout(() => {
      this.debounceTimer = null;
      this.scanSerially().catch((err) => this.log.error({ err }, 'cannot read manifests directory; keeping the objects read before'));
    }, this.debounceMs);
  }

  /** Never two scans at once; a request during a scan runs one more after it. */
  private scanSerially(): Promise<void> {
    if (this.scanning !== null) {
      this.rescanRequested = true;
      return this.scanning;
    }
    const loop = async () => {
      do {
        this.rescanRequested = false;
        await this.scan();
      } while (this.rescanRequested && !this.stopped);
    };
    this.scanning = loop().finally(() => {
      this.scanning = null;
    });
    return this.scanning;
  }

  private async scan(): Promise<void> {
    const names = (await readdir(this.directory)).filter(isManifestName).sort();
    const present = new Set(names);
    let changed = false;
    for (const gone of [...this.files.keys()].filter((name) => !present.has(name))) {
      this.files.delete(gone);
      changed = true;
    }
    for (const name of names) changed = (await this.refreshFile(name)) || changed;
    if (changed && !this.stopped) this.deliverDifferences();
  }

  /** Re-reads a file if it changed since last read; returns whether its state changed. */
  private async refreshFile(name: string): Promise<boolean> {
    const file = path.join(this.directory, name);
    const known = this.files.get(name);
    let version: string;
    let text: string;
    try {
      const stats = await stat(file, { bigint: true });
      if (!stats.isFile()) return false;
      version = `${stats.ino}:${stats.size}:${stats.mtimeNs}`;
      if (known?.version === version) return false;
      text = await readFile(file, 'utf8');
    } catch (err) {
      // Removed between readdir and here: the next scan sees it gone.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn({ err, file }, 'cannot read manifest file; keeping its objects');
      return false;
    }
    const objects = this.parseFile(file, text);
    // A file that does not parse (perhaps half-written) keeps its last good objects.
    this.files.set(name, { version, objects: objects ?? known?.objects ?? [] });
    return objects !== null;
  }

  /** The usable objects in a file, or null if the file is not valid YAML or JSON. */
  private parseFile(file: string, text: string): ManifestObject[] | null {
    let values: unknown[];
    try {
      values = parseDocuments(file, text);
    } catch (err) {
      this.log.warn({ file, reason: (err as Error).message }, 'manifest file does not parse; keeping its previous objects');
      return null;
    }
    const objects: ManifestObject[] = [];
    for (const value of values) {
      if (supportedKind(value) === null) {
        const { apiVersion, kind } = isRecord(value) ? value : {};
        this.log.debug({ file, apiVersion, kind }, 'ignoring object of a kind the proxy does not use');
        continue;
      }
      try {
        const ref = objectRef(value);
        const fingerprint = createHash('sha1').update(JSON.stringify(value)).digest('base64');
        objects.push({ id: `${ref.kind}/${ref.namespace}/${ref.name}`, ref, file, fingerprint, raw: value as RawObject });
      } catch (err) {
        if (!(err instanceof InvalidObjectError)) throw err;
        this.log.warn({ file, reason: err.reason }, `skipping invalid ${err.message}`);
      }
    }
    return objects;
  }

  private deliverDifferences(): void {
    const sink = this.sink!;
    const current = new Map<string, ManifestObject>();
    for (const name of [...this.files.keys()].sort()) {
      for (const object of this.files.get(name)!.objects) {
        const other = current.get(object.id);
        if (other !== undefined) this.log.warn({ file: object.file, otherFile: other.file, object: object.id }, 'object defined twice; the later file wins');
        current.set(object.id, object);
      }
    }
    for (const [id, object] of current) {
      // An object not yet delivered in this version still has its raw form.
      if (this.delivered.get(id)?.fingerprint !== object.fingerprint) sink.upsert(object.raw!, object.file);
      object.raw = null;
    }
    for (const [id, { ref }] of this.delivered) {
      if (!current.has(id)) sink.delete(ref.kind, ref.namespace, ref.name);
    }
    this.delivered = current;
  }
}

function isManifestName(name: string): boolean {
  // Dot files are editor temporaries or Kubernetes ConfigMap-volume internals (..data).
  return !name.startsWith('.') && MANIFEST_EXTENSIONS.has(path.extname(name));
}

/**
 * The objects in a manifest file, with `kind: List` documents unwrapped as
 * `kubectl get -o yaml` prints them. JSON is YAML too, but JSON.parse reads
 * a large file in a fraction of the YAML parser's time and memory.
 */
function parseDocuments(file: string, text: string): unknown[] {
  const documents = path.extname(file) === '.json' ? [JSON.parse(text) as unknown] : yamlDocuments(text);
  return documents.flatMap((value) => {
    if (isRecord(value) && value.apiVersion === 'v1' && value.kind === 'List') {
      if (!Array.isArray(value.items)) throw new Error('kind: List without an items list');
      return value.items as unknown[];
    }
    return value === null ? [] : [value];
  });
}

function yamlDocuments(text: string): unknown[] {
  return parseAllDocuments(text).map((document) => {
    if (document.errors.length > 0) throw document.errors[0];
    // toJS() also throws, e.g. on alias bombs.
    return document.toJS() as unknown;
  });
}
