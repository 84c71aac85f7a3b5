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
}

export interface ListResult {
  entries: RemoteEntry[];
  /** Opaque listing version for cheap revalidation (vBoxx `hash`). */
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

export interface Capabilities {
  /** read(path, offset, length) is available and cheap (HTTP Range). */
  rangedReads: boolean;
  /** list() accepts a hash and can answer "unchanged". */
  listingRevalidation: boolean;
  /** Entries carry a server revision (`rev`). */
  serverRevision: boolean;
  /** Entries carry a modification time. */
  mtime: boolean;
  /** stat() of many paths in one request (statMany). */
  batchStat: boolean;
  /** shareLink() is available. */
  shareLinks: boolean;
  /** The service can create empty folders (both can; kept for remotes that cannot). */
  emptyFolders: boolean;
  /** uploadMany() sends many files in one transfer, cheaper than one upload() each. */
  batchUpload?: boolean;
  /** upload() calls TransferOptions.onSend when the request that changes the server goes out. */
  reportsSend?: boolean;
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

export interface TransferOptions extends CallOptions {
  /** Called with the number of bytes transferred so far (monotonic). */
  onProgress?: (bytes: number) => void;
  /**
   * Uploads, from remotes with capabilities.reportsSend: called when the request that can change
   * the server leaves for it. Until then an abort takes the upload back for sure.
   */
  onSend?: () => void;
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

export interface Remote {
  readonly kind: 'maxxo' | 'vboxx' | 'memory';
  readonly capabilities: Capabilities;

  /** Children of a folder. Throws NotFound for a missing folder, NotADirectory for a file. */
  list(dir: string, opts?: CallOptions & { hash?: string }): Promise<ListResult>;
  /** One entry, or null when it does not exist. stat('/') is the top folder. */
  stat(path: string, opts?: CallOptions): Promise<RemoteEntry | null>;
  /** Many entries in one request where the service allows it (Maxxo /ops/filesize). */
  statMany?(paths: string[], opts?: CallOptions): Promise<(RemoteEntry | null)[]>;
  /** Ranged read (capabilities.rangedReads). May return fewer bytes only at end of file. */
  read?(path: string, offset: number, length: number, opts?: CallOptions): Promise<Buffer>;
  /**
   * Ranged read streamed to `sink` as the bytes arrive, so no range is ever whole in memory.
   * Chunks come in file order with their position; the next one only after the sink's promise
   * settled. A transfer cut short may start over at `offset` (the sink sees positions again).
   * An error thrown by the sink ends the read with that error. Resolves with the bytes of the
   * last run (fewer only at end of file) and, when the server says, the revision and size served
   * (the sink gets them with every chunk, so it can refuse bytes of an unexpected version).
   */
  readTo?(path: string, offset: number, length: number, sink: RangeSink, opts?: CallOptions): Promise<RangeRead>;
  /**
   * Whole-file download into localFile (created or truncated). Writes in place so that a reader
   * may follow the bytes as they arrive; onProgress reports how many are there.
   */
  download(path: string, localFile: string, opts?: TransferOptions): Promise<void>;
  /**
   * Many whole files in one transfer where the service's data plane allows it (Maxxo: one rsync
   * run for all of them). Each delivered file is complete at its localFile (created; the folders
   * exist). Resolves with the paths delivered: a missing or failed one is simply absent.
   */
  downloadMany?(items: { path: string; localFile: string }[], opts?: TransferOptions): Promise<string[]>;
  /** Upload localFile's bytes to path, creating or replacing it; creates missing parents. */
  upload(localFile: string, path: string, opts?: TransferOptions): Promise<RemoteEntry>;
  /**
   * Many uploads in one transfer where the data plane allows it (capabilities.batchUpload; Maxxo:
   * one rsync run). Resolves with one result per item, in order: the entry now on the server, or
   * that item's own error. An item gets its entry only when the transfer of its bytes succeeded;
   * items of a failed transfer are tried alone or get a retryable error, never a false success.
   */
  uploadMany?(items: { localFile: string; path: string }[], opts?: CallOptions): Promise<UploadResult[]>;
  /** Checks an upload of `size` bytes to `path` against the service's policy before any byte moves. */
  checkUpload?(path: string, size: number, opts?: CallOptions): Promise<void>;
  /** The parts of an upload policy known before a file is complete (services that have one). */
  uploadPolicy?: UploadPolicy;
  mkdir(path: string, opts?: CallOptions): Promise<void>;
  /** Rename/move. Throws AlreadyExists when `to` exists and the service will not replace it. */
  move(from: string, to: string, opts?: CallOptions): Promise<void>;
  /** Delete files or folders (folders recursively). */
  remove(paths: string[], opts?: CallOptions): Promise<void>;
  statfs(opts?: CallOptions): Promise<StatFs>;
  shareLink?(path: string, opts?: CallOptions): Promise<{ url: string; expires?: string | null }>;
  /**
   * The drive's cache lifetimes, for a client that caches server state of its own (Maxxo: the
   * rsync daemon's listings that give mtimes): kept within them, the drive's promise on how soon
   * it sees other clients' changes holds.
   */
  cacheTtls?(t: { attrTtlMs: number; dirTtlMs: number }): void;
  /**
   * For a service whose listings may carry a file's version (mtime) from older server state than
   * the listing's sizes (Maxxo: mtimes come from a separate, cached rsync listing): e (a cached
   * entry of path) with version information from server state no older than maxAgeMs. The drive
   * asks it before it serves cached content again, so that check is what bounds how long another
   * client's same-size change goes unseen. The last known version when the service cannot tell.
   */
  revalidate?(path: string, e: RemoteEntry, maxAgeMs: number, opts?: CallOptions): Promise<RemoteEntry>;
  /** Releases sockets and child processes. */
  close(): Promise<void>;
}

/**
 * What a service's policy says before any content exists, so that the program hears a refusal at
 * the first call that can know it (create or rename: the name; write: the size), not at close()
 * after the whole file was written. Answers may be cached by the service client.
 */
export interface UploadPolicy {
  /** Throws the service's refusal of any file at `path` because of its name. */
  checkName(path: string, opts?: CallOptions): Promise<void>;
  /** The largest file the service takes at `path`, in bytes; null when unlimited. */
  maxFileSize(path: string, opts?: CallOptions): Promise<number | null>;
}
