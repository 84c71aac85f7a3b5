// The service's upload policy (vBoxx: excluded extensions, max file size), asked at the first
// call that can know, so the program hears EPERM / EFBIG there instead of at close(): a create or
// rename to an excluded name, a write or truncate past the size limit. The checks at close
// (Uploader.commitClose) and before each upload still hold when the policy is unreadable now.
//
// Owns: the cached size limit (refreshed in the background once it is POLICY_REFRESH_MS old).
import { isRemoteError } from '../../errors.js';
import { Priority } from '../../remote/types.js';
import { errText, type Ctx } from '../context.js';

/** How old the policy's size limit may get before a write asks for it again (in the background). */
const POLICY_REFRESH_MS = 30_000;

export class PolicyGate {
  private maxSize: { at: number; value: number | null } | undefined;
  private maxSizeP: Promise<number | null> | undefined;

  constructor(private readonly ctx: Ctx) {}

  /** Refuses a file name the service's policy excludes (nothing when the service has no policy). */
  async checkName(path: string): Promise<void> {
    const pol = this.ctx.remote.uploadPolicy;
    if (!pol) return;
    // from the remote's caches without a wait where it can (a refusal throws from there too)
    if (pol.checkNameCached?.(path)) return;
    try {
      await this.ctx.bounded(`policy check of ${path}`, (signal) => pol.checkName(path, { signal, priority: Priority.interactive }));
    } catch (err) {
      // the policy unreadable now: the checks before the upload still hold
      if (isRemoteError(err) && err.retryable) return;
      throw err;
    }
  }

  /** The policy's size limit for writes (null: none), refreshed in the background once it is old. */
  async maxFileSize(path: string): Promise<number | null> {
    const pol = this.ctx.remote.uploadPolicy;
    if (!pol) return null;
    const now = Date.now();
    const c = this.maxSize;
    if (c && now - c.at < POLICY_REFRESH_MS) return c.value;
    if (this.maxSizeP) return c ? c.value : this.maxSizeP;
    const p = this.maxSizeP = pol.maxFileSize(path, { priority: Priority.interactive }).then((value) => {
      this.maxSize = { at: Date.now(), value };
      return value;
    }, (err) => {
      // unknown now: the check at close and before the upload still hold
      this.ctx.log.debug(`policy size limit not readable: ${errText(err)}`);
      if (c) c.at = Date.now();
      return c?.value ?? null;
    }).finally(() => { this.maxSizeP = undefined; });
    // an old answer serves while the new one is on its way; only the first write waits
    return c ? c.value : p;
  }
}
