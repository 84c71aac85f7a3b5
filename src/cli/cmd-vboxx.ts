import type { CmdDef } from './args.js';
export const vboxxCommands: CmdDef[] = [];
