// Mount-time checks that turn a wrong --server, --root or CA into one clear line before the drive
// exists (without them: a page of HTML as the error, or a drive whose every `ls` fails).
import { isRemoteError } from '../errors.js';
import type { Remote } from '../remote/types.js';
import { CliError } from './context.js';
import type { Target } from './target.js';

/** Codes that, at the first call of a mount, mean "this URL is not that service's API". */
const NOT_THE_SERVICE = new Set(['NOT_FOUND', 'BAD_RESPONSE', 'METHOD_NOT_ALLOWED']);

/** The first call to the service failed: says what is wrong with the setup when it can tell. */
export function explainFirstCall(e: unknown, t: Target): void {
  if (!isRemoteError(e)) return;
  const name = t.kind === 'maxxo' ? 'Maxxo' : 'vBoxxCloud';
  if (e.code === 'TLS_ERROR') {
    const hint = /WRONG_VERSION_NUMBER|PACKET_LENGTH/i.test(e.message)
      ? 'the server does not speak https on that port (http:// instead?)'
      : t.caFile ? `not trusted with the CA in ${t.caFile}` : 'for a server with a private CA, give --ca FILE (the PEM of the CA)';
    throw new CliError(`TLS to ${t.server} failed: ${e.message}; ${hint}`);
  }
  const status = e.status ?? 0;
  if (NOT_THE_SERVICE.has(e.code) || status === 404 || status === 405) {
    const where = e.method && e.path ? `${e.method} ${e.path} answered ${status ? `${status}: ` : ''}` : '';
    // one line: the server's text is cut short, a page never printed (http.ts summarizes HTML)
    const what = e.message.replace(/\s+/g, ' ').slice(0, 120);
    throw new CliError(`${t.server} does not answer like a ${name} server (${where}${what}); check --server`);
  }
}

/** The drive's top folder must exist: a vBoxx --root that names no root fails the mount now. */
export async function checkTop(remote: Remote, t: Target): Promise<void> {
  try {
    const top = await remote.stat('/');
    if (!top || top.type !== 'dir') throw new CliError(t.root !== undefined ? `--root ${t.root}: not a folder on the server` : 'the top folder of the account is missing');
  } catch (e) {
    if (e instanceof CliError) throw e;
    if (isRemoteError(e) && e.code === 'NOT_FOUND' && t.root !== undefined) throw new CliError(`--root ${t.root}: ${e.message}`);
    explainFirstCall(e, t);
    throw e;
  }
}
