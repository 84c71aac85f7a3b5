// Declarative command definitions and the one parser and help printer every command uses, so
// that help, errors and the README reference cannot drift apart.

export interface OptDef {
  /** Long flag without dashes, e.g. "server". */
  name: string;
  short?: string;
  /** Metavariable when the flag takes a value, e.g. "URL"; absent for a boolean flag. */
  value?: string;
  desc: string;
  /** May be given several times; the values are collected in order. */
  repeat?: boolean;
}

export interface Parsed {
  args: string[];
  opts: Record<string, string | string[] | boolean | undefined>;
  verbose: number;
}

export interface CmdDef {
  /** Words after `cloudmount`, e.g. ["maxxo", "contacts", "add"]. */
  path: string[];
  /** Positional part of the usage line, e.g. "NAME MOUNTPOINT". */
  args: string;
  summary: string;
  /** Extra help paragraphs (semantics, examples). */
  details?: string;
  options: OptDef[];
  minArgs: number;
  maxArgs: number;
  hidden?: boolean;
  /** Hands argv to run() unparsed (serve: the reference servers parse their own flags). */
  passthrough?: boolean;
  /** Returns the exit code (default 0). */
  run: (p: Parsed) => Promise<number | void>;
}

export class UsageError extends Error {
  constructor(message: string, readonly cmd?: CmdDef) {
    super(message);
    this.name = 'UsageError';
  }
}

/** Options every command accepts. */
export const globalOptions: OptDef[] = [
  { name: 'verbose', short: 'v', desc: 'More log output (-v one line per transfer and change, -vv per request, -vvv trace)', repeat: true },
  { name: 'log-level', value: 'LEVEL', desc: 'Log level: error, warn (default), info, debug or trace (overrides -v)' },
  { name: 'log-file', value: 'FILE', desc: 'Write the log to FILE (appended, created 0600) instead of stderr' },
  { name: 'help', short: 'h', desc: 'Show this help' },
];

/** Global options given before the command word (`cloudmount -v mount ...`): how many args each takes. */
export function globalPrefixArity(a: string): number | undefined {
  if (/^-v+$/.test(a) || a === '--verbose') return 0;
  if (a.startsWith('--log-level=') || a.startsWith('--log-file=')) return 0;
  if (a === '--log-level' || a === '--log-file') return 1;
  return undefined;
}

/** Edit distance, for "did you mean". */
function distance(a: string, b: string): number {
  const d = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0]!;
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = d[j]!;
      d[j] = Math.min(d[j]! + 1, d[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return d[b.length]!;
}

/** The closest candidate to a mistyped word, if it is close enough to be what was meant. */
export function didYouMean(word: string, candidates: string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  const common = (c: string) => { let i = 0; while (i < c.length && c[i] === word[i]) i++; return i; };
  for (const c of new Set(candidates)) {
    const d = c.startsWith(word) && word.length >= 3 ? 0.5 : distance(word.toLowerCase(), c.toLowerCase());
    // a tie goes to the one that starts like the word (umount: unmount, not mount)
    if (d < bestD || (d === bestD && best !== undefined && common(c) > common(best))) { bestD = d; best = c; }
  }
  return best !== undefined && bestD <= Math.max(1, Math.floor(word.length / 3)) ? best : undefined;
}

export function optLabel(o: OptDef): string {
  const flags = o.name.length === 1 ? `-${o.name}` : (o.short ? `-${o.short}, ` : '    ') + `--${o.name}`;
  return o.value ? `${flags} ${o.value}` : flags;
}

export function formatHelp(cmd: CmdDef): string {
  const lines: string[] = [];
  lines.push(`Usage: cloudmount ${[...cmd.path, cmd.args].filter(Boolean).join(' ')} [options]`);
  lines.push('');
  lines.push(cmd.summary);
  lines.push('');
  lines.push('Options:');
  const all = [...cmd.options, ...globalOptions];
  const width = Math.max(...all.map((o) => optLabel(o).length)) + 2;
  for (const o of all) lines.push(`  ${optLabel(o).padEnd(width)}${o.desc}`);
  if (cmd.details) { lines.push(''); lines.push(cmd.details.replace(/\s+$/, '')); }
  return lines.join('\n') + '\n';
}

/** Help for a command group ("cloudmount maxxo") or the top level: its subcommands. */
export function formatGroupHelp(prefix: string[], cmds: CmdDef[], summary: string): string {
  const subs = cmds.filter((c) => !c.hidden && prefix.every((w, i) => c.path[i] === w) && c.path.length > prefix.length);
  const lines: string[] = [];
  lines.push(`Usage: cloudmount ${[...prefix, 'COMMAND'].join(' ')} [options]`);
  lines.push('');
  lines.push(summary);
  lines.push('');
  lines.push('Commands:');
  const labels = subs.map((c) => [...c.path.slice(prefix.length), c.args].filter(Boolean).join(' '));
  const width = Math.min(44, Math.max(...labels.map((l) => l.length)) + 2);
  subs.forEach((c, i) => {
    const l = labels[i]!;
    lines.push(l.length >= width ? `  ${l}\n  ${''.padEnd(width)}${c.summary}` : `  ${l.padEnd(width)}${c.summary}`);
  });
  lines.push('');
  lines.push(`Run \`cloudmount ${[...prefix, 'COMMAND'].join(' ')} --help\` for the options of one command.`);
  lines.push('Global options: -v/-vv/-vvv (more log), --log-level LEVEL, --log-file FILE, -h/--help.');
  return lines.join('\n') + '\n';
}

/**
 * Parses argv (after the command words) against a definition. `--` ends options; `--flag=value`
 * and `--flag value` both work; short booleans combine (-vv).
 */
export function parseArgs(cmd: CmdDef, argv: string[]): Parsed & { help: boolean } {
  const all = [...cmd.options, ...globalOptions];
  const byLong = new Map(all.map((o) => [o.name, o]));
  const byShort = new Map(all.filter((o) => o.short).map((o) => [o.short!, o]));
  const opts: Parsed['opts'] = {};
  const args: string[] = [];
  let verbose = 0;
  let help = false;
  const set = (o: OptDef, v: string | boolean) => {
    if (o.name === 'verbose') { verbose++; return; }
    if (o.name === 'help') { help = true; return; }
    if (o.repeat) {
      const prev = opts[o.name];
      opts[o.name] = [...(Array.isArray(prev) ? prev : []), String(v)];
    } else {
      if (opts[o.name] !== undefined) throw new UsageError(`option --${o.name} given twice`, cmd);
      opts[o.name] = v;
    }
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') { args.push(...argv.slice(i + 1)); break; }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = a.slice(2, eq < 0 ? undefined : eq);
      const o = byLong.get(name);
      if (!o) {
        const near = didYouMean(name, [...byLong.keys()].filter((n) => n.length > 1));
        throw new UsageError(`unknown option --${name}${near ? ` (did you mean --${near}?)` : ''}`, cmd);
      }
      if (o.value) {
        let v: string | undefined;
        if (eq >= 0) v = a.slice(eq + 1);
        else { v = argv[++i]; if (v === undefined) throw new UsageError(`option --${name} needs a value (${o.value})`, cmd); }
        set(o, v);
      } else {
        if (eq >= 0) throw new UsageError(`option --${name} takes no value`, cmd);
        set(o, true);
      }
    } else if (a.startsWith('-') && a.length > 1 && !/^-\d/.test(a)) {
      const letters = a.slice(1);
      for (let j = 0; j < letters.length; j++) {
        const o = byShort.get(letters[j]!);
        if (!o) {
          // `-server x`: a long option typed with one dash
          const near = j === 0 && letters.length > 1 ? didYouMean(letters.replace(/=.*/, ''), [...byLong.keys()].filter((n) => n.length > 1)) : undefined;
          throw new UsageError(`unknown option -${letters[j]}${near ? ` (did you mean --${near}?)` : ''}`, cmd);
        }
        if (o.value) {
          let v = letters.slice(j + 1);
          if (!v) { v = argv[++i] ?? ''; if (i >= argv.length) throw new UsageError(`option -${o.short} needs a value (${o.value})`, cmd); }
          set(o, v);
          break;
        }
        set(o, true);
      }
    } else {
      args.push(a);
    }
  }
  if (!help) {
    if (args.length < cmd.minArgs) throw new UsageError(`missing argument${cmd.args ? `: expected ${cmd.args}` : ''}`, cmd);
    if (args.length > cmd.maxArgs) throw new UsageError(`unexpected argument '${args[cmd.maxArgs]}'`, cmd);
  }
  return { args, opts, verbose, help };
}

export function str(p: Parsed, name: string): string | undefined {
  const v = p.opts[name];
  return typeof v === 'string' ? v : undefined;
}
export function bool(p: Parsed, name: string): boolean {
  return p.opts[name] === true;
}
export function list(p: Parsed, name: string): string[] {
  const v = p.opts[name];
  return Array.isArray(v) ? v : typeof v === 'string' ? [v] : [];
}
export function int(p: Parsed, name: string, cmd?: CmdDef): number | undefined {
  const v = str(p, name);
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new UsageError(`--${name} must be a whole number, not '${v}'`, cmd);
  return Number(v);
}
export function intArg(v: string, what: string, cmd?: CmdDef): number {
  if (!/^\d+$/.test(v)) throw new UsageError(`${what} must be a whole number, not '${v}'`, cmd);
  return Number(v);
}
