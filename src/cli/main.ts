#!/usr/bin/env node
// Entry point of the `cloudmount` command: finds the command, parses its flags, runs it, and
// turns every failure into one line on stderr: exit 2 for usage errors, 1 for runtime failures.
import { didYouMean, formatGroupHelp, formatHelp, globalPrefixArity, parseArgs, str, UsageError, type CmdDef } from './args.js';
import { CliError, configureLog, log, hungUp } from './context.js';
import { commands, groups } from './commands.js';
import { isRemoteError } from '../errors.js';
import { LEVELS, redact, type Level } from '../log.js';
import { exitWhenDrained } from '../util/exit.js';
import { canonicalMountpoint } from './registry.js';

const TOP_SUMMARY = 'cloudmount mounts a Maxxo or vBoxxCloud storage account as a drive (FUSE), and runs the services\' account commands.';

function findCommand(argv: string[]): { cmd?: CmdDef; rest: string[]; prefix: string[] } {
  // Command words come first; the longest defined path wins ("maxxo contacts add").
  const words: string[] = [];
  for (const a of argv) { if (a.startsWith('-')) break; words.push(a); }
  for (let n = Math.min(words.length, 4); n > 0; n--) {
    const path = words.slice(0, n);
    const cmd = commands.find((c) => c.path.length === n && c.path.every((w, i) => w === path[i]));
    if (cmd) return { cmd, rest: argv.slice(n), prefix: path };
  }
  // Longest prefix that is a group, for a helpful listing.
  for (let n = Math.min(words.length, 3); n > 0; n--) {
    const path = words.slice(0, n);
    if (groups[path.join(' ')]) return { rest: argv.slice(n), prefix: path };
  }
  return { rest: argv, prefix: [] };
}

/** The command reference of the README: every command's help, verbatim. */
async function markdownReference(): Promise<string> {
  const parts: string[] = [];
  for (const c of commands.filter((x) => !x.hidden)) {
    let help = formatHelp(c);
    if (c.passthrough) help = (await import('../emulator/main.js')).SERVE_HELP;
    parts.push(`#### \`cloudmount ${c.path.join(' ')}\`\n\n\`\`\`text\n${help}\`\`\`\n`);
  }
  return parts.join('\n');
}

export async function main(argv: string[]): Promise<number> {
  if (argv[0] === 'help' && argv[1] === '--markdown' && argv.length === 2) {
    process.stdout.write(await markdownReference());
    return 0;
  }
  // Global options before the command word (`cloudmount -v mount ...`) go after it.
  const pre: string[] = [];
  while (argv.length && globalPrefixArity(argv[0]!) !== undefined) {
    const n = globalPrefixArity(argv[0]!)!;
    pre.push(...argv.slice(0, 1 + n));
    argv = argv.slice(1 + n);
  }
  const found = findCommand(argv);
  const { cmd, prefix } = found;
  const rest = cmd ? [...pre, ...found.rest] : found.rest;
  if (!cmd) {
    const wantsHelp = rest.includes('--help') || rest.includes('-h') || (prefix.length === 0 && rest[0] === 'help');
    const key = prefix.join(' ');
    const summary = prefix.length ? groups[key]! : TOP_SUMMARY;
    if (prefix.length === 0 && rest[0] === 'help' && rest[1]) return main([...rest.slice(1), '--help']);
    if (wantsHelp || (rest.length === 0 && prefix.length > 0) || argv.length === 0) {
      process.stdout.write(formatGroupHelp(prefix, commands, summary));
      return argv.length === 0 ? 2 : 0;
    }
    if (prefix.length === 0 && (rest[0] === '--version' || rest[0] === '-V')) {
      process.stdout.write('cloudmount 0.1.0\n');
      return 0;
    }
    const bad = rest.find((a) => !a.startsWith('-')) ?? rest[0] ?? '';
    const words = [...commands.map((c) => c.path), ...Object.keys(groups).map((g) => g.split(' '))]
      .filter((p) => p.length > prefix.length && prefix.every((w, i) => p[i] === w)).map((p) => p[prefix.length]!);
    const near = bad && !bad.startsWith('-') ? didYouMean(bad, words) : undefined;
    process.stderr.write(`cloudmount: unknown command '${[...prefix, bad].join(' ').trim()}'` +
      `${near ? ` (did you mean '${[...prefix, near].join(' ')}'?)` : ''}\n` +
      `Run \`cloudmount ${[...prefix, '--help'].join(' ')}\` for the list of commands.\n`);
    return 2;
  }
  const name = cmd.path.join(' ');
  try {
    if (cmd.passthrough) return (await cmd.run({ args: found.rest, opts: {}, verbose: 0 })) ?? 0;
    const parsed = parseArgs(cmd, rest);
    if (parsed.help) { process.stdout.write(formatHelp(cmd)); return 0; }
    const level = str(parsed, 'log-level');
    if (level !== undefined && !LEVELS.includes(level as Level)) throw new UsageError(`--log-level must be one of ${LEVELS.join(', ')}, not '${level}'`);
    const logFile = str(parsed, 'log-file');
    // a mount's own log inside its drive would wait on the drive's own process: a deadlock
    if (logFile && cmd.path[0] === 'mount' && parsed.args[1]) {
      const mp = canonicalMountpoint(parsed.args[1]);
      const lf = canonicalMountpoint(logFile);
      if (lf === mp || lf.startsWith(mp.endsWith('/') ? mp : mp + '/')) throw new UsageError(`--log-file ${logFile} is inside the mountpoint`);
    }
    try {
      configureLog({ verbose: parsed.verbose, level: level as Level | undefined, file: logFile });
    } catch (e) {
      throw new CliError(`--log-file ${str(parsed, 'log-file')}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    return (await cmd.run(parsed)) ?? 0;
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`cloudmount ${name}: ${e.message}\nRun \`cloudmount ${name} --help\` for usage.\n`);
      return 2;
    }
    if (e instanceof CliError) {
      process.stderr.write(`cloudmount ${name}: ${redact(e.message)}\n`);
      return e.exitCode;
    }
    if (isRemoteError(e)) {
      process.stderr.write(`cloudmount ${name}: ${redact(`${e.code}: ${e.message}`)}\n`);
      return 1;
    }
    const err = e as NodeJS.ErrnoException;
    process.stderr.write(`cloudmount ${name}: ${redact(err?.message ?? String(e))}\n`);
    log.debug(redact(err?.stack ?? ''));
    return 1;
  }
}

/** Ends the process once its output drained; by SIGHUP after a hangup (see noteHangup), else with code. */
function finish(code: number): Promise<never> {
  return exitWhenDrained(code, hungUp ? { signal: 'SIGHUP' } : {});
}

// Run when executed, not when imported by a test.
const invoked = process.argv[1] ?? '';
if (/[\\/]cli[\\/]main\.js$/.test(invoked)) {
  // A closed terminal or a reader gone (`| head`) makes writes fail with EIO/EPIPE. Unhandled,
  // that error would kill a mount or the demo halfway through its cleanup, leaving dead mounts;
  // the output has nowhere to go, so it is dropped and the work goes on.
  for (const s of [process.stdout, process.stderr]) s.on('error', () => {});
  // Long-running commands (mount, demo, serve) resolve only when they are done.
  main(process.argv.slice(2)).then(finish, (e) => {
    process.stderr.write(`cloudmount: ${redact(String((e as Error)?.message ?? e))}\n`);
    void exitWhenDrained(1);
  });
}
