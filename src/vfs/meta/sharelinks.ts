// Share links as the extended attribute user.cloudmount.share_link (getfattr -n): one link per
// path asked for, cached for the mount and forgotten when the path is deleted or moved.
import { NoXattr } from '../../errors.js';
import { Priority, type ShareLinks } from '../../remote/types.js';
import type { Ctx } from '../context.js';
import { isUnder } from '../paths.js';

export const SHARE_LINK_XATTR = 'user.cloudmount.share_link';

export class ShareLinkAttr {
  private readonly links = new Map<string, string>();

  constructor(
    private readonly ctx: Ctx,
    private readonly remote: ShareLinks | undefined,
    private readonly listed: boolean,
    /** Waits until path's pending content is on the server: a link to older bytes would share the wrong ones. */
    private readonly uploaded: (path: string) => Promise<void>,
  ) {}

  async get(path: string, name: string): Promise<Buffer> {
    const links = this.remote;
    if (name !== SHARE_LINK_XATTR || !links) throw new NoXattr(`no attribute ${name}`, { path });
    let url = this.links.get(path);
    if (!url) {
      await this.uploaded(path);
      const r = await this.ctx.bounded(`share link ${path}`, (signal) => links.shareLink(path, { signal, priority: Priority.interactive }));
      url = r.url;
      this.links.set(path, url);
    }
    return Buffer.from(url, 'utf8');
  }

  /**
   * Not listed by default: programs that copy every listed attribute (vim's write-rename, cp -a,
   * rsync -X, file managers) would read it, which creates a public share link of each file they
   * touch, and then fail setting it on the copy. `getfattr -n NAME` still works.
   */
  list(): string[] {
    return this.listed && this.remote ? [SHARE_LINK_XATTR] : [];
  }

  forget(path: string, tree: boolean): void {
    if (!tree) { this.links.delete(path); return; }
    for (const k of [...this.links.keys()]) if (k === path || isUnder(k, path)) this.links.delete(k);
  }
}
