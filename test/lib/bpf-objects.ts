// Other builds of kube-lb's BPF object, for the tests of map migration: the
// sources as an earlier commit had them, or as today's with an edit (a
// smaller map). Built as the Makefile builds build/bpf/kube_lb.bpf.o.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { projectRoot } from '../../src/native/index.js';
import { requireCommand } from './preconditions.js';

function run(cmd: string, args: string[], opts: { cwd?: string; input?: Buffer } = {}): Buffer {
  try {
    return execFileSync(cmd, args, { ...opts, stdio: ['pipe', 'pipe', 'pipe'] });
  } catch (err) {
    const { stderr, message } = err as { stderr?: Buffer; message: string };
    throw new Error(`${cmd} ${args.join(' ')} failed: ${stderr?.toString().trim() || message}`);
  }
}

/** Compiles <dir>/bpf/kube_lb.bpf.c into <dir>/kube_lb.bpf.o with the Makefile's flags. */
function compile(dir: string): string {
  requireCommand('clang', 'apt-get install clang');
  const object = path.join(dir, 'kube_lb.bpf.o');
  const multiarch = run('gcc', ['-dumpmachine']).toString().trim();
  run('clang', ['-O2', '-g', '-target', 'bpf', '-Wall', '-Werror', `-I/usr/include/${multiarch}`, '-c', path.join(dir, 'bpf', 'kube_lb.bpf.c'), '-o', object]);
  return object;
}

/** The object as `commit` built it, from the sources in git history (a full clone has them). */
export function objectAtCommit(commit: string, dir: string): string {
  requireCommand('git', 'apt-get install git');
  try {
    run('git', ['-C', projectRoot, 'cat-file', '-e', `${commit}^{commit}`]);
  } catch (err) {
    throw new Error(`precondition: commit ${commit} is not in the git history of ${projectRoot}; this test needs a full clone (git fetch --unshallow)`, { cause: err });
  }
  run('tar', ['-x', '-C', dir], { input: run('git', ['-C', projectRoot, 'archive', commit, 'bpf']) });
  return compile(dir);
}

/** Today's object with `edit` applied to one header of bpf/include (a smaller map, say). */
export function editedObject(dir: string, header: string, edit: (text: string) => string): string {
  fs.cpSync(path.join(projectRoot, 'bpf'), path.join(dir, 'bpf'), { recursive: true });
  const file = path.join(dir, 'bpf', 'include', header);
  const before = fs.readFileSync(file, 'utf8');
  const after = edit(before);
  if (after === before) throw new Error(`the edit of bpf/include/${header} changed nothing: the test no longer matches the sources`);
  fs.writeFileSync(file, after);
  return compile(dir);
}
