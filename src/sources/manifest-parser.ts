// Parses manifest files on a worker thread (see ManifestParser in
// manifests.ts): parsing a large file takes seconds, which on the main
// thread would stall health probes and scrapes meanwhile. This module is
// the worker's entry point: it answers a file with its first batch of
// values, each `next` with the following batch, or the file with `failure`,
// the reason in words that never quote the file.
import { createHash } from 'node:crypto';
import path from 'node:path';
import { parentPort } from 'node:worker_threads';
import { parseAllDocuments, YAMLError } from 'yaml';
import { isRecord } from '../model/objects.js';

/** A file to parse, or `next` for the next batch of the last file's values. */
export type ParseRequest = { file: string; text: string } | 'next';

/** One value of a file, with a digest of its content: unchanged objects are not delivered again. */
export interface ParsedValue {
  value: unknown;
  fingerprint: string;
}

export type ParseReply = { values: ParsedValue[]; last: boolean } | { failure: string };

/**
 * Values per reply: the main thread takes a reply in one go, so each must be
 * quick to take. It asks for the next when it has taken one: replies sent
 * ahead would all be taken at once.
 */
const BATCH = 500;
/** Kubernetes objects are a few levels deep; anything far deeper is hostile or broken. */
const MAX_DEPTH = 64;

/** Why a file cannot be used, in words that never quote the file. */
class UnusableFileError extends Error {}

// This module runs only as the worker: manifests.ts imports its types alone.
// It runs at the main thread's priority: at a lower one, a changed file went
// unread for seconds on a busy machine.
const port = parentPort!;

/** The last file's values not sent yet. */
let unsent: unknown[] = [];

port.on('message', (request: ParseRequest) => {
  if (request !== 'next') {
    try {
      unsent = parseDocuments(request.file, request.text);
    } catch (err) {
      port.postMessage({ failure: parseFailure(err) } satisfies ParseReply);
      return;
    }
  }
  const batch = unsent.splice(0, BATCH).map((value) => ({ value, fingerprint: createHash('sha1').update(JSON.stringify(value)).digest('base64') }));
  port.postMessage({ values: batch, last: unsent.length === 0 } satisfies ParseReply);
});

/**
 * The objects in a manifest file, with `kind: List` documents unwrapped as
 * `kubectl get -o yaml` prints them. JSON is YAML too, but JSON.parse reads
 * a large file in a fraction of the YAML parser's time and memory.
 */
function parseDocuments(file: string, text: string): unknown[] {
  const documents = path.extname(file) === '.json' ? [JSON.parse(text) as unknown] : yamlDocuments(text);
  // Everything downstream (fingerprints, the model) recurses into objects.
  for (const document of documents) assertShallow(document);
  return documents.flatMap((value) => {
    if (isRecord(value) && value.apiVersion === 'v1' && value.kind === 'List') {
      if (!Array.isArray(value.items)) throw new UnusableFileError('kind: List without an items list');
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

function assertShallow(document: unknown): void {
  const stack: [unknown, number][] = [[document, 0]];
  while (stack.length > 0) {
    const [value, depth] = stack.pop()!;
    if (typeof value !== 'object' || value === null) continue;
    if (depth >= MAX_DEPTH) throw new UnusableFileError(`nested more than ${MAX_DEPTH} levels deep`);
    for (const child of Object.values(value)) stack.push([child, depth + 1]);
  }
}

/** Why a file does not parse, without quoting it: it may not be a manifest at all, but a secret. */
function parseFailure(err: unknown): string {
  if (err instanceof UnusableFileError) return err.message;
  if (err instanceof YAMLError) {
    const at = err.linePos?.[0];
    return at === undefined ? `YAML error ${err.code}` : `YAML error ${err.code} at line ${at.line}, column ${at.col}`;
  }
  if (err instanceof SyntaxError) {
    // V8 quotes the text around the error; only the position is kept.
    const at = /at position \d+(?: \(line \d+ column \d+\))?/.exec(err.message);
    return at === null ? 'not valid JSON' : `not valid JSON ${at[0]}`;
  }
  if (err instanceof RangeError) return 'too large or too deeply nested to parse';
  return `cannot be parsed (${(err as Error).name})`;
}
