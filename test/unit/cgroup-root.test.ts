// Where the socket programs attach: the cgroup v2 mount in /proc/self/mounts,
// or --cgroup-root.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { cgroupRoot, socketCgroup } from '../../src/backends/ebpf/sockets.js';

describe('the cgroup v2 root', () => {
  it('is the cgroup2 mount, wherever the distribution puts it, with escaped characters read back', () => {
    const hybrid = 'tmpfs /sys/fs/cgroup tmpfs ro,nosuid 0 0\ncgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\ncgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n';
    assert.equal(cgroupRoot(hybrid), '/sys/fs/cgroup/unified');
    assert.equal(cgroupRoot('cgroup2 /sys/fs/cgroup cgroup2 rw,nsdelegate 0 0\n'), '/sys/fs/cgroup');
    assert.equal(cgroupRoot('none /run/my\\040cgroups cgroup2 rw 0 0\n'), '/run/my cgroups');
  });

  it('is null without a cgroup2 mount (cgroup v1 only)', () => {
    assert.equal(cgroupRoot('cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n'), null);
  });

  it('--cgroup-root must name a cgroup v2 file system, and the error says what to give', () => {
    assert.throws(() => socketCgroup('/tmp'), /--cgroup-root=\/tmp: not a cgroup v2 file system; give the host's cgroup v2 root/);
    assert.throws(() => socketCgroup('/nonexistent-kube-lb'), /--cgroup-root=\/nonexistent-kube-lb: .*no such file or directory.*; give the host's cgroup v2 root/);
    const root = cgroupRoot();
    assert.ok(root !== null, 'a cgroup v2 file system is mounted here');
    assert.equal(socketCgroup(root), root);
    assert.equal(socketCgroup(undefined), root);
  });
});
