// A Source reading Kubernetes manifests from a directory: the standalone
// mode, and the test bench for everything downstream. The directory is
// watched; on any change the full object set is re-read and diffed against
// the previous one, so edits, renames and deletions all come out right.
import { watch, type FSWatcher } from 'node:fs';
import { lstat, readdir, readFile, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { Logger } from '../log.js';
import { timeSlices } from '../time-slices.js';
import { InvalidObjectError, isRecord, objectRef, supportedKind, type ObjectKind, type ObjectRef, type RawObject } from '../model/objects.js';
import type { ObjectSink } from '../model/ingest.js';
import type { ParsedValue, ParseReply, ParseRequest } from './manifest-parser.js';
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
  /**
   * Kept until delivered: the model holds delivered objects, the source need
   * not. Should it be needed again, its file is read back.
   */
  raw: RawObject | null;
}

interface FileState {
  /** Identifies the content last read: a changed file gets a new inode, size or mtime. */
  version: string;
  objects: ManifestObject[];
}

const MANIFEST_EXTENSIONS = new Set(['.yaml', '.yml', '.json']);
/**
 * A file that looks cut short (empty, or YAML ending mid-line) may be a
 * rewrite in place caught halfway: it is read once left alone this long.
 */
const CUT_SHORT_QUIET_MS = 1000;
const READ_KINDS: Record<ObjectKind, string> = { Service: 'v1', EndpointSlice: 'discovery.k8s.io/v1', Node: 'v1' };

/** Why a file does not parse, in words that never quote the file. */
class ParseFailure extends Error {}

export class ManifestsSource implements Source {
  private readonly directory: string;
  private readonly log: Logger;
  private readonly rescanIntervalMs: number;
  private readonly debounceMs: number;
  /** A file changed less than this long ago may still be being written: it is read once left alone this long. */
  private readonly quietMs: number;

  private sink: ObjectSink | null = null;
  private watcher: FSWatcher | null = null;
  private rescanTimer: NodeJS.Timeout | null = null;
  private debounceTimer: NodeJS.Timeout | null = null;
  private scanning: Promise<void> | null = null;
  private rescanRequested = false;
  private stopped = false;

  private readonly files = new Map<string, FileState>();
  /** When this process first saw each file's current version: mtimes can lie (clock skew, copies keeping them). */
  private readonly firstSeen = new Map<string, { version: string; at: number }>();
  /** What has been logged about each file, so a rescan does not say it again. */
  private readonly reported = new Map<string, Set<string>>();
  /** The earliest time an unsettled file is to be looked at again, or null. */
  private retryAt: number | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  /** Set once start-up has waited long enough for files still being written. */
  private readAsIs = false;
  /** What the sink has been given, by object id. */
  private delivered = new Map<string, ManifestObject>();
  private readonly parser = new ManifestParser();

  constructor(options: ManifestsSourceOptions) {
    this.directory = path.resolve(options.directory);
    this.log = options.log.child({ source: 'manifests', directory: this.directory });
    this.rescanIntervalMs = options.rescanIntervalMs ?? 2000;
    this.debounceMs = options.debounceMs ?? 100;
    // Below the debounce, so that a file written at once is read by the scan its change triggers.
    this.quietMs = this.debounceMs / 2;
  }

  async start(sink: ObjectSink): Promise<void> {
    this.sink = sink;
    try {
      // Watch before the first read, so a change made during it is not missed.
      this.watcher = watch(this.directory, () => this.scheduleScan());
      this.watcher.on('error', (err) => this.log.warn({ err }, 'directory watch failed; relying on periodic rescans'));
      this.rescanTimer = setInterval(() => this.scheduleScan(), this.rescanIntervalMs);
      await this.scanSerially();
      // synced() promises the whole directory, so files still being written
      // are waited for; one that is never left alone is then read as it is,
      // rather than holding start-up back.
      const deadline = Date.now() + this.quietMs + CUT_SHORT_QUIET_MS;
      while (this.retryAt !== null && !this.stopped && !this.readAsIs) {
        await new Promise((resolve) => setTimeout(resolve, Math.max(0, Math.min(this.retryAt!, deadline) - Date.now())));
        this.readAsIs = Date.now() >= deadline;
        await this.scanSerially();
      }
      this.readAsIs = false;
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
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
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
    try {
      await this.scanOnce();
    } finally {
      // No idle thread holds memory between scans.
      await this.parser.close();
    }
  }

  private async scanOnce(): Promise<void> {
    const directory = await realpath(this.directory);
    const names = (await readdir(this.directory)).filter(isManifestName).sort();
    const present = new Set(names);
    let changed = false;
    for (const gone of [...this.files.keys()].filter((name) => !present.has(name))) {
      this.files.delete(gone);
      changed = true;
    }
    // A file that comes back is a new file: what was said about it is said again.
    for (const known of [this.reported, this.firstSeen]) {
      for (const gone of [...known.keys()].filter((name) => !present.has(name))) known.delete(gone);
    }
    this.retryAt = null;
    for (const name of names) changed = (await this.refreshFile(name, directory)) || changed;
    if (changed && !this.stopped) {
      // Delivered objects drop their raw form (the model keeps them). One
      // that must be delivered again, because the later file that redefined
      // it went away, is read back from its file first.
      for (const name of this.filesToReadBack()) {
        this.files.get(name)!.version = '';
        await this.refreshFile(name, directory);
      }
      await this.deliverDifferences();
    }
    this.armRetry();
  }

  /** Re-reads a file if it changed since last read; returns whether its state changed. */
  private async refreshFile(name: string, directory: string): Promise<boolean> {
    const file = path.join(this.directory, name);
    const known = this.files.get(name);
    let version: string;
    let quietFor: number;
    let text: string;
    try {
      const target = await this.readablePath(name, file, directory);
      if (target === null) return false;
      const stats = await stat(target, { bigint: true });
      if (!stats.isFile()) return false;
      version = versionOf(stats);
      if (known?.version === version) return false;
      quietFor = this.quietFor(name, version, Number(stats.mtimeMs));
      if (!this.readAsIs && quietFor < this.quietMs) return this.deferBy(this.quietMs - quietFor);
      text = await readFile(target, 'utf8');
      // Changed while being read: the text may mix two versions.
      if (versionOf(await stat(target, { bigint: true })) !== version) return this.deferBy(this.quietMs);
    } catch (err) {
      // Removed between readdir and here: the next scan sees it gone.
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT') this.reportOnce(name, `unreadable ${code}`, () => this.log.warn({ err, file }, 'cannot read manifest file; keeping its objects'));
      return false;
    }
    // Rewriting a file in place truncates it first and writes it in pieces.
    if (!this.readAsIs && looksCutShort(file, text) && quietFor < CUT_SHORT_QUIET_MS) return this.deferBy(CUT_SHORT_QUIET_MS - quietFor);
    const objects = await this.parseFile(name, file, text);
    // A file that does not parse (perhaps half-written) keeps its last good objects.
    this.files.set(name, { version, objects: objects ?? known?.objects ?? [] });
    return objects !== null;
  }

  /**
   * The path to read for a directory entry: the entry itself, or where its
   * symlink leads within the directory (a ConfigMap volume links every key
   * into its ..data folder). A link that dangles or leads out of the
   * directory is not read: it could expose any file on the node.
   */
  private async readablePath(name: string, file: string, directory: string): Promise<string | null> {
    if (!(await lstat(file)).isSymbolicLink()) return file;
    let target: string;
    try {
      target = await realpath(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      this.reportOnce(name, 'dangling', () => this.log.warn({ file }, 'manifest file is a dangling symlink; ignoring it'));
      return null;
    }
    const relative = path.relative(directory, target);
    if (relative === '..' || relative.startsWith(`..${path.sep}`) || path.isAbsolute(relative)) {
      this.reportOnce(name, 'outside', () => this.log.warn({ file }, 'manifest file links outside the manifests directory; not reading it'));
      return null;
    }
    // Reported again should the link break once more.
    for (const broken of ['dangling', 'outside']) this.reported.get(name)?.delete(broken);
    return target;
  }

  /** How long a file's current version has been left alone, by its mtime or by when this process first saw it. */
  private quietFor(name: string, version: string, mtimeMs: number): number {
    const now = Date.now();
    let seen = this.firstSeen.get(name);
    if (seen?.version !== version) {
      seen = { version, at: now };
      this.firstSeen.set(name, seen);
    }
    return Math.max(now - mtimeMs, now - seen.at);
  }

  /** Leaves a file as it was for now and has the directory looked at again after `ms`; returns that nothing changed. */
  private deferBy(ms: number): false {
    const at = Date.now() + ms;
    this.retryAt = this.retryAt === null ? at : Math.min(this.retryAt, at);
    return false;
  }

  private armRetry(): void {
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (this.retryAt === null || this.stopped) return;
    this.retryTimer = setTimeout(
      () => {
        this.retryTimer = null;
        this.scheduleScan();
      },
      Math.max(0, this.retryAt - Date.now()),
    );
  }

  /** Logs once per file what a rescan would otherwise log again and again. */
  private reportOnce(name: string, what: string, log: () => void): void {
    let said = this.reported.get(name);
    if (said === undefined) this.reported.set(name, (said = new Set()));
    if (said.has(what)) return;
    said.add(what);
    log();
  }

  /** The usable objects in a file, or null if the file is not valid YAML or JSON. */
  private async parseFile(name: string, file: string, text: string): Promise<ManifestObject[] | null> {
    let values: ParsedValue[];
    try {
      values = await this.parser.parse(file, text);
    } catch (err) {
      if (!(err instanceof ParseFailure)) throw err;
      this.log.warn({ file, reason: err.message }, 'manifest file does not parse; keeping its previous objects');
      return null;
    }
    const objects: ManifestObject[] = [];
    // Objects meant for kube-lb but written for another API version, or a
    // kind misspelt, are worth a warning; other kinds are merely noted.
    const misfits: string[] = [];
    const others: string[] = [];
    const turn = timeSlices();
    for (const { value, fingerprint } of values) {
      await turn();
      if (supportedKind(value) === null) {
        (looksMeantForKubeLb(value) ? misfits : others).push(describe(value));
        continue;
      }
      try {
        const ref = objectRef(value);
        objects.push({ id: `${ref.kind}/${ref.namespace}/${ref.name}`, ref, file, fingerprint, raw: value as RawObject });
      } catch (err) {
        if (!(err instanceof InvalidObjectError)) throw err;
        this.log.warn({ file, reason: err.reason }, `skipping invalid ${err.message}`);
      }
    }
    if (misfits.length > 0) {
      const reads = Object.entries(READ_KINDS).map(([kind, apiVersion]) => `${apiVersion} ${kind}`);
      this.reportOnce(name, `misfits ${JSON.stringify(misfits)}`, () =>
        this.log.warn({ file, objects: misfits }, `ignoring objects kube-lb does not read; it reads ${reads.join(', ')}`),
      );
    }
    if (others.length > 0) {
      this.reportOnce(name, `others ${JSON.stringify(others)}`, () => this.log.info({ file, objects: others }, 'ignoring objects of kinds kube-lb does not use'));
    }
    return objects;
  }

  /** Each object's definition in force: where files define one twice, the later file (by name) wins. */
  private definitions(): Map<string, ManifestObject> {
    const current = new Map<string, ManifestObject>();
    for (const name of [...this.files.keys()].sort()) {
      for (const object of this.files.get(name)!.objects) {
        const other = current.get(object.id);
        if (other !== undefined) {
          this.reportOnce(name, `twice ${object.id} ${other.file}`, () =>
            this.log.warn({ file: object.file, otherFile: other.file, object: object.id }, 'object defined twice; the later file wins'),
          );
        }
        current.set(object.id, object);
      }
    }
    return current;
  }

  /** Files with a definition to deliver again whose raw form was dropped. */
  private filesToReadBack(): Set<string> {
    const names = new Set<string>();
    for (const [id, object] of this.definitions()) {
      if (object.raw === null && this.delivered.get(id)?.fingerprint !== object.fingerprint) names.add(path.basename(object.file));
    }
    return names;
  }

  private async deliverDifferences(): Promise<void> {
    const sink = this.sink!;
    const current = this.definitions();
    const turn = timeSlices();
    for (const [id, object] of current) {
      await turn();
      const previous = this.delivered.get(id);
      if (previous?.fingerprint !== object.fingerprint) {
        if (object.raw === null) {
          // It could not be read back (its file changed or broke since): the sink keeps what it has.
          current.set(id, previous!);
          continue;
        }
        sink.upsert(object.raw, object.file);
      }
      object.raw = null;
    }
    for (const [id, { ref }] of this.delivered) {
      await turn();
      if (!current.has(id)) sink.delete(ref.kind, ref.namespace, ref.name);
    }
    this.delivered = current;
  }
}

/**
 * The client of the parser thread (manifest-parser.ts). The thread starts
 * with the first file a scan parses and ends with the scan; scans are
 * serial, so it has one request at a time.
 */
class ManifestParser {
  private worker: Worker | null = null;

  /** The file's values; rejects with a ParseFailure if it does not parse. */
  parse(file: string, text: string): Promise<ParsedValue[]> {
    const worker = (this.worker ??= new Worker(new URL('./manifest-parser.js', import.meta.url)));
    return new Promise((resolve, reject) => {
      const values: ParsedValue[] = [];
      const settle = (outcome: () => void): void => {
        worker.off('message', onReply).off('error', onError).off('exit', onExit);
        outcome();
      };
      const onReply = (reply: ParseReply): void => {
        if ('failure' in reply) return settle(() => reject(new ParseFailure(reply.failure)));
        values.push(...reply.values);
        if (reply.last) settle(() => resolve(values));
        else worker.postMessage('next' satisfies ParseRequest);
      };
      // The thread died, out of memory say: the file it was parsing is the likely cause.
      const onError = (err: NodeJS.ErrnoException): void => {
        this.worker = null;
        settle(() => reject(new ParseFailure(err.code === 'ERR_WORKER_OUT_OF_MEMORY' ? 'too large to parse' : `cannot be parsed (${err.name})`)));
      };
      const onExit = (): void => {
        this.worker = null;
        settle(() => reject(new Error('the manifest parser thread exited')));
      };
      worker.on('message', onReply).on('error', onError).on('exit', onExit);
      worker.postMessage({ file, text } satisfies ParseRequest);
    });
  }

  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = null;
    await worker?.terminate();
  }
}

function isManifestName(name: string): boolean {
  // Dot files are editor temporaries or Kubernetes ConfigMap-volume internals (..data).
  return !name.startsWith('.') && MANIFEST_EXTENSIONS.has(path.extname(name));
}

function versionOf(stats: { ino: bigint; size: bigint; mtimeNs: bigint }): string {
  return `${stats.ino}:${stats.size}:${stats.mtimeNs}`;
}

/** Whether a file may be a rewrite caught halfway: empty, or YAML ending mid-line. JSON cut short does not parse. */
function looksCutShort(file: string, text: string): boolean {
  return text === '' || (path.extname(file) !== '.json' && !text.endsWith('\n'));
}

/** A kind kube-lb reads with another apiVersion, or one of its kinds misspelt. */
function looksMeantForKubeLb(value: unknown): boolean {
  if (!isRecord(value) || typeof value.kind !== 'string') return true;
  const kind = value.kind.toLowerCase();
  return Object.keys(READ_KINDS).some((k) => k.toLowerCase() === kind || `${k.toLowerCase()}s` === kind);
}

/** "apiVersion kind namespace/name" for a log line, each part cut short. */
function describe(value: unknown): string {
  if (!isRecord(value)) return `a ${Array.isArray(value) ? 'list' : typeof value}, not a Kubernetes object`;
  const metadata = isRecord(value.metadata) ? value.metadata : {};
  const part = (v: unknown, otherwise: string): string => (typeof v !== 'string' ? otherwise : v.length > 100 ? `${v.slice(0, 97)}...` : v);
  return `${part(value.apiVersion, '(no apiVersion)')} ${part(value.kind, '(no kind)')} ${part(metadata.namespace, 'default')}/${part(metadata.name, '(no name)')}`;
}
