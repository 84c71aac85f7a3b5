// Names the servers send end up as directory entries; anything that is not one plain path
// component would let a hostile or buggy server escape the folder it lists, so it is dropped.

/** True when `name` is a single usable path component: not '', '.', '..', no '/', no NUL, <= 255 bytes. */
export function validName(name: unknown): name is string {
  if (typeof name !== 'string') return false;
  if (name === '' || name === '.' || name === '..') return false;
  if (name.includes('/') || name.includes('\0')) return false;
  return Buffer.byteLength(name, 'utf8') <= 255;
}
