// Every command of `cloudmount`, in the order help lists them.
import type { CmdDef } from './args.js';
import { mountCommands } from './cmd-mount.js';
import { accountCommands } from './cmd-accounts.js';
import { miscCommands } from './cmd-misc.js';
import { maxxoCommands } from './cmd-maxxo.js';
import { vboxxCommands } from './cmd-vboxx.js';

export const commands: CmdDef[] = [...mountCommands, ...miscCommands, ...accountCommands, ...maxxoCommands, ...vboxxCommands];

/** Command groups (words that only lead to subcommands) and their summaries. */
export const groups: Record<string, string> = {
  maxxo: 'Maxxo account commands: send files, inbox, contacts, notifications, invitations, settings, photo, quota.',
  'maxxo contacts': 'Maxxo contacts.',
  'maxxo notifications': 'Maxxo notifications (contact requests).',
  'maxxo settings': 'Maxxo account settings.',
  'maxxo photo': 'Maxxo profile photo.',
  vboxx: 'vBoxxCloud account commands: account info, share links, management API.',
  'vboxx admin': 'vBoxxCloud management API: persons, organizations, policies, roots, machines, activity.',
  'vboxx admin person': 'Persons (users).',
  'vboxx admin org': 'Organizations.',
  'vboxx admin policy': 'Organization policies.',
  'vboxx admin root': 'Roots (top-level folders).',
  'vboxx admin machine': 'Machines (backup clients).',
  'vboxx admin activity': 'Activity log.',
};
