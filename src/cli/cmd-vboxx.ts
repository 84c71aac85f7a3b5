// `cloudmount vboxx ...`: account info, share links and the management API, each mapped onto
// one VboxxClient method; tables by default, --json for scripts.
import { bool, int, intArg, str, UsageError, type CmdDef, type OptDef, type Parsed } from './args.js';
import { connectOptions, resolveTarget, passwordFor, explainRemoteError, clientOptions, type Target } from './target.js';
import { drivePath, flushThroughMount } from './mounted.js';
import { formatRecord, formatTable, humanBytes, out, printJson, type Row } from './output.js';
import { parseFields, fieldList, clearHelp, type FieldSpec } from './fields.js';
import { readPasswordFile } from './password.js';
import { log } from './context.js';
import { CliError } from './context.js';
import type { Subject } from './server-messages.js';
import type { VboxxClient, VboxxRemote, Paged } from '../remote/vboxx/index.js';

const jsonOpt: OptDef = { name: 'json', desc: 'Print JSON instead of a table' };
const pageOpts: OptDef[] = [
  { name: 'page', value: 'N', desc: 'Page to show (10 items per page; default 1)' },
  { name: 'all', desc: 'Follow every page and show all items' },
];
const newPwOpt: OptDef = { name: 'new-password-file', value: 'FILE', desc: 'Read the new person\'s password from FILE (never from argv)' };

type Ctx = { client: VboxxClient; remote: VboxxRemote; p: Parsed; t: Target; password: string };

const entityWord: Record<string, string> = { org: 'organization', policy: 'policy', person: 'person', root: 'root', machine: 'machine', activity: 'activity' };

/** What a command addresses, from its words and first argument, for failure sentences. */
function subjectOf(path: string[], p: Parsed): Subject {
  if (path[0] === 'share') return { paths: p.args.slice(0, 1), action: `create a share link for ${p.args[0]}` };
  if (path[0] !== 'admin') return {};
  const entity = entityWord[path[1]!] ?? path[1]!;
  const verb = path[2]!;
  const n = p.args[0] !== undefined && /^\d+$/.test(p.args[0]) ? Number(p.args[0]) : undefined;
  const takesId = p.args.length > 0 && verb !== 'create';
  return {
    entity: verb === 'list' && path[1] !== 'org' ? 'organization' : entity,
    ...(takesId && n !== undefined ? { entityId: n } : {}),
    action: `${verb} ${verb === 'list' ? `${entity === 'organization' ? 'organizations' : entity + 's'}` : entity}${takesId && n !== undefined ? ` ${n}` : ''}`,
  };
}

async function withVboxx(p: Parsed, subject: Subject, fn: (c: Ctx) => Promise<void>): Promise<number> {
  const t = resolveTarget('vboxx', p);
  const password = await passwordFor(t, p);
  const { createVboxxRemote } = await import('../remote/vboxx/index.js');
  const remote = createVboxxRemote({ ...clientOptions(t, password), root: str(p, 'root') ?? t.root });
  try {
    await fn({ client: remote.client, remote, p, t, password });
  } catch (e) {
    explainRemoteError(e, t, subject);
  } finally {
    await remote.close().catch(() => {});
  }
  return 0;
}

function vcmd(path: string[], args: string, summary: string, options: OptDef[], min: number, max: number,
  fn: (c: Ctx) => Promise<void>, details?: string): CmdDef {
  return {
    path: ['vboxx', ...path], args, summary, details, minArgs: min, maxArgs: max,
    options: [...options, ...connectOptions('vboxx'), jsonOpt],
    run: (p) => withVboxx(p, subjectOf(path, p), fn),
  };
}

function show(p: Parsed, obj: unknown, columns?: string[]): void {
  if (bool(p, 'json')) return printJson(obj);
  if (Array.isArray(obj)) return out(formatTable(obj as Row[], columns));
  out(formatRecord(obj as Row));
}

function showPaged<T>(p: Parsed, pg: Paged<T>, columns: string[], what: string): void {
  if (bool(p, 'json')) return printJson({ page: pg.page, total_pages: pg.total_pages, total: pg.total, items: pg.items });
  out(formatTable(pg.items as unknown as Row[], columns));
  if (!bool(p, 'all') && pg.total_pages > 1) {
    out(`page ${pg.page} of ${pg.total_pages}${pg.total !== null ? ` (${pg.total} ${what})` : ''}; --page N or --all for more\n`);
  }
}

const pageArgs = (p: Parsed) => {
  const page = int(p, 'page');
  if (page !== undefined && page < 1) throw new UsageError('--page starts at 1');
  if (page !== undefined && bool(p, 'all')) throw new UsageError('--page and --all exclude each other');
  return { ...(page !== undefined ? { page } : {}), all: bool(p, 'all') };
};

const id = (p: Parsed, i = 0, what = 'ID') => intArg(p.args[i]!, what);

function orgId(p: Parsed): number {
  const v = int(p, 'org');
  if (v === undefined) throw new UsageError('--org ID is required');
  return v;
}

function newPassword(p: Parsed): string | undefined {
  const f = str(p, 'new-password-file');
  return f ? readPasswordFile(f, (m) => log.warn(m)) : undefined;
}

const orgOpt: OptDef = { name: 'org', value: 'ID', desc: 'Organization whose items to list' };
const throttleFields: FieldSpec[] = [
  { name: 'bandwidth_throttle', type: 'int', clearable: true }, { name: 'throttle_exception_dow', type: 'dow', clearable: true },
  { name: 'throttle_exception_days', type: 'str' }, { name: 'throttle_exception_start', type: 'str', clearable: true },
  { name: 'throttle_exception_end', type: 'str', clearable: true }, { name: 'throttle_exception_throttle', type: 'int', clearable: true },
];
/** Create commands: the same fields, none of them "cleared" (leaving one out is the default). */
const noClear = (f: FieldSpec[]): FieldSpec[] => f.map(({ clearable: _c, ...x }) => x);
const F = {
  personCreate: [
    { name: 'company_id', type: 'int', required: true }, { name: 'first_name', type: 'str', required: true },
    { name: 'last_name', type: 'str', required: true }, { name: 'email', type: 'str', required: true },
    { name: 'username', type: 'str' }, { name: 'space_quota', type: 'int' }, { name: 'mobile_phone', type: 'str' },
    { name: 'mobile_service_provider_id', type: 'int' }, { name: 'site_admin', type: 'bool' },
    { name: 'system_admin', type: 'bool' }, { name: 'create_root', type: 'bool' },
  ] as FieldSpec[],
  personUpdate: [
    { name: 'first_name', type: 'str' }, { name: 'last_name', type: 'str' }, { name: 'company_id', type: 'int' },
    { name: 'space_quota', type: 'int', clearable: true }, { name: 'mobile_phone', type: 'str', clearable: true },
    { name: 'mobile_service_provider_id', type: 'int', clearable: true },
    { name: 'system_admin', type: 'bool' }, { name: 'site_admin', type: 'bool' },
  ] as FieldSpec[],
  orgCreate: [
    { name: 'name', type: 'str', required: true }, { name: 'contact_email', type: 'str', required: true },
    { name: 'slug', type: 'str', required: true }, { name: 'policy', type: 'str', required: true },
    { name: 'parent_id', type: 'int', required: true }, { name: 'hostname', type: 'str' }, { name: 'description', type: 'str' },
    ...noClear(throttleFields),
  ] as FieldSpec[],
  // The spec's organization/update takes these only (no hostname, no throttle: a machine's are
  // set with machine update).
  orgUpdate: [
    { name: 'name', type: 'str' }, { name: 'description', type: 'str', clearable: true }, { name: 'contact_email', type: 'str' },
    { name: 'slug', type: 'str' }, { name: 'policy', type: 'str' },
  ] as FieldSpec[],
  policyUpdate: [
    { name: 'space_quota', type: 'int', clearable: true }, { name: 'max_file_size', type: 'int', clearable: true },
    { name: 'purge_deleted', type: 'bool' }, { name: 'trim_revisions', type: 'bool' },
    { name: 'excluded_extensions', type: 'str', clearable: true }, { name: 'user_purge_deleted', type: 'bool' },
    { name: 'purge_deleted_frequency', type: 'int', clearable: true }, { name: 'user_trim_revisions', type: 'bool' },
    { name: 'user_create_backups', type: 'bool' }, { name: 'trim_revisions_x', type: 'int', clearable: true },
  ] as FieldSpec[],
  rootCreate: [
    { name: 'company_id', type: 'int', required: true }, { name: 'name', type: 'str', required: true },
    { name: 'person_id', type: 'int' }, { name: 'default', type: 'bool' }, { name: 'description', type: 'str' },
    { name: 'dept_share', type: 'bool' },
  ] as FieldSpec[],
  rootUpdate: [
    { name: 'company_id', type: 'int' }, { name: 'name', type: 'str' }, { name: 'description', type: 'str', clearable: true },
    { name: 'person_id', type: 'int' }, { name: 'default', type: 'bool' },
  ] as FieldSpec[],
  machineUpdate: throttleFields,
  activityCreate: [
    { name: 'activity_type_id', type: 'int', required: true }, { name: 'actor_id', type: 'int', required: true },
    { name: 'actor_type', type: 'str', required: true }, { name: 'acted_on_id', type: 'int', required: true },
    { name: 'acted_on_type', type: 'str', required: true }, { name: 'actor_text', type: 'str' },
    { name: 'acted_on_text', type: 'str' }, { name: 'data_text', type: 'str' },
  ] as FieldSpec[],
};

const clearMeaning: Record<string, string> = {
  space_quota: 'unlimited', max_file_size: 'no limit', excluded_extensions: 'none', bandwidth_throttle: 'no throttle',
};

function fieldsHelp(specs: FieldSpec[]): string {
  const c = clearHelp(specs, clearMeaning);
  return `Fields (FIELD=VALUE; * = required): ${fieldList(specs)}${c ? `\n${c}` : ''}`;
}

function updateFields(p: Parsed, specs: FieldSpec[]): Record<string, string | number | boolean | null> {
  return parseFields(p.args.slice(1), specs, { secret: ['password'], requireAll: false, clear: true });
}

function created(p: Parsed, r: Record<string, unknown>, what: string): void {
  if (bool(p, 'json')) return printJson(r);
  out(`${what} ${r.id ?? ''} (${r.code ?? 'ok'})\n`);
}

/**
 * `admin ENTITY delete`: the vBoxx management API (its spec's "Implemented Endpoints") has no
 * delete for any entity, so the command says so and what can be done instead, without
 * contacting the server: a command that pretended would leave the item in place.
 */
function noDelete(entity: string, plural: string, has: string, instead: string): CmdDef {
  return {
    path: ['vboxx', 'admin', entity, 'delete'], args: 'ID', minArgs: 1, maxArgs: 1,
    summary: `Not available: the vBoxx management API cannot delete ${plural}.`,
    details: `The management API offers ${has} for ${plural}, no delete. ${instead}`,
    options: [...connectOptions('vboxx'), jsonOpt],
    run: async (p) => {
      intArg(p.args[0]!, 'ID');
      throw new CliError(`cannot delete ${entityWord[entity] ?? entity} ${p.args[0]}: the vBoxx management API has no delete for ${plural} (only ${has}). ${instead}`);
    },
  };
}

const personCols = ['id', 'first_name', 'last_name', 'email', 'username'];
const orgCols = ['id', 'parent_id', 'name', 'slug', 'email', 'active'];
const rootCols = ['root_id', 'name', 'company_name', 'username', 'file_count', 'physical_space', 'dept_share', 'backup'];
const activityCols = ['id', 'created', 'actor_text', 'action_text', 'acted_on_type', 'acted_on_text'];

export const vboxxCommands: CmdDef[] = [
  vcmd(['info'], '', 'Show the account: user, space usage and quota, roots.', [], 0, 0, async ({ client, p }) => {
    const a = await client.accountInfo();
    if (bool(p, 'json')) return printJson(a);
    out(formatRecord({
      id: a.id, name: a.display_name ?? [a.first_name, a.last_name].filter(Boolean).join(' '), email: a.email,
      used: `${humanBytes(a.space_usage)} (${a.space_usage} bytes)`, quota: a.space_quota === null ? 'unlimited' : `${humanBytes(a.space_quota)} (${a.space_quota} bytes)`,
      default_root: a.root_id,
    }));
    out('\n' + formatTable(a.roots.map((r) => ({ id: r.id, name: r.name, type: r.type, used: humanBytes(r.space_used ?? 0) })), ['id', 'name', 'type', 'used']));
  }),
  vcmd(['share'], 'PATH', 'Create a share link for PATH (/<root name>/path, or a path in --root).',
    [{ name: 'root', value: 'ID|NAME', desc: 'PATH is inside this root (as `mount --root`)' }], 1, 1, async ({ remote, p, t, password }) => {
      const inMount = drivePath(p.args[0]!, t);
      if (!inMount.mount) {
        const path = p.args[0]!.startsWith('/') ? p.args[0]! : '/' + p.args[0]!;
        const link = await remote.shareLink(path);
        if (bool(p, 'json')) return printJson({ path, ...link });
        return out(link.url + '\n');
      }
      // A path inside a mount of this account: the mount says which root its top is.
      if (str(p, 'root')) throw new UsageError('--root does not go with a path inside a mounted drive (the mount knows its root)');
      await flushThroughMount(inMount.local!);
      const path = '/' + inMount.remote;
      const { createVboxxRemote } = await import('../remote/vboxx/index.js');
      const r = inMount.mount.root === t.root ? remote : createVboxxRemote({ ...clientOptions(t, password), root: inMount.mount.root });
      try {
        const link = await r.shareLink(path);
        if (bool(p, 'json')) return printJson({ path, ...link });
        out(link.url + '\n');
      } finally {
        if (r !== remote) await r.close().catch(() => {});
      }
    }, 'Without --root the first path component names a root, as in a mount of all roots. A PATH inside a\n' +
      'mounted drive of the same account (~/vBoxx/Files/a.txt) works too, once the mount has uploaded it.'),

  // person
  vcmd(['admin', 'person', 'get'], '[ID]', 'Show a person (without ID: yourself).',
    [{ name: 'full', desc: 'Include the organization instead of its id' }], 0, 1, async ({ client, p }) => {
      if (!p.args.length) { if (bool(p, 'full')) throw new UsageError('--full needs an ID'); return show(p, await client.person()); }
      show(p, bool(p, 'full') ? await client.personFull(id(p)) : await client.personById(id(p)));
    }),
  vcmd(['admin', 'person', 'list'], '', 'List the persons of an organization.', [orgOpt, ...pageOpts], 0, 0, async ({ client, p }) => {
    showPaged(p, await client.organizationList(orgId(p), 'persons', pageArgs(p)), personCols, 'persons');
  }),
  vcmd(['admin', 'person', 'create'], 'FIELD=VALUE...', 'Create a person.', [newPwOpt], 1, Infinity, async ({ client, p }) => {
    const f = parseFields(p.args, F.personCreate, { secret: ['password'] });
    const pw = newPassword(p);
    if (!pw) throw new UsageError('--new-password-file FILE is required (the password never goes on the command line)');
    created(p, await client.createPerson({ ...(f as any), password: pw }), 'created person');
  }, fieldsHelp(F.personCreate)),
  vcmd(['admin', 'person', 'update'], 'ID FIELD=VALUE...', 'Update a person.', [newPwOpt], 1, Infinity, async ({ client, p }) => {
    const f = updateFields(p, F.personUpdate);
    const pw = newPassword(p);
    if (!Object.keys(f).length && !pw) throw new UsageError(`nothing to update (fields: ${fieldList(F.personUpdate)})`);
    created(p, await client.updatePerson({ id: id(p), ...(f as any), ...(pw ? { password: pw } : {}) }), 'updated person');
  }, fieldsHelp(F.personUpdate)),

  // organization
  vcmd(['admin', 'org', 'get'], 'ID', 'Show an organization.', [], 1, 1, async ({ client, p }) => show(p, await client.organization(id(p)))),
  vcmd(['admin', 'org', 'list'], 'ID', 'List the organizations under organization ID.', pageOpts, 1, 1, async ({ client, p }) => {
    showPaged(p, await client.organizationList(id(p), 'organizations', pageArgs(p)), orgCols, 'organizations');
  }),
  vcmd(['admin', 'org', 'create'], 'FIELD=VALUE...', 'Create an organization.', [], 1, Infinity, async ({ client, p }) => {
    created(p, await client.createOrganization(parseFields(p.args, F.orgCreate) as any), 'created organization');
  }, fieldsHelp(F.orgCreate)),
  vcmd(['admin', 'org', 'update'], 'ID FIELD=VALUE...', 'Update an organization.', [], 2, Infinity, async ({ client, p }) => {
    created(p, await client.updateOrganization({ id: id(p), ...(updateFields(p, F.orgUpdate) as any) }), 'updated organization');
  }, fieldsHelp(F.orgUpdate)),

  // policy
  vcmd(['admin', 'policy', 'get'], 'ID', 'Show the policy of organization ID.', [], 1, 1, async ({ client, p }) => show(p, await client.policy(id(p)))),
  vcmd(['admin', 'policy', 'update'], 'ID FIELD=VALUE...', 'Update the policy of organization ID.', [], 2, Infinity, async ({ client, p }) => {
    created(p, await client.updatePolicy({ id: id(p), ...(updateFields(p, F.policyUpdate) as any) }), 'updated policy');
  }, fieldsHelp(F.policyUpdate)),

  // root
  vcmd(['admin', 'root', 'get'], 'ID', 'Show a root.', [], 1, 1, async ({ client, p }) => show(p, await client.root(id(p)))),
  vcmd(['admin', 'root', 'list'], '', 'List the roots of an organization.', [orgOpt, ...pageOpts], 0, 0, async ({ client, p }) => {
    showPaged(p, await client.organizationList(orgId(p), 'roots', pageArgs(p)), rootCols, 'roots');
  }),
  vcmd(['admin', 'root', 'create'], 'FIELD=VALUE...', 'Create a root.', [], 1, Infinity, async ({ client, p }) => {
    created(p, await client.createRoot(parseFields(p.args, F.rootCreate) as any), 'created root');
  }, fieldsHelp(F.rootCreate)),
  vcmd(['admin', 'root', 'update'], 'ID FIELD=VALUE...', 'Update a root.', [], 2, Infinity, async ({ client, p }) => {
    created(p, await client.updateRoot({ id: id(p), ...(updateFields(p, F.rootUpdate) as any) }), 'updated root');
  }, fieldsHelp(F.rootUpdate)),

  // machine
  vcmd(['admin', 'machine', 'get'], 'ID', 'Show a machine.', [], 1, 1, async ({ client, p }) => show(p, await client.machine(id(p)))),
  vcmd(['admin', 'machine', 'list'], '', 'List the machines of an organization.', [orgOpt, ...pageOpts], 0, 0, async ({ client, p }) => {
    showPaged(p, await client.organizationList(orgId(p), 'machines', pageArgs(p)), ['id', 'name', 'hostname', 'bandwidth_throttle'], 'machines');
  }),
  vcmd(['admin', 'machine', 'update'], 'ID FIELD=VALUE...', 'Update a machine\'s bandwidth settings.', [], 2, Infinity, async ({ client, p }) => {
    created(p, await client.updateMachine({ id: id(p), ...(updateFields(p, F.machineUpdate) as any) }), 'updated machine');
  }, fieldsHelp(F.machineUpdate)),

  // activity
  vcmd(['admin', 'activity', 'get'], 'ID', 'Show one activity.', [], 1, 1, async ({ client, p }) => show(p, await client.activity(id(p)))),
  vcmd(['admin', 'activity', 'list'], '', 'List the activities of a person or an organization.',
    [{ name: 'person', value: 'ID', desc: 'Activities of this person' }, { name: 'org', value: 'ID', desc: 'Activities of this organization' }, ...pageOpts],
    0, 0, async ({ client, p }) => {
      const person = int(p, 'person');
      const org = int(p, 'org');
      if ((person === undefined) === (org === undefined)) throw new UsageError('give exactly one of --person ID or --org ID');
      const pg = person !== undefined ? await client.activities('person', person, pageArgs(p)) : await client.activities('organization', org!, pageArgs(p));
      showPaged(p, pg, activityCols, 'activities');
    }),
  vcmd(['admin', 'activity', 'create'], 'FIELD=VALUE...', 'Record an activity.', [], 1, Infinity, async ({ client, p }) => {
    created(p, await client.createActivity(parseFields(p.args, F.activityCreate) as any), 'created activity');
  }, fieldsHelp(F.activityCreate)),
  vcmd(['admin', 'activity', 'types'], '', 'List the activity types.', [], 0, 0, async ({ client, p }) => {
    show(p, await client.activityTypes(), ['id', 'activity', 'machine_scope', 'user_scope', 'system_scope']);
  }),

  // delete: none of the entities has one in the API
  noDelete('person', 'persons', 'get, list, create and update', 'Delete the person in the vBoxx web interface; to lock them out meanwhile, set a new password with `admin person update ID --new-password-file FILE`.'),
  noDelete('org', 'organizations', 'get, list, create and update', 'Delete the organization in the vBoxx web interface.'),
  noDelete('root', 'roots', 'get, list, create and update', 'Delete the root in the vBoxx web interface; its files can be removed through a mount or `fileops/delete`.'),
  noDelete('machine', 'machines', 'get, list and update', 'Machines are removed from the vBoxx web interface or by uninstalling the client.'),
  noDelete('activity', 'activities', 'get, list, create and types', 'The activity log is append-only.'),
  noDelete('policy', 'policies', 'get and update', 'A policy belongs to its organization; clear its limits instead, e.g. `admin policy update ID space_quota= max_file_size=`.'),
];
