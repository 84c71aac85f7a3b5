// Maxxo client: the typed REST client and the Remote the drive uses.
export { MaxxoClient } from './client.js';
export type {
  MaxxoListRow, MaxxoSizeRow, MaxxoSlice, MaxxoSendSource, MaxxoContact, MaxxoQuota, MaxxoSettings,
  MaxxoSettingsUpdate, MaxxoNotification, MaxxoInboxMessage, MaxxoIdError, MaxxoCallOptions,
} from './client.js';
export { MaxxoRemote, createMaxxoRemote, type MaxxoRemoteOptions } from './remote.js';
