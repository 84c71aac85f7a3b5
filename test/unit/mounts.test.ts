// The one mount-table reader (src/util/mounts.ts): mountinfo's variable optional fields and its
// octal escapes, and the live table of this machine.
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findMount, isMounted, isMountedAsync, lazyUnmount, mountTable, parseMountinfo } from '../../src/util/mounts.js';

test('mountinfo: optional fields, escapes, the mount on top wins', (t) => {
  const text = [
    '22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw',
    '90 22 0:52 / /tmp/a\\040b rw,nosuid,nodev,relatime shared:50 master:3 - fuse.cloudmount cloudmount:acc\\054x rw,user_id=0',
    '91 22 0:53 / /tmp/c rw - fuse cloudmount:old rw',
    '92 91 0:54 / /tmp/c rw - fuse.cloudmount cloudmount:new rw',
    '',
  ].join('\n');
  const all = parseMountinfo(text);
  t.is(all.length, 4);
  t.deepEqual(all[1], { source: 'cloudmount:acc,x', target: '/tmp/a b', fstype: 'fuse.cloudmount', dev: '0:52' });
  t.is(findMount('/tmp/c', all)?.source, 'cloudmount:new');
  t.is(findMount('/tmp/a b', all)?.dev, '0:52');
  t.is(findMount('/tmp/a\\040b', all), undefined);
});

test('the live table: /proc is mounted, a fresh folder is not', async (t) => {
  if (process.platform !== 'linux') return t.pass();
  t.is(findMount('/proc')?.fstype, 'proc');
  t.true(mountTable().length > 1);
  const d = mkdtempSync(join(tmpdir(), 'cm-mounts-'));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  t.false(isMounted(d));
  t.false(await isMountedAsync(d));
  const r = await lazyUnmount(d);
  t.not(r.code, 0, 'unmounting a plain folder fails');
});
