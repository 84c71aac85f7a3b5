// vBoxxCloud: the typed API client and the drive (Remote) built on it.
export { VboxxClient, type VboxxClientConfig, type MetadataResult, type UploadOptions } from './client.js';
export { VboxxRemote, createVboxxRemote, type VboxxRemoteOptions } from './remote.js';
export { mapRoots, sanitizeRootName, pickRoot, type MappedRoot } from './roots.js';
export { parseExtensions, effectivePolicy, type EffectivePolicy } from './policy.js';
export type * from './wire.js';
export type * from './management-types.js';
