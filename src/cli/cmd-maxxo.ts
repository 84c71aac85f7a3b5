// `cloudmount maxxo ...`: the Maxxo account features beside the drive, each mapped onto one
// MaxxoClient method; tables by default, --json for scripts.
import { bool, str, intArg, UsageError, type CmdDef, type OptDef, type Parsed } from './args.js';
import { connectOptions, resolveTarget, passwordFor, explainRemoteError, clientOptions, type Target } from './target.js';
import { formatRecord, formatTable, humanBytes, out, printJson } from './output.js';
import { readPasswordFile } from './password.js';
import { loadAccounts, saveAccounts } from './accounts.js';
import { createProgress } from './progress.js';
import { drivePath, flushThroughMount } from './mounted.js';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { log, CliError } from './context.js';
import { serverSentence, type Subject } from './server-messages.js';
import type { MaxxoClient, MaxxoSendSource } from '../remote/maxxo/client.js';

const jsonOpt: OptDef = { name: 'json', desc: 'Print JSON instead of a table' };
/** `subject`: what the command acts on, set before its requests, named by failure sentences. */
type Ctx = { client: MaxxoClient; p: Parsed; t: Target; password: string; subject: Subject };

async function withMaxxo(p: Parsed, fn: (c: Ctx) => Promise<number | void>): Promise<number> {
  const t = resolveTarget('maxxo', p);
  const password = await passwordFor(t, p);
  const { MaxxoClient } = await import('../remote/maxxo/client.js');
  const client = new MaxxoClient(clientOptions(t, password));
  const ctx: Ctx = { client, p, t, password, subject: {} };
  try {
    return (await fn(ctx)) ?? 0;
  } catch (e) {
    explainRemoteError(e, t, ctx.subject);
  } finally {
    await client.close().catch(() => {});
  }
}

function mcmd(path: string[], args: string, summary: string, options: OptDef[], min: number, max: number,
  fn: (c: Ctx) => Promise<number | void>, details?: string): CmdDef {
  return {
    path: ['maxxo', ...path], args, summary, details, minArgs: min, maxArgs: max,
    options: [...options, ...connectOptions('maxxo'), jsonOpt],
    run: (p) => withMaxxo(p, fn),
  };
}

const ids = (p: Parsed) => p.args.map((a) => intArg(a, 'message/notification ID'));
const emails = (list: string[]) => {
  for (const e of list) if (!/^[^@\s]+@[^@\s]+$/.test(e)) throw new UsageError(`'${e}' is not an e-mail address`);
  return list;
};

/** Per-id failures of a 202 answer: printed, and the command fails. */
function idFailures(p: Parsed, failed: Array<{ id: unknown; error: string }>, total: number, okMsg: string): number {
  if (bool(p, 'json')) { printJson({ failed }); return failed.length ? 1 : 0; }
  if (!failed.length) { out(okMsg + '\n'); return 0; }
  for (const f of failed) {
    const id = f.id === null ? undefined : f.id as number | string;
    process.stderr.write(`  ${serverSentence('maxxo', { code: f.error, message: f.error }, { id }) ?? `${f.id}: ${f.error}`}\n`);
  }
  throw new CliError(`${failed.length} of ${total} failed (${[...new Set(failed.map((f) => f.error))].join(', ')})`);
}

const clean = (p: string) => p.split('/').filter((s) => s && s !== '.').join('/');
const parentOf = (p: string) => { const i = p.lastIndexOf('/'); return i < 0 ? '' : p.slice(0, i); };
const baseOf = (p: string) => p.slice(p.lastIndexOf('/') + 1);

/** Files under a Maxxo folder, relative to it (what /ops/send wants in `files` for a folder). */
async function filesUnder(client: MaxxoClient, dir: string, onFile: () => void): Promise<string[]> {
  const outp: string[] = [];
  const walk = async (d: string) => {
    for (const r of await client.list(d || '/')) {
      const full = clean(r.file.includes('/') || !d ? r.file : `${d}/${r.file}`);
      // The service reports paths from the top of the account; keep what is under `dir`.
      const rel = full.startsWith(dir + '/') ? full.slice(dir.length + 1) : full;
      if (r.type === 'd') await walk(full);
      else { outp.push(rel); onFile(); }
    }
  };
  await walk(dir);
  return outp;
}

export const maxxoCommands: CmdDef[] = [
  mcmd(['send'], 'PATH...', 'Send files or folders of your Maxxo drive to another user (they accept it in their inbox).',
    [{ name: 'to', value: 'EMAIL', desc: 'Receiver\'s e-mail (required)' }], 1, Infinity, async ({ client, p, t, subject }) => {
      const to = str(p, 'to');
      if (!to) throw new UsageError('--to EMAIL is required');
      emails([to]);
      const given = p.args.map((a) => ({ arg: a, ...drivePath(a, t) }));
      if (given.some((x) => !x.remote)) throw new UsageError('cannot send the whole drive; name files or folders in it');
      const bar = createProgress('collecting files', { unit: 'items' });
      let found = 0;
      // The service sends its own copy: what programs wrote through the mount must be there first.
      for (const g of given) if (g.local) await flushThroughMount(g.local, () => bar.update(++found, 0));
      found = 0;
      const paths = given.map((g) => g.remote);
      subject.paths = paths;
      const sizes = await client.filesize(paths);
      const source: MaxxoSendSource[] = [];
      for (const [i, path] of paths.entries()) {
        const row = sizes[i];
        if (!row || row.size < 0) {
          const g = given[i]!;
          if (!g.local && existsSync(resolve(g.arg))) {
            throw new CliError(`${g.arg}: not in your Maxxo drive (a local file outside any mounted drive of ${t.user}: copy it into the drive first, or give its path inside the mount)`);
          }
          throw new CliError(`${g.local ? `${g.arg} (${path} in the drive)` : path}: no such file or folder in the Maxxo drive`);
        }
        let isDir = row.type === 'd';
        if (row.type === undefined) isDir = (await client.list(parentOf(path) || '/')).some((r) => baseOf(r.file) === baseOf(path) && r.type === 'd');
        if (isDir) {
          const files = await filesUnder(client, path, () => bar.update(++found, 0));
          source.push({ path, files, folder: true });
        } else {
          source.push({ path: parentOf(path), files: [baseOf(path)] });
          found++;
        }
      }
      bar.done();
      subject.to = to;
      await client.send(source, to);
      if (bool(p, 'json')) return printJson({ to, sent: source });
      out(`sent ${paths.join(', ')} (${found} file${found === 1 ? '' : 's'}) to ${to}\n`);
    }, 'PATHs are paths in your Maxxo drive, e.g. docs/report.pdf or a folder, or paths inside a mounted\n' +
      'drive of the same account (~/Maxxo/docs/report.pdf, or relative to a working directory inside it):\n' +
      'those are sent from the server\'s copy, once the mount has uploaded what was written to them.'),
  mcmd(['inbox'], '', 'List files others sent you, waiting to be accepted or declined.', [], 0, 0, async ({ client, p }) => {
    const msgs = await client.inboxList();
    if (bool(p, 'json')) return printJson(msgs);
    out(formatTable(msgs.map((m) => ({ ...m, size: humanBytes(m.size) })), ['id', 'sender_email', 'destination', 'size', 'timestamp']));
  }),
  mcmd(['accept'], 'ID...', 'Accept sent files (IDs from `maxxo inbox`).', [], 1, Infinity, async ({ client, p }) => {
    const list = ids(p);
    return idFailures(p, await client.inboxUpdate(list.map((id) => ({ id, accept: true }))), list.length, `accepted ${list.join(', ')}`);
  }),
  mcmd(['decline'], 'ID...', 'Decline sent files (IDs from `maxxo inbox`).', [], 1, Infinity, async ({ client, p }) => {
    const list = ids(p);
    return idFailures(p, await client.inboxUpdate(list.map((id) => ({ id, accept: false }))), list.length, `declined ${list.join(', ')}`);
  }),
  mcmd(['contacts', 'list'], '', 'List your contacts.', [{ name: 'filter', value: 'TEXT', desc: 'Only contacts containing TEXT' }], 0, 0, async ({ client, p }) => {
    const c = await client.contactsList(str(p, 'filter'));
    if (bool(p, 'json')) return printJson(c);
    out(formatTable(c as unknown as Record<string, unknown>[], ['email', 'fullname', 'photo']));
  }),
  mcmd(['contacts', 'add'], 'EMAIL...', 'Add contacts.', [], 1, Infinity, async ({ client, p, subject }) => {
    subject.users = p.args;
    const r = await client.contactsAdd(emails(p.args));
    if (bool(p, 'json')) return printJson({ added: p.args, ...r });
    out(r.alreadyContact ? `added; some were already contacts\n` : `added ${p.args.join(', ')}\n`);
  }),
  mcmd(['contacts', 'remove'], 'EMAIL', 'Remove a contact.', [], 1, 1, async ({ client, p, subject }) => {
    subject.users = p.args;
    await client.contactsRemove(emails(p.args)[0]!);
    if (bool(p, 'json')) return printJson({ removed: p.args[0] });
    out(`removed ${p.args[0]}\n`);
  }),
  mcmd(['notifications', 'list'], '', 'List notifications (contact requests).', [], 0, 0, async ({ client, p }) => {
    const n = await client.notificationsList();
    if (bool(p, 'json')) return printJson(n);
    out(formatTable(n as unknown as Record<string, unknown>[], ['id', 'type', 'email']));
  }),
  mcmd(['notifications', 'read'], '[ID...]', 'Mark notifications as read.', [{ name: 'all', desc: 'Mark every listed notification as read' }], 0, Infinity, async ({ client, p }) => {
    let list = ids(p);
    if (bool(p, 'all')) {
      if (list.length) throw new UsageError('give IDs or --all, not both');
      list = (await client.notificationsList()).map((n) => n.id);
      if (!list.length) { if (bool(p, 'json')) printJson({ failed: [] }); else out('no notifications\n'); return 0; }
    } else if (!list.length) throw new UsageError('give notification IDs or --all');
    return idFailures(p, await client.notificationsUpdate(list), list.length, `marked ${list.join(', ')} as read`);
  }),
  mcmd(['invite'], 'EMAIL...', 'Invite people to Maxxo (the service e-mails them).', [], 1, Infinity, async ({ client, p, subject }) => {
    subject.users = p.args;
    await client.invite(emails(p.args));
    if (bool(p, 'json')) return printJson({ invited: p.args });
    out(`invited ${p.args.join(', ')}\n`);
  }),
  mcmd(['settings', 'show'], '', 'Show the account settings.', [], 0, 0, async ({ client, p }) => {
    const s = await client.settingsList();
    if (bool(p, 'json')) return printJson(s);
    out(formatRecord({ ...s, storage: `${s.storage} MB` }));
  }),
  mcmd(['settings', 'set'], '', 'Change the full name, auto-accept or password.', [
    { name: 'fullname', value: 'NAME', desc: 'New full name' },
    { name: 'accept-all', value: 'yes|no', desc: 'Accept all sent files automatically' },
    { name: 'new-password-file', value: 'FILE', desc: 'Change the password to the one in FILE' },
  ], 0, 0, async ({ client, p, t, password, subject }) => {
    const aa = str(p, 'accept-all');
    if (aa !== undefined && !['yes', 'no', 'true', 'false', '1', '0'].includes(aa)) throw new UsageError('--accept-all takes yes or no');
    const npf = str(p, 'new-password-file');
    const newPassword = npf ? readPasswordFile(npf, (m) => log.warn(m)) : undefined;
    if (npf) subject.file = npf;
    const fullname = str(p, 'fullname');
    if (fullname === undefined && aa === undefined && newPassword === undefined) throw new UsageError('nothing to change: --fullname, --accept-all or --new-password-file');
    await client.settingsUpdate({
      ...(fullname !== undefined ? { fullname } : {}),
      ...(aa !== undefined ? { acceptAll: ['yes', 'true', '1'].includes(aa) } : {}),
      ...(newPassword !== undefined ? { currentPassword: password, newPassword } : {}),
    });
    // A saved password would be stale now: keep the saved account usable.
    if (newPassword !== undefined && t.name) {
      const f = loadAccounts();
      const a = f.accounts[t.name];
      if (a?.password !== undefined) { a.password = newPassword; saveAccounts(f); }
    }
    if (bool(p, 'json')) return printJson({ updated: { fullname, accept_all: aa, password: newPassword !== undefined } });
    out(`settings updated${newPassword !== undefined ? ' (password changed)' : ''}\n`);
  }),
  mcmd(['photo', 'set'], 'FILE', 'Upload a profile photo (PNG or JPEG, at most 2 MB and 1600x1200).', [], 1, 1, async ({ client, p, subject }) => {
    subject.file = p.args[0];
    const bar = createProgress(`uploading ${p.args[0]}`, { unit: 'items' });
    bar.update(0, 1);
    let r: { photo?: string };
    try { r = await client.photoUpdate(p.args[0]!); } catch (e) {
      bar.done();
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new CliError(`${p.args[0]}: no such file`);
      throw e;
    }
    bar.update(1, 1);
    bar.done();
    if (bool(p, 'json')) return printJson(r);
    out(`photo updated${r.photo ? `: ${r.photo}` : ''}\n`);
  }),
  mcmd(['photo', 'remove'], '', 'Remove the profile photo.', [], 0, 0, async ({ client, p }) => {
    await client.photoRemove();
    if (bool(p, 'json')) return printJson({ removed: true });
    out('photo removed\n');
  }),
  mcmd(['quota'], '', 'Show storage and monthly receiving quota.', [], 0, 0, async ({ client, p }) => {
    const q = await client.quota();
    if (bool(p, 'json')) return printJson(q);
    out(formatRecord({
      storage: `${humanBytes(q.normal)} used of ${humanBytes(q.quota)} (${q.normal} / ${q.quota} bytes)`,
      receiving: `${humanBytes(q.received)} received of ${humanBytes(q.receiving_quota)} this month`,
    }));
  }),
];
