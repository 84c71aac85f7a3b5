// The lazy journal's device flush runs beside the appends: a close() must not wait behind a flush
// that the file system makes slow (measured 0.35-0.46 s under a large writeback). Its own file:
// the test holds every FileHandle.datasync of this worker process at a gate.
import test from 'ava';
import { promises as fsp, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Journal } from '../../src/vfs/journal.js';
import { sleep, tempDir } from './helpers.js';

interface Gate { open(err?: Error): void; restore(): void; calls: number }

async function gateDatasync(dir: string): Promise<Gate> {
  const probe = await fsp.open(join(dir, 'probe'), 'w');
  const proto = Object.getPrototypeOf(probe) as { datasync(this: fsp.FileHandle): Promise<void> };
  await probe.close();
  const real = proto.datasync;
  let release: ((err?: Error) => void) | null = null;
  let held: Promise<Error | undefined> = new Promise((r) => { release = r; });
  const gate: Gate = {
    calls: 0,
    open(err?: Error) {
      const r = release!;
      held = new Promise((rr) => { release = rr; });
      r(err);
    },
    restore() { proto.datasync = real; },
  };
  proto.datasync = async function (this: fsp.FileHandle) {
    gate.calls++;
    const err = await held;
    if (err) throw err;
    return real.call(this);
  };
  return gate;
}

const records = (file: string) => readFileSync(file, 'utf8').split('\0')[0]!.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { t: string; uid?: string });

test('journal, lazy sync: appends go on while a flush is held; only its waiters wait, and a failed flush fails only them', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'journal');
  const j = new Journal(file, 1000, { syncDelayMs: 60_000 });
  await j.open();
  const gate = await gateDatasync(dir);
  const base = gate.calls;

  await j.upload({ uid: 'a', path: '/a', id: 'a', size: 1, data: Buffer.from('a') });
  let flushed = false;
  const f1 = j.flushed().then(() => { flushed = true; });
  // the flush is now held; closes of other files go on and are written (a kill -9 keeps them)
  for (let i = 0; i < 50; i++) await j.upload({ uid: `u${i}`, path: `/f${i}`, id: `i${i}`, size: 0 });
  await j.done('a');
  t.is(gate.calls - base, 1, 'one flush started');
  t.false(flushed, 'its waiter still waits');
  t.is(records(file).filter((r) => r.t === 'u').length, 51, 'the appends after it are in the file');

  // a second waiter needs a flush that started after its records: not the held one
  let flushed2 = false;
  const f2 = j.flushed().then(() => { flushed2 = true; });
  gate.open();
  await f1;
  t.true(flushed);
  await sleep(20);
  t.false(flushed2, 'the held flush did not cover the records written after it began');
  t.is(gate.calls - base, 2, 'a second flush began for them');
  gate.open();
  await f2;
  t.is(j.syncs, 2);

  // a failing flush: its waiter hears the error, appends still succeed, the next flush covers all
  await j.upload({ uid: 'b', path: '/b', id: 'b', size: 0 });
  const f3 = j.flushed();
  await j.upload({ uid: 'c', path: '/c', id: 'c', size: 0 });
  gate.open(new Error('EIO: injected'));
  await t.throwsAsync(f3, { message: /injected/ });
  const f4 = j.flushed();
  gate.open();
  await f4;
  await j.close();
  t.is(gate.calls - base, 4, 'close had nothing left to flush');
  gate.restore();

  const j2 = new Journal(file);
  const pending = await j2.open();
  t.deepEqual(pending.map((p) => p.uid).sort(), ['b', 'c', ...Array.from({ length: 50 }, (_, i) => `u${i}`)].sort());
  await j2.close();
});
