// The one interface the drive (vfs/) uses to reach a storage service.
// Paths are mount-relative POSIX paths: "/" is the top of the drive, "/a/b.txt" a file in it.
// Components are plain names (never "", ".", "..", nor containing "/" or NUL): clients drop
// or reject anything else the server sends, so vfs can trust every name it is handed.

export type EntryType = 'file' | 'dir';

export interface RemoteEntry {
  /** Single path component. */
  name: string;
  type: EntryType;
  /** Bytes; 0 for folders when the service does not say. */
  size: number;
  /** Modification time in ms since the epoch, when the service reports one. */
  mtimeMs?: number;
  /** Server revision of the content, when the service has one (vBoxx `rev`). */
  rev?: string;
  /**
   * When the server last wrote the content (ms), where it says so apart from mtimeMs (vBoxx
   * `modified`): a move keeps it while it may change `rev`, so with the size it tells "the same
   * bytes, moved" from "new bytes".
   */
  written?: number;
  /** Permission bits the service holds for the entry (only the bits of fileMeta.modeBits mean anything). */
  mode?: number;
}

/** A change of a file's metadata alone (no new content): what setAttrs sends. */
export interface AttrChange {
  mtimeMs?: number;
  mode?: number;
}

export interface ListResult {
  entries: RemoteEntry[];
  /**
   * Opaque listing version (vBoxx `hash`). Only remotes that revalidate listings give one: passed
   * back to list(), it may answer `unchanged`.
   */
  hash?: string;
  /** True when the caller passed `hash` and the server answered "not modified": entries is empty then. */
  unchanged?: boolean;
}

export interface StatFs {
  /** Total bytes the account may use; null when unlimited. */
  total: number | null;
  /** Bytes in use. */
  used: number;
}

/**
 * A time as both services keep it: whole seconds (rsync's file lists and vBoxx `client_mtime`).
 * Every comparison with a time read back, and every time reported for a file we just wrote, goes
 * through this one rounding, or a set time would look changed by the server on the next listing.
 */
export const toWholeSecond = (ms: number): number => Math.floor(ms / 1000) * 1000;

/**
 * What the service keeps of a file beyond its bytes. Present when upload() keeps
 * TransferOptions.mtimeMs as the file's mtime and entries report it back (vBoxx `client_mtime`):
 * a time a program set survives a remount. Absent, times and mode live for the mount.
 */
export interface FileMetadata {
  /** Granularity of the file mtimes the service keeps, in ms (vBoxx: whole seconds, 1000). */
  mtimeResolutionMs?: number;
  /**
   * The permission bits the service holds for files (default 0: none). Bits outside it are
   * answered as the default (0644 files, 0755 folders) before and after a remount alike, so a
   * chmod of them is accepted without effect (as rclone does).
   */
  modeBits?: number;
  /** setAttrs needs the file's content (vBoxx: a metadata change is an upload of the same bytes). */
  attrsNeedContent?: boolean;
  /**
   * The service keeps folder mtimes (Maxxo: the daemon's filesystem) and setAttrs takes a
   * folder's; each change inside a folder moves its mtime there, as POSIX says.
   */
  folderTimes?: boolean;
  /**
   * Changes a file's metadata without new content, the cheapest way the service has. Remotes with
   * attrsNeedContent use localFile when given (the whole content the caller believes is on the
   * server, revision `rev`, written at `written`, with mtime `serverMtimeMs` there), else fetch
   * the content into `scratch` first.
   * Resolves with the entry now on the server, or null when the file is gone, its content
   * changed on the server since, or localFile is not the server's version any more (written here
   * since: its upload carries the change); then nothing was changed.
   * `folder`: the caller changes a folder's time; null when path is no folder now (another client
   * put a file there: its time is not ours to change).
   */
  setAttrs(path: string, attrs: AttrChange, opts?: CallOptions & { localFile?: string; rev?: string; written?: number; serverMtimeMs?: number; scratch?: string; folder?: boolean }): Promise<RemoteEntry | null>;
}

/** Priority classes for the request queue: higher runs first. */
export const Priority = {
  interactive: 10,
  normal: 5,
  background: 0,
} as const;

export interface CallOptions {
  signal?: AbortSignal;
  priority?: number;
}

export interface ListOptions extends CallOptions {
  /** The hash of the caller's cached listing: an unchanged folder answers `unchanged`. */
  hash?: string;
  /**
   * Called, where the service names a folder's entries before the rest of its answer is in
   * (Maxxo: names from the API, mtimes from a daemon listing that may take an rsync run), with
   * those names: enough to tell a name is not there.
   */
  onNames?: (names: ReadonlySet<string>) => void;
  /**
   * Asked to answer lookups of names in the folder (a path walk going through it), not for a
   * program's listing: the remote may leave out what it would gather ahead for a walk below the
   * folder (Maxxo: a daemon listing of the folder alone, not two levels).
   */
  forLookups?: boolean;
}

export interface TransferOptions extends CallOptions {
  /** Uploads: the file's mtime to keep (remotes with fileMeta). */
  mtimeMs?: number;
  /** Uploads: the permission bits to keep (those of fileMeta.modeBits). */
  mode?: number;
  /** Called with the number of bytes transferred so far (monotonic). */
  onProgress?: (bytes: number) => void;
  /**
   * Downloads: the size the caller expects (its listing's). A remote may fetch a small file whole
   * and replace localFile with it instead of writing in place (readers then see it at the end).
   */
  sizeHint?: number;
  /**
   * Uploads: called when the request that can change the server leaves for it (again on a retry);
   * until then an abort takes the upload back for sure. A remote that cannot tell calls it first.
   */
  onSend?: () => void;
  /**
   * Uploads: localFile's bytes, already read (small files). A remote may send them instead of
   * opening and reading the file again (vBoxx: no stat, open, read and close on the threadpool).
   */
  data?: Buffer;
}

/** Gets each chunk with its position and what the answer said about the content it comes from. */
export type RangeSink = (chunk: Buffer, pos: number, served: RangeServed) => void | Promise<void>;

export interface RangeServed {
  /** Revision of the content the bytes belong to (vBoxx `rev`), when the server says. */
  rev?: string;
  /** Size of the file the bytes belong to, when the server says. */
  size?: number;
}

export interface RangeRead extends RangeServed {
  bytes: number;
}

/** One item's outcome of uploadMany. */
export type UploadResult = { entry: RemoteEntry; error?: undefined } | { entry?: undefined; error: unknown };

/**
 * An optional capability is an optional member: present means the service has it (and cheaply);
 * absent, the drive does without (`remote.ranged?.readTo(...)`).
 */
export interface Remote {
  /** The service, for messages: 'maxxo', 'vboxx' (test doubles name themselves). */
  readonly kind: string;

  /** Children of a folder. Throws NotFound for a missing folder, NotADirectory for a file. */
  list(dir: string, opts?: ListOptions): Promise<ListResult>;
  /** One entry, or null when it does not exist. stat('/') is the top folder. */
  stat(path: string, opts?: CallOptions): Promise<RemoteEntry | null>;
  /** Many entries in one request where the service allows it (Maxxo /ops/filesize). */
  readonly batchStat?: BatchStat;
  /**
   * list() of a path that turns out to be a file, or missing, costs about what stat() does and
   * fails cleanly (NotADirectory, NotFound) with no side effect (vBoxx: one /metadata request
   * either way): the drive may list a name it looks up before it knows it is a folder. Not Maxxo:
   * there it is two API calls and an rsync run.
   */
  readonly listBeforeType?: boolean;
  /**
   * Whether path is likely a folder, told with no request (Maxxo: from a daemon listing of its
   * parent kept for mtimes, else by the name having no extension): the drive may list it while
   * its lookup is on its way, as it does for any name where listBeforeType. A wrong guess costs a
   * listing that fails (NotADirectory), nothing else.
   */
  likelyFolder?(path: string): boolean;
  /** Reads of byte ranges, where they are cheap (HTTP Range). */
  readonly ranged?: RangedReads;
  /**
   * Whole-file download into localFile (created or truncated). Writes in place so that a reader
   * may follow the bytes as they arrive; onProgress reports how many are there. Resolves with the
   * version the bytes are of where the data plane tells it (Maxxo: rsync -t), which may be newer
   * than any listing: the file can be replaced between a listing and its download.
   */
  download(path: string, localFile: string, opts?: TransferOptions): Promise<DownloadedVersion | void>;
  /**
   * Many whole files in one transfer where the service's data plane allows it (Maxxo: one rsync
   * run for all of them). Each delivered file is complete at its localFile (created; the folders
   * exist). Resolves with the paths delivered: a missing or failed one is simply absent.
   */
  downloadMany?(items: { path: string; localFile: string }[], opts?: TransferOptions): Promise<string[]>;
  /** Upload localFile's bytes to path, creating or replacing it; creates missing parents. */
  upload(localFile: string, path: string, opts?: TransferOptions): Promise<RemoteEntry>;
  /** Many uploads in one transfer, cheaper than one upload() each (Maxxo: one rsync run). */
  readonly batchUpload?: BatchUpload;
  /** Times and mode the service keeps (vBoxx client_mtime), and a change of them alone. */
  readonly fileMeta?: FileMetadata;
  /** Checks an upload of `size` bytes to `path` against the service's policy before any byte moves. */
  checkUpload?(path: string, size: number, opts?: CallOptions): Promise<void>;
  /**
   * checkUpload from what the remote has cached, without a wait: true when checked (a refusal
   * throws), false when it must ask the server (caches old, the quota close).
   */
  checkUploadCached?(path: string, size: number): boolean;
  /** The parts of an upload policy known before a file is complete (services that have one). */
  readonly uploadPolicy?: UploadPolicy;
  mkdir(path: string, opts?: CallOptions): Promise<void>;
  /**
   * Folders made many at a time (Maxxo: one rsync run for all of them). Where present, the drive
   * writes mkdirs back (vfs/namespace/mkdirs.ts) instead of calling mkdir() before answering.
   */
  readonly batchMkdir?: BatchMkdir;
  /**
   * Rename/move. Throws AlreadyExists when `to` exists and the service will not replace it.
   * Resolves with the entry now at `to` where the service answers with it (vBoxx: a moved file
   * gets a new revision, and the drive's cached bytes of it stay valid only if it learns which).
   */
  move(from: string, to: string, opts?: CallOptions): Promise<RemoteEntry | void>;
  /**
   * move() onto an existing file (or empty folder) replaces it instead of refusing (Maxxo): a
   * rename with RENAME_NOREPLACE asks for the target first.
   */
  readonly moveReplaces?: boolean;
  /**
   * Refusals of a move known without asking the server (vBoxx: between roots, EXDEV; a root).
   * Renames of files are written back: what is refused here is the program's error at once.
   */
  checkMove?(from: string, to: string): void;
  /**
   * How many paths one remove() sends as one request (Maxxo: /ops/delete with many file[]);
   * absent: one request per path.
   */
  readonly removeBatchMax?: number;
  /**
   * Refusals of a delete known without asking the server (vBoxx: a root at the top of the drive).
   * Deletes are written back: what is refused here is the program's error at once, not later.
   */
  checkRemove?(path: string): void;
  /** Delete files or folders (folders recursively). */
  remove(paths: string[], opts?: CallOptions): Promise<void>;
  statfs(opts?: CallOptions): Promise<StatFs>;
  /** Public links to files (vBoxx). */
  readonly shareLinks?: ShareLinks;
  /** Version information that listings may carry from older server state (Maxxo mtimes). */
  readonly revalidation?: Revalidation;
  /** Releases sockets and child processes. */
  close(): Promise<void>;
  /** The server stopped answering (requests fail fast until a probe gets an answer). */
  readonly offline?: boolean;
  /** What the transfers are doing, for status and progress (remotes wrapped by observeRemote). */
  activity?(): RemoteActivity;
  /**
   * Diagnostics: what this remote did since it was made (requests, retries, logins, rsync runs
   * ...), by name. Shown in `status` (DriveStatus.counters), read by tests and the bench;
   * nothing in the drive decides on them.
   */
  counters?(): Record<string, number>;
}

/** Link state and upload counters (see remote/observed.ts). */
export interface RemoteActivity {
  /** retrying: the last transfer or change failed with a retryable error and none succeeded since. */
  state: 'ok' | 'retrying' | 'offline';
  /** When that state began (ms since the epoch). */
  sinceMs: number;
  /** The failure behind retrying/offline. */
  error?: string;
  /** Upload bytes sent since the start, the ones of uploads in flight included (monotonic). */
  sentBytes: number;
  /** Bytes sent so far of the uploads in flight. */
  sendingBytes: number;
}

export interface BatchMkdir {
  /** Refusals known without asking the server (a name the service does not take): thrown at once. */
  check(path: string): void;
  /**
   * Makes the folders (given parents first; each parent exists on the server or is made earlier
   * in the same call). A folder already there counts as made. One answer per path, in order:
   * undefined when made, else the error (retryable or a refusal). Throws when the call as a
   * whole failed (every path then has that error).
   */
  mkdirMany(paths: string[], opts?: CallOptions): Promise<(unknown | undefined)[]>;
}

export interface StatOptions extends CallOptions {
  /**
   * Called, where the service tells what each path is before the rest of its answer is in (Maxxo:
   * types and sizes from the API, mtimes from a daemon listing that may take an rsync run), with
   * those entries (without times), in the order of the paths.
   */
  onTypes?: (entries: readonly (RemoteEntry | null)[]) => void;
}

export interface BatchStat {
  /** One entry (or null) per path, in order. */
  statMany(paths: string[], opts?: StatOptions): Promise<(RemoteEntry | null)[]>;
}

export interface RangedReads {
  /**
   * Ranged read streamed to `sink` as the bytes arrive, so no range is ever whole in memory.
   * Chunks come in file order with their position; the next one only after the sink's promise
   * settled. A transfer cut short may start over at `offset` (the sink sees positions again).
   * An error thrown by the sink ends the read with that error. Resolves with the bytes of the
   * last run (fewer only at end of file) and, when the server says, the revision and size served
   * (the sink gets them with every chunk, so it can refuse bytes of an unexpected version).
   */
  readTo(path: string, offset: number, length: number, sink: RangeSink, opts?: CallOptions): Promise<RangeRead>;
  /**
   * The sink is done with these chunks (the very objects it got) and nothing keeps a view of
   * them: the remote may read later bodies into their memory. Optional both ways: a remote
   * without it allocates per body, a sink that never calls it leaves them to the collector.
   */
  recycle?(chunks: readonly Buffer[]): void;
}

export interface BatchUpload {
  /**
   * Resolves with one result per item, in order: the entry now on the server, or that item's own
   * error. An item gets its entry only when the transfer of its bytes succeeded; items of a failed
   * transfer are tried alone or get a retryable error, never a false success.
   */
  uploadMany(items: { localFile: string; path: string; mtimeMs?: number; mode?: number }[], opts?: CallOptions): Promise<UploadResult[]>;
}

/**
 * For a service whose listings may carry a file's version (mtime) from older server state than
 * the listing's sizes (Maxxo: mtimes come from a separate, cached rsync listing).
 */
/** What a download delivered: its size, and its mtime where the data plane carries one. */
export interface DownloadedVersion {
  size: number;
  mtimeMs?: number;
}

export interface Revalidation {
  /**
   * The drive's cache lifetimes, for a client that caches server state of its own: kept within
   * them, the drive's promise on how soon it sees other clients' changes holds.
   */
  cacheTtls(t: { attrTtlMs: number; dirTtlMs: number }): void;
  /**
   * e (a cached entry of path) with version information from server state no older than maxAgeMs.
   * The drive asks it before it serves cached content again, so that check is what bounds how
   * long another client's same-size change goes unseen. The last known version when the service
   * cannot tell.
   */
  revalidate(path: string, e: RemoteEntry, maxAgeMs: number, opts?: CallOptions): Promise<RemoteEntry>;
}

export interface ShareLinks {
  shareLink(path: string, opts?: CallOptions): Promise<{ url: string; expires?: string | null }>;
}

/**
 * What a service's policy says before any content exists, so that the program hears a refusal at
 * the first call that can know it (create or rename: the name; write: the size), not at close()
 * after the whole file was written. Answers may be cached by the service client.
 */
export interface UploadPolicy {
  /** Throws the service's refusal of any file at `path` because of its name. */
  checkName(path: string, opts?: CallOptions): Promise<void>;
  /** checkName from what the remote has cached: true when checked (a refusal throws), false when it must ask the server. */
  checkNameCached?(path: string): boolean;
  /** The largest file the service takes at `path`, in bytes; null when unlimited. */
  maxFileSize(path: string, opts?: CallOptions): Promise<number | null>;
}
