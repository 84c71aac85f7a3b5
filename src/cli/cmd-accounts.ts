// login / logout / accounts: saved accounts, verified against the server before they are kept.
import { bool, str, UsageError, type CmdDef } from './args.js';
import { loadAccounts, saveAccounts, validName, accountsPath, type Kind } from './accounts.js';
import { targetFromFlags, passwordFor, createRemote, explainRemoteError, caOption } from './target.js';
import { formatTable, out, printJson } from './output.js';
import { CliError } from './context.js';
import { resolve } from 'node:path';

const jsonOpt = { name: 'json', desc: 'Print JSON instead of a table' };

export const accountCommands: CmdDef[] = [
  {
    path: ['login'], args: 'NAME', minArgs: 1, maxArgs: 1,
    summary: 'Check an account\'s login against its server and save it under NAME.',
    details: 'Saved in $XDG_CONFIG_HOME/cloudmount/accounts.json (mode 0600). Afterwards `cloudmount mount NAME DIR`\n' +
      'and `--account NAME` work without further flags. Nothing is saved when the login fails.\n' +
      'A --ca FILE is saved as its absolute path and trusted by every later use of NAME (a --ca given\n' +
      'then takes its place for that command).',
    options: [
      { name: 'kind', value: 'maxxo|vboxx', desc: 'Which service the account is on (required)' },
      { name: 'server', value: 'URL', desc: 'Service base URL (required)' },
      { name: 'email', value: 'EMAIL', desc: 'Maxxo e-mail' },
      { name: 'username', value: 'USER', desc: 'vBoxx username' },
      { name: 'password-file', value: 'FILE', desc: 'Read the password from FILE (else CLOUDMOUNT_PASSWORD, else prompt)' },
      { name: 'no-save-password', desc: 'Keep the password out of the file; it is asked for at each use' },
      { name: 'root', value: 'ID|NAME', desc: 'vBoxx: mount only this root by default' },
      { ...caOption, desc: 'Trust the PEM CA certificate(s) in FILE for an https server; saved with the account' },
    ],
    async run(p) {
      const name = p.args[0]!;
      if (!validName(name)) throw new UsageError(`'${name}' is not a valid account name (letters, digits, . _ -; not maxxo/vboxx)`);
      const kind = str(p, 'kind');
      if (kind !== 'maxxo' && kind !== 'vboxx') throw new UsageError('--kind maxxo|vboxx is required');
      const t = targetFromFlags(kind as Kind, p);
      // Saved as an absolute path: later mounts and account commands trust it without --ca, from any
      // working directory (and pick up a renewed bundle at the same path).
      const ca = str(p, 'ca');
      if (ca) t.caFile = resolve(ca);
      if (t.root && kind !== 'vboxx') throw new UsageError('--root applies to vboxx accounts only');
      const password = await passwordFor(t, p);
      const remote = await createRemote(t, password, { maxAttempts: 2 });
      try {
        await remote.statfs();
      } catch (e) {
        explainRemoteError(e, t);
      } finally {
        await remote.close().catch(() => {});
      }
      const f = loadAccounts();
      const existed = !!f.accounts[name];
      f.accounts[name] = {
        kind: t.kind, server: t.server, user: t.user,
        ...(bool(p, 'no-save-password') ? {} : { password }),
        ...(t.root ? { root: t.root } : {}),
        ...(t.caFile ? { ca: t.caFile } : {}),
        savedAt: new Date().toISOString(),
      };
      saveAccounts(f);
      out(`${existed ? 'updated' : 'saved'} account ${name}: ${t.kind} ${t.user} at ${t.server}` +
        `${t.caFile ? ` (trusting CA ${t.caFile})` : ''}${bool(p, 'no-save-password') ? ' (password not saved)' : ''}\n`);
    },
  },
  {
    path: ['logout'], args: 'NAME', minArgs: 1, maxArgs: 1,
    summary: 'Forget the saved account NAME (and its password).',
    options: [],
    async run(p) {
      const name = p.args[0]!;
      const f = loadAccounts();
      if (!f.accounts[name]) throw new CliError(`no saved account '${name}'`);
      delete f.accounts[name];
      saveAccounts(f);
      out(`removed account ${name}\n`);
    },
  },
  {
    path: ['accounts'], args: '', minArgs: 0, maxArgs: 0,
    summary: 'List saved accounts (never their passwords).',
    options: [jsonOpt],
    async run(p) {
      const f = loadAccounts();
      const rows = Object.entries(f.accounts).sort(([a], [b]) => a.localeCompare(b)).map(([name, a]) => ({
        name, kind: a.kind, server: a.server, user: a.user, password: a.password ? 'saved' : 'not saved', root: a.root ?? null, ca: a.ca ?? null,
      }));
      if (bool(p, 'json')) printJson({ file: accountsPath(), accounts: rows });
      else out(rows.length ? formatTable(rows, ['name', 'kind', 'server', 'user', 'password', 'root', 'ca']) : `no saved accounts (${accountsPath()})\n`);
    },
  },
];
