// AttrTable's local attributes (src/vfs/meta/attrs.ts): kept per path for the mount's life, moved
// with renames of files and folders (a replaced target's go), dropped with the path; checked
// against a plain map that rekeys by scanning every key (what the table did before it was indexed).
import test from 'ava';
import { AttrTable, type LocalAttrs } from '../../src/vfs/meta/attrs.js';
import { isUnder, rebase } from '../../src/vfs/paths.js';
import { rng } from './helpers.js';

test('local attributes follow random updates, creates, renames of files and trees and removals as a scanned map does', (t) => {
  const names = ['/a', '/a/b', '/a/b/c', '/a/bc', '/a/b/c/d', '/ab', '/x', '/x/a', '/x/a/b', '/y'];
  for (let seed = 1; seed <= 40; seed++) {
    const r = rng(seed);
    const pick = () => names[Math.floor(r() * names.length)]!;
    const table = new AttrTable();
    const model = new Map<string, LocalAttrs>();
    const log: string[] = [];
    for (let step = 0; step < 200; step++) {
      const p = pick();
      const op = Math.floor(r() * 5);
      if (op === 0) {
        table.update(p, { mtimeMs: step });
        model.set(p, { ...model.get(p), mtimeMs: step });
        log.push(`update ${p}`);
      } else if (op === 1) {
        const la = r() < 0.7 ? { perm: 0o600 + step } : undefined;
        table.setLocal(p, la);
        if (la) model.set(p, la); else model.delete(p);
        log.push(`set ${p} ${la ? 'mode' : 'none'}`);
      } else if (op === 2) {
        table.forget(p);
        model.delete(p);
        log.push(`forget ${p}`);
      } else {
        // a rename (of a file or of a tree): nothing may land inside itself
        const to = pick();
        if (to === p || isUnder(to, p)) continue;
        table.rekey(p, to);
        // what the target held is replaced, whether or not the moved tree brings its own
        for (const k of [...model.keys()]) if (k === to || isUnder(k, to)) model.delete(k);
        const moved = [...model].filter(([k]) => k === p || isUnder(k, p));
        for (const [k] of moved) model.delete(k);
        for (const [k, v] of moved) model.set(rebase(k, p, to), v);
        log.push(`rename ${p} ${to}`);
      }
      for (const n of names) {
        const got = table.localOf(n);
        const want = model.get(n);
        if (JSON.stringify(got) !== JSON.stringify(want)) {
          t.fail(`seed ${seed} after ${log.slice(-6).join('; ')}: ${n} has ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
          return;
        }
      }
      if (table.localCount !== model.size) { t.fail(`seed ${seed}: ${table.localCount} entries, expected ${model.size}`); return; }
    }
  }
  t.pass();
});

test('a file entry without a time shows the time of the version held when it is the same size, else the mount time', (t) => {
  const table = new AttrTable({ mtimeResolutionMs: 1000, modeBits: 0o111, setAttrs: async () => null });
  const ident = { name: 'f', type: 'file' as const, size: 10, mtimeMs: 1_500_000_000_000 };
  const held = { authoritative: false, size: 10, localMtime: 1_500_000_000_400, refs: 0, ident, unlinked: false, ownAttrs: undefined };
  // the listing's row was missing (no mtime): the version held tells it
  t.is(table.toAttr('/f', { name: 'f', type: 'file', size: 10 }, held).mtimeMs, 1_500_000_000_000);
  // another size: not the version held; the mount's time stands in (nothing better is known)
  const other = table.toAttr('/f', { name: 'f', type: 'file', size: 11 }, held).mtimeMs;
  t.not(other, 1_500_000_000_000);
  t.true(Math.abs(other - Date.now()) < 60_000);
  // an entry with a time of its own: that time
  t.is(table.toAttr('/f', { name: 'f', type: 'file', size: 10, mtimeMs: 1_600_000_000_000 }, held).mtimeMs, 1_600_000_000_000);
});
