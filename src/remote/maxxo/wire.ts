// Mount paths as Maxxo names them.
import { InvalidName } from '../../errors.js';
import { validName } from '../names.js';
import { pathParts } from '../url.js';

/** Mount path -> Maxxo path ("/" for the top). Refuses components that are not plain names. */
export function toWire(path: string): string {
  const parts = pathParts(path);
  for (const p of path.split('/')) {
    if (p === '..' || p.includes('\0')) throw new InvalidName('invalid path component', { path });
  }
  for (const p of parts) if (!validName(p)) throw new InvalidName('invalid path component', { path });
  return parts.length ? parts.join('/') : '/';
}
