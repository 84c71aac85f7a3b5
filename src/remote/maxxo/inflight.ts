// rsync's temp files of our own uploads, kept out of our listings.
//
// rsync's receiver writes each file as `.<name>.XXXXXX` in the file's own folder and renames it
// over <name> at the end. An /ops/list of that folder while one of our uploads runs shows that
// temp file (0 bytes, or partial), and the vfs caches the listing for dir_timeout: the mount then
// lists a file no program made (soak seeds 200375, 300133).
//
// Why a filter and not `--temp-dir`/`--partial-dir` outside the folder: the Maxxo text says nothing
// of the daemon's config, so a real slice may refuse those options (`refuse options`), and any
// temp folder would itself be a name inside the module, visible in the listing of its parent and
// left behind by a killed transfer. The temp names of our own transfers are known to us: a listing
// that ran while an upload of <name> into the folder was in flight drops the entries of rsync's
// temp pattern for <name>. Another client's in-flight rsync temp files are the server's truth and
// stay listed (we cannot tell them from a file named like that); so does a file of that pattern
// when no upload of ours of <name> overlapped the listing.
//
// A listing is matched against every upload that was in flight at any moment of its request (the
// temp file may be seen by the server just before our rsync renames it and ends), so uploads
// register for the whole run and each listing collects the names of those that overlap it.

/**
 * rsync cuts a long name in its temp name (get_tmpname: at most NAME_MAX - 9 bytes, fewer in a
 * folder path near PATH_MAX). A cut stem is accepted as ours when it is a long proper prefix.
 */
const CUT_STEM_MIN = 64;
const TMP_NAME = /^\.(.+)\.[A-Za-z0-9]{6}$/s;

/** True when `entry` is the name rsync gives its temp file while it receives `name`. */
export function isRsyncTempOf(entry: string, name: string): boolean {
  const m = TMP_NAME.exec(entry);
  if (!m) return false;
  const stem = m[1]!;
  return stem === name || (stem.length < name.length && Buffer.byteLength(stem) >= CUT_STEM_MIN && name.startsWith(stem));
}

interface Listing { dir: string; names: Set<string> }

export class InflightUploads {
  /** folder (wire form, '' = top) -> names being uploaded into it -> count */
  private readonly byDir = new Map<string, Map<string, number>>();
  private readonly listings = new Set<Listing>();

  /** An upload of dir/name starts; the returned function ends it. */
  begin(dir: string, name: string): () => void {
    let names = this.byDir.get(dir);
    if (!names) this.byDir.set(dir, names = new Map());
    names.set(name, (names.get(name) ?? 0) + 1);
    for (const l of this.listings) if (l.dir === dir) l.names.add(name);
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      const n = names!.get(name)! - 1;
      if (n > 0) names!.set(name, n); else names!.delete(name);
      if (names!.size === 0 && this.byDir.get(dir) === names) this.byDir.delete(dir);
    };
  }

  /** True while an upload of dir/name of ours runs (from its start until the server confirmed it). */
  has(dir: string, name: string): boolean {
    return this.byDir.get(dir)?.has(name) ?? false;
  }

  /**
   * Runs the listing request of dir; returns its answer and a filter that says whether an entry
   * name is the temp file of one of our uploads that overlapped the request.
   */
  async during<T>(dir: string, request: () => Promise<T>): Promise<{ result: T; ours: (entry: string) => boolean }> {
    const l: Listing = { dir, names: new Set(this.byDir.get(dir)?.keys() ?? []) };
    this.listings.add(l);
    try {
      const result = await request();
      const names = [...l.names];
      return { result, ours: (entry) => names.length > 0 && entry.startsWith('.') && names.some((n) => isRsyncTempOf(entry, n)) };
    } finally {
      this.listings.delete(l);
    }
  }
}
