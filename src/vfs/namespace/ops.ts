// Namespace changes: mkdir, rmdir, unlink, rename. A rename (a file's or a folder's) answers once
// journalled and the MoveQueue (moves.ts) sends it later (what the service refuses beforehand,
// EXDEV across vBoxx roots, is checked at once: checkMove; RENAME_NOREPLACE on the drive's view of
// the target); a folder's rename is journalled after what is pending at or below its names was
// sent. mkdir goes to the server before the call returns where the service makes folders one at a
// time (vBoxx). Where it makes them in batches (Maxxo), mkdir answers once journalled and the
// MkdirQueue (mkdirs.ts) sends the folders made meanwhile together; an rmdir before that cancels
// both. unlink and rmdir answer once their delete is journalled; the DeleteQueue (deletes.ts)
// sends them coalesced. Everything that reaches the server at or under a pending delete, at either
// name of a pending move (or below a moved folder), or below a pending mkdir, goes after it (see
// there); an unlink of a pending move's target takes the move back where it can (the server's
// file is deleted at its old name instead).
//
// Owns: no state of its own; it orders the state of the others. Ordering rules:
// - One namespace change at a time per path and subtree (Barriers.run), and upload tasks of the
//   paths involved wait at the barrier before they send (writeback: parked).
// - Before the server hears of the change, uploads of the paths involved are stopped: one that
//   sent nothing is aborted, one that is sending is waited for (Uploader.stop). Nothing is
//   overtaken: a delete is never followed by the upload of the old name, nor a rename by an
//   upload to the old name.
// - The journal is changed first: unlink/rmdir write a delete record (the DeleteQueue's), which
//   also cancels the pending upload (after a crash it must not come back); rename retargets pending
//   records (its move record does) before the local table, so a close() journaling meanwhile
//   records the new name. If the server refuses a folder's move when it is sent, what is ours
//   below the target goes back below the source (moveBack).
// - A change that reaches the server at once or on its own queue goes after the pending moves at,
//   above or below its paths (rmdir of a folder a file was renamed out of, mkdir at a file's old
//   name or below a renamed folder, an unlink below a renamed folder): they are sent first
//   (MoveQueue.settle, settleAbove).
// - Local-only content (never on the server, never attempted, shadowing nothing: WriteState.localOnly)
//   needs no server call. Content that shadows a server file (a temp file renamed over an uploaded
//   one, the save pattern) does: shadowsServer keeps the server's old copy in mind until our
//   upload replaces it, so a later unlink or rename of the path reaches the server too.
// - An unlinked file still open keeps its content (fetched whole first: once the server copy is
//   gone it cannot be fetched), under the local-only name libfuse gives it (keepOpenAs); so does
//   a file still open that a rename replaces.
// - A folder holding only such hidden names is empty for the listing, the server and the
//   ENOTEMPTY checks, but rmdir of it and a rename over it answer EBUSY (as NFS does for its .nfs
//   names): a path-bound backend (libfuse 2's high-level API) finds the open handle through the
//   folder's path, and once that folder is removed or replaced libfuse itself answers ENOENT to
//   every read, write, fsync of the handle and hands the last release no path at all
//   (native-notes/fuse.md). Moving the folder is fine: the hidden names move with it.
import type { RenameFlags } from '../api.js';
import { AlreadyExists, BadRequest, Busy, IsADirectory, NotADirectory, NotEmpty, NotFound } from '../../errors.js';
import { Priority, type RemoteEntry } from '../../remote/types.js';
import type { Ctx } from '../context.js';
import type { Obj } from '../content/obj.js';
import type { ContentStore } from '../content/store.js';
import type { AttrTable } from '../meta/attrs.js';
import type { MetaCache } from '../meta/cache.js';
import type { Lookup } from '../meta/lookup.js';
import { baseOf, isUnder, joinPath, normPath, parentOf } from '../paths.js';
import type { PolicyGate } from '../writeback/policy.js';
import type { Uploader } from '../writeback/uploader.js';
import type { AttrWriter } from '../writeback/attrs.js';
import type { Barriers } from './barriers.js';
import type { DeleteQueue } from './deletes.js';
import type { MkdirQueue } from './mkdirs.js';
import type { MoveQueue } from './moves.js';

export interface NamespaceDeps {
  ctx: Ctx;
  meta: MetaCache;
  lookups: Lookup;
  store: ContentStore;
  attrs: AttrTable;
  uploader: Uploader;
  /** Metadata-only changes: stopped like uploads before a namespace change, moved with it. */
  attrWriter: AttrWriter;
  barriers: Barriers;
  deletes: DeleteQueue;
  /** Mkdirs written back, where the service makes folders in batches (else mkdir goes at once). */
  mkdirs?: MkdirQueue | undefined;
  /** Renames of files written back. */
  moves: MoveQueue;
  policy: PolicyGate;
  /** Makes o's whole content local (an open file about to lose its server copy). */
  ensureWhole(o: Obj): Promise<void>;
  /** Share links of path (and below it, if tree) are no longer valid. */
  forgetShareLinks(path: string, tree: boolean): void;
  /** Throws ReadOnly on a read-only mount. */
  writable(): void;
}

/** A name of a folder as the drive shows it (NamespaceOps.children). */
export interface Kid { e: RemoteEntry; o?: Obj; path: string }

export class Namespace {
  private readonly ctx: Ctx;
  private readonly meta: MetaCache;
  private readonly lookups: Lookup;
  private readonly store: ContentStore;
  private readonly attrTable: AttrTable;
  private readonly uploader: Uploader;
  private readonly barriers: Barriers;
  private readonly policy: PolicyGate;
  private readonly deletes: DeleteQueue;
  private readonly moves: MoveQueue;

  constructor(private readonly deps: NamespaceDeps) {
    ({ ctx: this.ctx, meta: this.meta, lookups: this.lookups, store: this.store, attrs: this.attrTable, uploader: this.uploader,
      barriers: this.barriers, policy: this.policy, deletes: this.deletes, moves: this.moves } = deps);
  }

  private writable(): void {
    this.deps.writable();
  }

  private forgetShareLinks(path: string, tree: boolean): void {
    this.deps.forgetShareLinks(path, tree);
  }

  /** Forgets cached metadata (and share links) of path and everything below it. */
  private forgetTree(path: string, isDir = true): void {
    this.meta.forgetTree(path, isDir);
    this.forgetShareLinks(path, true);
  }

  async mkdir(path: string, mode: number): Promise<void> {
    path = normPath(path);
    this.writable();
    await this.lookups.parentDir(path);
    if (await this.lookups.lookup(path)) throw new AlreadyExists('already exists', { path });
    const mk = this.deps.mkdirs;
    mk?.check(path);
    // a folder deleted here a moment ago (rm -rf d; mkdir d) is gone from the server first, and
    // so is a file renamed away from this name (the server has it here until its move is sent)
    await this.deletes.settle([path]);
    await this.moves.settle([path]);
    // written back: journalled here, made on the server with the others made meanwhile (one
    // barrier: a rename of a folder above waits, and so does this for it)
    if (mk) {
      await this.barriers.run([path], async () => {
        // a rename or rmdir of a folder above may have ended while this waited for its barrier
        if ((await this.lookups.lookup(parentOf(path)))?.type !== 'dir') throw new NotFound('parent folder does not exist', { path });
        await mk.add(path);
      });
    }
    else await this.ctx.bounded(`mkdir ${path}`, (signal) => this.ctx.remote.mkdir(path, { signal, priority: Priority.interactive }));
    const now = Date.now();
    this.meta.setInParent(path, { name: baseOf(path), type: 'dir', size: 0, mtimeMs: now });
    this.meta.setEmptyDir(path);
    this.attrTable.setLocal(path, mode && (mode & 0o7777) !== 0o755 ? { perm: mode & 0o7777 } : undefined);
    // the new folder's own time is now, not when its write-back makes it on the server
    this.attrTable.dirChanged(path);
    this.attrTable.dirChanged(parentOf(path));
  }

  async rmdir(path: string): Promise<void> {
    path = normPath(path);
    this.writable();
    if (path === '/') throw new BadRequest('cannot remove the top folder', { path });
    const e = await this.lookups.existing(path);
    if (e.type !== 'dir') throw new NotADirectory('not a folder', { path });
    this.ctx.remote.checkRemove?.(path);
    await this.barriers.run([path], async () => {
      // the server deletes folders recursively: only a fresh listing may say "empty" (names
      // whose delete is pending count as gone: the folder's delete folds theirs)
      const kids = await this.children(path, true);
      if (kids.size > 0) throw new NotEmpty('folder is not empty', { path });
      this.refuseIfHoldsOpenHidden(path);
      // files renamed out of it leave it on the server first (its delete would take them along)
      await this.moves.settle([path]);
      // a send of the folder's times must not land after (or make again) the folder
      await this.deps.attrWriter.stop(path, true);
      // A folder made and removed before it was sent: nothing reaches the server, and the time its
      // mkdir gave it (a service that keeps folder times) is forgotten too; the delete record does
      // that for a folder the server has. Not durable: replayed, that time finds no folder
      // (Maxxo sends folder times with --existing), where a sync would cost every mkdir+rmdir.
      if (await this.deps.mkdirs?.cancel(path)) await this.uploader.cancelPath(path, false);
      else await this.deletes.add(path, true);
      this.forgetTree(path);
      this.store.forgetHiddenUnder(path);
      this.meta.setInParent(path, null);
      this.deps.attrWriter.forget(path);
      this.attrTable.forget(path);
      this.attrTable.dirChanged(parentOf(path));
    });
  }

  async unlink(path: string, opts: { keepOpenAs?: string } = {}): Promise<void> {
    path = normPath(path);
    this.writable();
    if (this.store.hidden.delete(path)) return;
    const e = await this.lookups.existing(path);
    if (e.type === 'dir') throw new IsADirectory('is a folder', { path });
    this.ctx.remote.checkRemove?.(path);
    await this.barriers.run([path], async () => {
      const o = this.store.objs.get(path);
      if (o) await this.uploader.stop(o);
      await this.deps.attrWriter.stop(path, false);
      // POSIX: an open file keeps its content after the unlink. Once the server copy is gone it
      // cannot be fetched any more, so the part not cached yet comes first.
      if (o && o.refs > 0 && !o.complete) await this.deps.ensureWhole(o);
      // In the journal first: after a crash the upload must not come back. A file the server
      // holds (or may hold) gets a delete record, which cancels the pending upload as well (the
      // target of a move not sent yet: the move is taken back, the server's file deleted instead).
      const localOnly = !!o && o.wb.localOnly;
      if (!(await this.releaseTarget(path))) {
        if (localOnly) await this.uploader.cancelPath(path);
        else {
          // the delete names the file where the drive shows it: a folder above it renamed, its move
          // not sent yet, gets there first (the delete queue sends on its own)
          await this.moves.settleAbove(path);
          await this.deletes.add(path, false);
        }
      }
      if (o) {
        this.store.detach(o);
        if (opts.keepOpenAs && o.refs > 0) this.store.hidden.set(normPath(opts.keepOpenAs), o);
      }
      this.uploader.forget(path);
      this.deps.attrWriter.forget(path);
      this.attrTable.forget(path);
      this.attrTable.dirChanged(parentOf(path));
      this.forgetShareLinks(path, false);
      this.meta.setInParent(path, null);
    });
  }

  async rename(from: string, to: string, flags: RenameFlags = {}): Promise<void> {
    from = normPath(from);
    to = normPath(to);
    this.writable();
    if (from === '/' || to === '/') throw new BadRequest('the top folder cannot be renamed', { path: from });
    const src = await this.lookups.existing(from);
    if (from === to) return;
    if (isUnder(to, from)) throw new BadRequest('cannot move a folder into itself', { path: to });
    await this.lookups.parentDir(to);
    if (src.type === 'file') await this.policy.checkName(to);
    const dst = await this.lookups.lookup(to);
    if (dst && flags.noReplace) throw new AlreadyExists('target exists (RENAME_NOREPLACE)', { path: to });
    if (dst) {
      if (src.type === 'dir' && dst.type !== 'dir') throw new NotADirectory('target is not a folder', { path: to });
      if (src.type !== 'dir' && dst.type === 'dir') throw new IsADirectory('target is a folder', { path: to });
      if (dst.type === 'dir' && (await this.children(to, true)).size > 0) throw new NotEmpty('target folder is not empty', { path: to });
      if (dst.type === 'dir') this.refuseIfHoldsOpenHidden(to);
    }
    try {
      await this.barriers.run([from, to], () => this.renameLocked(from, to, src, dst, !!flags.noReplace));
    } finally {
      // the uploads stopped for the move go on at the new names (at the old ones if it failed);
      // found by name or by the trees' index, not by a walk of all local content
      const stopped = src.type === 'dir' ? [...this.store.under(to), ...this.store.under(from)] : [this.store.objs.get(to), this.store.objs.get(from)];
      for (const o of stopped) if (o && this.store.localObjs.has(o)) this.uploader.scheduleIfIdle(o);
      // and so do the metadata changes stopped for it
      this.deps.attrWriter.resume(to);
      this.deps.attrWriter.resume(from);
    }
  }

  private async renameLocked(from: string, to: string, src: RemoteEntry, dst: RemoteEntry | null, noReplace: boolean): Promise<void> {
    // nothing is below a file: its object by name, not a walk of every cached one
    const moving = src.type === 'dir' ? this.store.under(from) : [this.store.objs.get(from)].filter((o): o is Obj => !!o);
    const replaced = this.store.objs.get(to);
    for (const o of moving) await this.uploader.stop(o);
    if (replaced) await this.uploader.stop(replaced);
    await this.keepReplaced(replaced, to);
    await this.deps.attrWriter.stop(from, true);
    if (dst) await this.deps.attrWriter.stop(to, true);
    const so = this.store.objs.get(from);
    const srcLocalOnly = src.type === 'file' && !!so && so.wb.localOnly;
    // what the service refuses whatever the state (EXDEV across vBoxx roots) is the program's error now
    if (!srcLocalOnly) this.ctx.remote.checkMove?.(from, to);
    // what the server holds at the target after a move that sends nothing (see shadowsServer)
    const dstOnServer = replaced ? replaced.wb.serverMayHold : !!dst;
    // a move onto `to` not sent yet is taken back (its file deleted on the server instead) or sent
    if (dst?.type === 'file') await this.releaseTarget(to);
    // src was looked up before the barrier: an upload that ended meanwhile made the file clean,
    // and a local entry (local mtime) left in the listing would not match its server identity,
    // so the next open dropped the cached bytes and downloaded them again (soak seed 800303)
    const moved = so && src.type === 'file' && !so.authoritative && so.ident ? so.ident : src;
    if (!srcLocalOnly) {
      const dir = src.type === 'dir';
      if (dir) {
        // What the other queues and earlier moves hold at or below either name reaches the server
        // first: their records name paths this move changes (a folder made or a name deleted below
        // it would show at the old name only, and the listing overlay places a moved file by the
        // name it was moved to). What comes later below the new name goes after the move: uploads
        // and metadata sends wait at its gate, moves are sent in order, deletes and mkdirs there
        // settle it first.
        await this.deps.mkdirs?.settle([from, to], true);
        await this.moves.settle([from, to], true);
        await this.deletes.settle([from, to], true);
        if (dst) this.store.forgetHiddenUnder(to);
      } else await this.moves.settleTo(to);
      // an open meanwhile may have given the target a handle (its number still names it)
      await this.keepReplaced(this.store.objs.get(to), to);
      // written back: the move record retargets the journal, then the local table moves
      const rec = this.moves.add(from, to, moved, dstOnServer, noReplace, dir);
      if (replaced) this.store.detach(replaced);
      this.rekey(from, to, moving);
      await rec;
      this.renamed(from, to, src, dst, moved);
      return;
    }
    // content the server never had: only the journal and the local view change
    const replacedPending = replaced ? this.uploader.pendingRecord(to) : undefined;
    if (dst) await this.uploader.cancelPath(to);
    // an open meanwhile may have given the target a handle (its number still names it)
    await this.keepReplaced(this.store.objs.get(to), to);
    const jr = this.uploader.retarget(from, to);
    // local view first, so a close() journaling meanwhile already records the new name
    if (replaced) {
      // detached only once the journal moved (below): its mode and times are taken before the
      // table's entry for `to` becomes the moved file's
      replaced.ownAttrs = this.attrTable.copyOf(to);
      this.store.unregister(replaced);
    }
    this.rekey(from, to, moving);
    try {
      await jr;
    } catch (err) {
      this.rekey(to, from, moving);
      await this.uploader.retarget(to, from).catch(() => {});
      if (replaced) {
        // the target was not replaced after all: its own pending content is kept, and its mode
        // and times (the rename took them off the name)
        this.attrTable.setLocal(to, replaced.ownAttrs);
        replaced.ownAttrs = undefined;
        this.store.register(replaced);
        if (replacedPending) await this.uploader.putBack(replacedPending).catch(() => {});
      }
      throw err;
    }
    if (replaced) this.store.detach(replaced);
    if (dstOnServer) {
      this.uploader.shadowsServer(so!);
      // its upload lands on the server's file, whose mode the service would keep (Maxxo without
      // -E): the new file's own mode goes with it, the default too (else a script it replaced
      // left it executable)
      if (src.type === 'file') this.attrTable.ownMode(to);
    }
    this.renamed(from, to, src, dst, moved);
  }

  /**
   * A file replaced while open keeps its content for its handles, as an unlinked one does: the part
   * not cached comes first, while the server still has it (our move or upload replaces it). Asked
   * at the start of the rename and again after its last wait before the target is detached (then
   * nothing awaits in between), of the object at the target then: an open that came while the
   * rename waited has bound a handle to the target (its number still named the path; the object
   * may be one the open made, after an eviction), and a handle that got no bytes read the
   * replacing version from the server. Its failure is the open handles' (they fail to read
   * later), not the rename's.
   */
  private async keepReplaced(replaced: Obj | undefined, to: string): Promise<void> {
    if (!replaced || replaced.refs === 0 || replaced.complete) return;
    await this.deps.ensureWhole(replaced).catch((e) =>
      this.ctx.log.warn(`rename onto ${to}: the replaced file is still open and its content could not be fetched first: ${(e as Error).message}`));
  }

  /**
   * The server refused a move (another client put something at `to`): it keeps the file or folder
   * at `from`, so what the drive holds of ours at or below `to` (content not uploaded yet, local
   * attributes, names of open deleted files) goes back to `from`, in the journal too, where its
   * uploads find the server's file or folder (and never replace what another client put at `to`).
   * Runs where the refusal is handled, before the uploads waiting for the move wake. Undefined when
   * something of ours was made at `from` meanwhile: then nothing moves back.
   */
  moveBack(from: string, to: string): Promise<void> | undefined {
    if (this.store.under(from).length > 0) return undefined;
    const moving = this.store.under(to);
    const jr = this.uploader.retarget(to, from);
    this.rekey(to, from, moving);
    this.forgetTree(to);
    this.forgetTree(from);
    for (const o of moving) this.uploader.scheduleIfIdle(o);
    this.deps.attrWriter.resume(from);
    return jr;
  }

  /** The caches and folder times after a rename: `to` shows `moved`, `from` is gone. */
  private renamed(from: string, to: string, src: RemoteEntry, dst: RemoteEntry | null, moved: RemoteEntry): void {
    this.forgetTree(from, src.type === 'dir');
    this.forgetTree(to, src.type === 'dir' || dst?.type === 'dir');
    this.meta.setInParent(from, null);
    this.meta.setInParent(to, { ...moved, name: baseOf(to) });
    this.attrTable.dirChanged(parentOf(from));
    if (parentOf(to) !== parentOf(from)) this.attrTable.dirChanged(parentOf(to));
  }

  /**
   * The file shown at path is the target of a move not sent yet and is deleted or replaced now:
   * true when the move was taken back (recorded: the server's file is deleted at its old name
   * instead, and at path too where the rename replaced a file there), false when there was none
   * or it had to be sent first (the caller deletes path as usual).
   */
  private async releaseTarget(path: string): Promise<boolean> {
    if (!this.moves.to(path)) return false;
    const m = this.moves.withdraw(path, (from) => !this.store.objs.has(from) && !this.uploader.pendingRecord(from) && !this.deps.attrWriter.has(from) && !this.deletes.hides(from));
    if (!m) {
      await this.moves.settleTo(path);
      return false;
    }
    // the delete record ends the move and what was pending at its target (its journal line comes
    // first: alone it is an unlink of the renamed file, nothing of it comes back)
    await Promise.all([this.deletes.add(m.from, false, m.uid), ...(m.replaces ? [this.deletes.add(path, false)] : [])]);
    return true;
  }

  /** EBUSY while a file unlinked but still open lives in dir under its hidden name (see the header). */
  private refuseIfHoldsOpenHidden(dir: string): void {
    if (this.store.hidden.size === 0) return;
    for (const [name, o] of this.store.hidden) {
      if (isUnder(name, dir) && o.refs > 0) throw new Busy('a file deleted while open is still in use in this folder', { path: dir });
    }
  }

  /** Moves local state (objects, local attributes, failures) from `from` to `to`. */
  private rekey(from: string, to: string, objs: Obj[]): void {
    this.store.move(objs, from, to);
    this.attrTable.rekey(from, to);
    this.uploader.rekey(from, to);
    this.deps.attrWriter.rekey(from, to);
  }

  /**
   * Children of dir as the drive shows them: server listing plus local-only files, each with its
   * full path. The paths of a listing are made once and kept with it: a path built anew per
   * readdir is a concatenated string that every map keyed by path (objects, local attributes,
   * inode numbers) flattens and hashes again, ~40 % of the drive's CPU in a warm `find`.
   */
  async children(dir: string, force = false): Promise<Map<string, Kid>> {
    const d = await this.meta.listing(dir, force);
    let memo = this.listingPaths.get(d.entries);
    if (!memo || memo.dir !== dir) this.listingPaths.set(d.entries, memo = { dir, paths: new Map() });
    const out = new Map<string, Kid>();
    for (const [name, e] of d.entries) {
      let p = memo.paths.get(name);
      if (p === undefined) memo.paths.set(name, p = joinPath(dir, name));
      const o = this.store.objs.get(p);
      out.set(name, { e, o, path: p });
    }
    // names of ours the server does not list yet (every object with local changes is registered
    // under its path, so the folder's own objects are all there is to look at)
    for (const o of this.store.objsIn(dir)) {
      if (!o.unlinked && this.store.localObjs.has(o) && o.path !== '/') {
        const name = baseOf(o.path);
        out.set(name, { e: out.get(name)?.e ?? this.store.localEntry(o), o, path: o.path });
      }
    }
    return out;
  }

  /** Full paths of a listing's names, by the listing's entry map (see children). */
  private readonly listingPaths = new WeakMap<Map<string, RemoteEntry>, { dir: string; paths: Map<string, string> }>();
}
