import type { CmdDef } from './args.js';
export const maxxoCommands: CmdDef[] = [];
