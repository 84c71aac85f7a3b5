// The contract between the FUSE adapter (fuse/) and the core (vfs/). Everything here is in
// path terms, FUSE-free. Failures are thrown as the typed errors of src/errors.ts
// (NotFound, AlreadyExists, NotEmpty, IsADirectory, NotADirectory, PolicyFileTooLarge, ...);
// fuse/errno.ts is the one table that turns their codes into errno values.
import type { Logger } from '../log.js';

export interface Attr {
  type: 'file' | 'dir';
  size: number;
  /** Permission bits only (e.g. 0o644); the adapter adds S_IFREG/S_IFDIR. */
  perm: number;
  mtimeMs: number;
  ctimeMs: number;
  atimeMs: number;
  nlink: number;
  /**
   * Stable inode number of the path for this mount (root = 1), kept across renames. Mount with
   * `use_ino` and pass it as st_ino so that programs comparing st_ino before and after open
   * (vim's E949 "file changed while writing") never see it change when the kernel forgets and
   * looks up a node again.
   */
  ino?: number;
}

export interface FsStats {
  bsize: number;
  frsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  favail: number;
  namemax: number;
}

export interface UploadFailure {
  path: string;
  /**
   * What failed: the upload of the path (when absent), or its delete, mkdir or rename (`path` the
   * target), written back too.
   */
  op?: 'upload' | 'delete' | 'mkdir' | 'move';
  error: string;
  attempts: number;
  atMs: number;
}

export interface DriveStatus {
  /** Uploads, renames and deletes not yet confirmed by the server. */
  pending: number;
  /** Bytes of those pending uploads. */
  pendingBytes: number;
  /** Of `pending`, the deletes not yet confirmed by the server. */
  pendingDeletes?: number;
  /** Of `pending`, the folders made but not yet confirmed by the server. */
  pendingMkdirs?: number;
  /** Of `pending`, the renames of files not yet confirmed by the server. */
  pendingMoves?: number;
  /** Of `pending`, the changes of times or mode alone (folder times our own changes moved among them). */
  pendingAttrs?: number;
  failures: UploadFailure[];
  /** Things the drive did on its own that a user should know of (e.g. a folder recreated). */
  notices?: DriveNotice[];
  cacheBytes: number;
  dirtyBytes: number;
  /** When the oldest change still pending was first seen pending (ms since the epoch; within a status poll). */
  oldestPendingMs?: number;
  /** The link to the service (remotes that report it): retrying or offline, since when, why. */
  link?: { state: 'ok' | 'retrying' | 'offline'; sinceMs: number; error?: string };
  /** Upload bytes sent since the mount, of uploads in flight too (moves within one big file). */
  sentBytes?: number;
  /** Of pendingBytes, the bytes already sent by the uploads in flight. */
  sendingBytes?: number;
  /**
   * The inode table: numbers held (paths seen and not dropped), how many the kernel holds
   * references to, how many open folder listings hold, numbers dropped since the mount (the
   * libfuse 3 backend drops those the kernel forgot).
   */
  inodes?: { inodes: number; counted: number; pinned: number; dropped: number; invalidations?: number };
  /**
   * Diagnostics since the mount (nothing decides on them): reads of cached content served from
   * the memory of recent writes/fetches or from the cache file, device flushes of the journal in
   * lazy mode, and what the remote counts (Remote.counters: requests, retries, rsync runs ...).
   */
  counters?: { reads: { memory: number; file: number }; journalSyncs: number; remote?: Record<string, number> };
  /** FUSE requests since the mount by op (libfuse3 backend): all the kernel sent, those that reached JS. */
  fuse?: { received: Record<string, number>; toJs: Record<string, number>; nativeAnswered: number; attrSlotHits?: number; latency?: Record<string, { n: number; handoffUs: number; totalUs: number }> };
}

export interface DriveNotice {
  path: string;
  message: string;
  atMs: number;
}

export interface FlushResult {
  /** Journal records (uploads) still not confirmed by the server after the flush. */
  pending: number;
  /** The uploads that stay pending, each with its last error. */
  failed: UploadFailure[];
}

export interface VfsOptions {
  /** Identifies the account: cache and journal live under cacheDir/<accountId>/. */
  accountId: string;
  /** Default: $XDG_CACHE_HOME/cloudmount or ~/.cache/cloudmount. */
  cacheDir: string;
  /** Upper bound of cached clean content (bytes); dirty data is never evicted. */
  cacheMaxBytes: number;
  attrTtlMs: number;
  dirTtlMs: number;
  negativeTtlMs: number;
  /** Initial read-ahead window (doubles on sequential reads up to readAheadMaxBytes). */
  readAheadBytes: number;
  readAheadMaxBytes: number;
  /** Parallel ranged reads per file. */
  readParallel: number;
  /** Delay between close() and the start of the upload; 0 = upload before close() returns. */
  writebackDelayMs: number;
  /**
   * close() returns once the journal record is on the disk, not only in the kernel (power loss
   * then loses nothing closed). Default false: records reach the disk within a second, group-
   * committed; a crash of cloudmount loses nothing either way (see journal.ts).
   */
  syncClose?: boolean;
  readOnly: boolean;
  uid: number;
  gid: number;
  /** Upper bound for one vfs operation that waits on the server (then EIO / Timeout). */
  opTimeoutMs: number;
  log: Logger;
  /** Granularity of ranged fetches and of the cached-range bookkeeping (default 256 KiB). */
  readBlockBytes?: number;
  /** Ranged remotes: a file up to this size is fetched whole with one request at its first read (default 8 MiB; 0 = off). */
  readWholeMaxBytes?: number;
  /** Attempts per upload before it is reported as failed (default 5). */
  uploadAttempts?: number;
  /** First retry delay of a failed upload, doubling per attempt (default 500 ms). */
  uploadBackoffMs?: number;
  /**
   * Deletes are written back (namespace/deletes.ts): a batch goes to the server once no delete
   * came for deleteIdleMs (default 100), at most deleteMaxDelayMs (default 2000) after its first.
   */
  deleteIdleMs?: number;
  deleteMaxDelayMs?: number;
  /**
   * Where the service makes folders in batches (Maxxo), mkdirs are written back
   * (namespace/mkdirs.ts): a batch goes once no mkdir came for mkdirIdleMs (default 300), at most
   * mkdirMaxDelayMs (default 2000) after its first, or at once when something waits for it.
   */
  mkdirIdleMs?: number;
  mkdirMaxDelayMs?: number;
  /**
   * Renames (of files and folders) are written back (namespace/moves.ts): a batch goes once no rename came for
   * moveIdleMs (default 300), at most moveMaxDelayMs (default 2000) after its first, or at once
   * when something waits for it (an upload or delete of either name, fsync of a folder).
   */
  moveIdleMs?: number;
  moveMaxDelayMs?: number;
  /**
   * listxattr names user.cloudmount.share_link (default false: programs copying all attributes
   * would create a public link of every file they copy; getxattr by name works either way).
   */
  listShareLinkXattr?: boolean;
  /**
   * Small-file prefetch: when a program opens a file of a listed folder for reading, up to this
   * many of the folder's other files are fetched in the background (default 1000; 0 = off)...
   */
  prefetchFiles?: number;
  /** ...each at most this big (default 2 MiB)... */
  prefetchFileMaxBytes?: number;
  /** ...and at most this many bytes per folder (default 64 MiB; never more than half the free cache). */
  prefetchBytes?: number;
  /** Subfolder listings fetched in the background after a program listed a folder (default 64; 0 = off). */
  prefetchDirs?: number;
  /**
   * At start: the top folder's listing and its subfolders' (up to prefetchDirs) fetched in the
   * background, as rclone's --vfs-refresh does for a whole tree, so the first walk into the drive
   * finds its first two levels listed. Default true (the mount's -o no_warm_start turns it off).
   */
  warmStart?: boolean;
  /**
   * Names looked up one by one in a folder not listed yet: after this many stats within the listing
   * TTL the folder is listed instead (one call answers every sibling, and the small-file prefetch
   * can start). Default 4; 0 = never.
   */
  listAfterStats?: number;
  /**
   * The first name looked up in a folder not listed yet also lists the folder, in parallel: names
   * looked up while that listing is on its way wait for it (a rename's missing target, a program's
   * next file) instead of one round trip each. Not for folders whose last listing had more entries
   * than this (default 5000; 0 = off, as is listAfterStats 0).
   */
  speculativeListMaxEntries?: number;
}

/** A time a program sets (utimensat): milliseconds since the epoch (fractions keep the ns), or the clock's now. */
export type TimeChange = number | 'now';

/** What a setattr changes; absent = left as it is (utimensat's UTIME_OMIT). */
export interface SetAttrChanges {
  size?: number;
  mode?: number;
  /** Accepted and ignored (neither service has owners), after the node was checked to exist. */
  uid?: number;
  gid?: number;
  atime?: TimeChange;
  mtime?: TimeChange;
}

/** rename(2)'s renameat2 flags the drive understands. */
export interface RenameFlags {
  /** RENAME_NOREPLACE: fail with EEXIST when the target exists. */
  noReplace?: boolean;
}

/** An inode number (stable for the mount, root = 1) with what the drive shows for it. */
export type InoAttr = Attr & { ino: number };

/** One name of a folder listing with its attributes. */
export interface DirEntry { name: string; attr: Attr }

/** Bytes of a file as they are in the drive's cache file (readExtent): `length` bytes at `offset` of `fd`. */
export interface FileExtent {
  fd: number;
  offset: number;
  length: number;
}

/**
 * The vfs addressed by inode number, for the libfuse 3 backend: the vfs's own inode table (the one
 * st_ino comes from) is THE table, with the kernel's lookup counts kept in it. Every entry this
 * returns from lookup/create/mkdir counts one kernel reference; readdirplus entries are counted
 * by the caller through counted() for the ones it sent; forget() takes them away.
 */
/** What the kernel should forget: an inode's attributes and cached data (and a folder's cached listing), or a name's entry. */
export type Invalidation = { ino: number } | { parent: number; name: string };

export interface InodeApi {
  /**
   * fn is told when the vfs learns that the server's copy changed under something the kernel
   * holds (a listing or stat answer differing from the one before): the backend then tells the
   * kernel (notify_inval_*), which lets attribute and entry timeouts be long. undefined: stop.
   * fn must not block: it is called from within vfs calls.
   */
  onInvalidate(fn: ((x: Invalidation) => void) | undefined): void;
  lookup(parent: number, name: string): Promise<InoAttr>;
  /** lookup with null for a name that does not exist: no exception on the path of every file a program makes. */
  find(parent: number, name: string): Promise<InoAttr | null>;
  forget(ino: number, n: number): void;
  counted(ino: number, n?: number): void;
  getattr(ino: number, fh?: number): Promise<InoAttr>;
  /** The attributes of ino as far as the caches know them now, without asking the server (undefined: not known). */
  cachedAttr(ino: number): InoAttr | undefined;
  setattr(ino: number, changes: SetAttrChanges, fh?: number): Promise<InoAttr>;
  opendir(ino: number): Promise<number>;
  /** The folder's listing is still the one last served through readdir (fresh, nothing changed since). */
  listingUnchanged(ino: number): boolean;
  releasedir(ino: number, fh: number): Promise<void>;
  /** The folder's entries with their attributes (and inode numbers), plus the folder's and its parent's numbers. */
  /** fh: the open folder handle; its listing's numbers stay valid until its next listing or releasedir. */
  readdir(ino: number, fh?: number): Promise<{ self: number; parent: number; entries: { name: string; attr: InoAttr }[] }>;
  /** keepCache: the content the kernel may have cached from earlier opens is still what the drive holds.
   *  noFlush: flush of this handle has nothing to do (read-only), so close() need not wait for one. */
  open(ino: number, flags: number): Promise<{ fh: number; keepCache: boolean; noFlush: boolean }>;
  create(parent: number, name: string, mode: number, flags: number): Promise<{ fh: number; attr: InoAttr }>;
  mkdir(parent: number, name: string, mode: number): Promise<InoAttr>;
  /** An open file stays readable and writable through its handles, and is not uploaded again. */
  unlink(parent: number, name: string): Promise<void>;
  rmdir(parent: number, name: string): Promise<void>;
  rename(parent: number, name: string, newParent: number, newName: string, flags?: RenameFlags): Promise<void>;
  read(fh: number, buf: Buffer, length: number, position: number): Promise<number>;
  /**
   * read() without the copy: the bytes are made present and their place in the cache file is
   * answered, for a reader that takes them from there itself. The fd stays the drive's: read it
   * at once (or a duplicate of it); it may be closed when the file leaves the cache.
   */
  readExtent(fh: number, length: number, position: number): Promise<FileExtent>;
  write(fh: number, buf: Buffer, length: number, position: number): Promise<number>;
  flush(fh: number): Promise<void>;
  release(fh: number): Promise<void>;
  fsync(fh: number, datasync: boolean): Promise<void>;
  /** fsync of a folder: its names' deletes (written back) are on the server; a refused one fails it once. */
  fsyncdir?(ino: number): Promise<void>;
  statfs(): Promise<FsStats>;
  access(ino: number, mode: number): Promise<void>;
  getxattr(ino: number, name: string): Promise<Buffer>;
  listxattr(ino: number): Promise<string[]>;
  setxattr(ino: number, name: string, value: Buffer, flags: number): Promise<void>;
  removexattr(ino: number, name: string): Promise<void>;
}

export interface VfsApi {
  getattr(path: string): Promise<Attr>;
  /** getattr with null where nothing is (other failures still throw). */
  stat(path: string): Promise<Attr | null>;
  /** getattr from the caches alone (undefined: it would have to ask the server). */
  statCached(path: string): Attr | undefined;
  fgetattr(path: string, fh: number): Promise<Attr>;
  /** Names plus the attributes of each, so `ls -l` costs one listing call. */
  readdir(path: string): Promise<DirEntry[]>;
  opendir(path: string): Promise<number>;
  releasedir(path: string, fh: number): Promise<void>;
  /** flags as open(2) (O_RDONLY/O_WRONLY/O_RDWR, O_TRUNC, O_APPEND...). Returns a handle. */
  open(path: string, flags: number): Promise<number>;
  create(path: string, mode: number, flags: number): Promise<number>;
  /** Fills buf[0..n) from position; returns n (0 at end of file). */
  read(path: string, fh: number, buf: Buffer, length: number, position: number): Promise<number>;
  write(path: string, fh: number, buf: Buffer, length: number, position: number): Promise<number>;
  flush(path: string, fh: number): Promise<void>;
  release(path: string, fh: number): Promise<void>;
  fsync(path: string, fh: number, datasync: boolean): Promise<void>;
  /** fsync of a folder: its names' deletes (written back) are on the server; a refused one fails it once. */
  fsyncdir?(path: string): Promise<void>;
  truncate(path: string, size: number): Promise<void>;
  ftruncate(path: string, fh: number, size: number): Promise<void>;
  /**
   * keepOpenAs: the file is deleted on the server, but its open handles keep reading and writing
   * its content under this local-only name (never listed nor uploaded) until unlink(keepOpenAs)
   * or the last release. libfuse 2 "hides" an unlinked open file by renaming it (.fuse_hidden*).
   */
  unlink(path: string, opts?: { keepOpenAs?: string }): Promise<void>;
  mkdir(path: string, mode: number): Promise<void>;
  rmdir(path: string): Promise<void>;
  rename(from: string, to: string, flags?: RenameFlags): Promise<void>;
  statfs(path: string): Promise<FsStats>;
  utimens(path: string, atimeMs: number, mtimeMs: number): Promise<void>;
  /** utimensat with each time set, 'now', or left alone. */
  setTimes(path: string, times: { atime?: TimeChange; mtime?: TimeChange }): Promise<void>;
  chmod(path: string, mode: number): Promise<void>;
  access(path: string, mode: number): Promise<void>;
  getxattr(path: string, name: string): Promise<Buffer>;
  listxattr(path: string): Promise<string[]>;
  setxattr(path: string, name: string, value: Buffer, flags: number): Promise<void>;
  removexattr(path: string, name: string): Promise<void>;
  /** The same drive addressed by inode number (the libfuse 3 backend). */
  readonly inodes: InodeApi;

  /** Replays the write-back journal left by an earlier run; called once before the mount goes live. */
  start(): Promise<void>;
  /**
   * Waits until every pending upload reached the server or used up its retry budget (then it
   * stays in the journal and is listed in the result). retryFailed false: skip uploads whose
   * current content already used up its budget.
   */
  flushAll(opts?: { signal?: AbortSignal; retryFailed?: boolean }): Promise<FlushResult>;
  status(): DriveStatus;
  /**
   * flushAll (without trying again what already used up its budget), then release caches and the
   * remote; what is still pending stays in the journal (logged). `force` skips the flush.
   */
  close(opts?: { force?: boolean }): Promise<void>;
}
