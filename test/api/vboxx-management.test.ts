// vBoxx reference server: the management API — every endpoint, validation, paging, rights, isolation
// between organizations, and the activities recorded for create/update actions.
import test from 'ava';
import type { Emulator } from '../../src/emulator/server.js';
import { Api, useDemoServer, login, newOrg, DEMO_FILES_ROOT as FILES, DEMO_TEAM_ROOT as TEAM, DEMO_ORG, SYSTEM_ORG } from './vboxx-lib.js';

let emu: Emulator;
let demo: Api;
let admin: Api;
useDemoServer(test, (s) => ({ emu, demo, admin } = s));

const M = '/1/management';
const isErr = (t: any, r: any, status: number, msg?: RegExp) => {
  t.is(r.status, status, r.text);
  t.is(r.json?.status_code, status);
  t.is(r.json?.code, 'error');
  if (msg) t.regex(r.json.message, msg);
};

test('person: self, by id, full; trailing slash optional; rights', async (t) => {
  const me = await demo.get(`${M}/person/`);
  t.is(me.status, 200);
  t.like(me.json, { id: 2, first_name: 'Demo', last_name: 'User', email: 'demo@vboxx.test', username: 'demo',
    company_id: DEMO_ORG, system_admin: false, site_admin: false, default_root_id: FILES });
  t.false('password_hash' in me.json);
  t.deepEqual((await demo.get(`${M}/person`)).json, me.json);
  t.deepEqual((await demo.get(`${M}/person/2/`)).json, me.json);
  const full = await demo.get(`${M}/person/2/full/`);
  t.is(full.status, 200);
  t.like(full.json.company, { id: DEMO_ORG, name: 'Demo Organization', slug: 'demo-organization' });
  t.is(full.json.default_root.name, 'Files');
  t.deepEqual(full.json.roots.map((r: any) => r.id), [FILES, TEAM]);
  // A plain user cannot read the admin; the admin reads anyone.
  isErr(t, await demo.get(`${M}/person/1/`), 403);
  isErr(t, await demo.get(`${M}/person/1/full/`), 403);
  t.is((await admin.get(`${M}/person/2/full/`)).status, 200);
  isErr(t, await admin.get(`${M}/person/999/`), 404, /unknown person with id 999/);
  isErr(t, await admin.get(`${M}/person/abc/`), 404);
});

test('person/create: required fields (500 as the text), validation, sample response, create_root, rights', async (t) => {
  const base = { company_id: String(DEMO_ORG), first_name: 'Louis', last_name: 'API', email: 'louis@demo.test', password: 'pw-louis' };
  for (const f of Object.keys(base)) {
    const { [f]: _drop, ...rest } = base as Record<string, string>;
    isErr(t, await admin.post(`${M}/person/create/`, rest), 500, new RegExp(`^missing required field ${f}$`));
  }
  isErr(t, await admin.post(`${M}/person/create/`, { ...base, space_quota: 'many' }), 400, /space_quota/);
  isErr(t, await admin.post(`${M}/person/create/`, { ...base, site_admin: 'yes' }), 400, /site_admin/);
  isErr(t, await admin.post(`${M}/person/create/`, { ...base, email: 'not-an-email' }), 400);
  isErr(t, await admin.post(`${M}/person/create/`, { ...base, company_id: '777' }), 404);
  const r = await admin.post(`${M}/person/create/`, { ...base, create_root: 'true', space_quota: '5000', mobile_phone: '+31 6 1234' });
  t.is(r.status, 200);
  const id = r.json.id;
  t.deepEqual(r.json, { full_uri: `/1/management/person/${id}/full/`, root_created: true, code: 'success', id, uri: `/1/management/person/${id}/` });
  isErr(t, await admin.post(`${M}/person/create/`, base), 400, /already exists/);
  const louis = new Api(emu.url, await login(emu.url, 'louis@demo.test', 'pw-louis'));
  const info = (await louis.get('/1/account/info')).json;
  t.is(info.space_quota, 5000);
  t.deepEqual(info.roots.map((x: any) => [x.name, x.type]).sort(), [['Files', 'sync'], ['Team Share', 'share']]);
  t.is((await louis.get(`/1/metadata/${info.root_id}/`)).status, 200);
  // Without create_root.
  const n = await admin.post(`${M}/person/create/`, { ...base, email: 'noroot@demo.test' });
  t.is(n.json.root_created, false);
  // A plain user may not create persons.
  isErr(t, await demo.post(`${M}/person/create/`, { ...base, email: 'x@demo.test' }), 403);
});

test('person/update: self may change name and password, not rights; admins may; response shape', async (t) => {
  const r = await admin.post(`${M}/person/create/`, { company_id: String(DEMO_ORG), first_name: 'Up', last_name: 'Date',
    email: 'update@demo.test', password: 'pw1' });
  const id = String(r.json.id);
  const me = new Api(emu.url, await login(emu.url, 'update@demo.test', 'pw1'));
  const u = await me.post(`${M}/person/update/`, { id, first_name: 'Upped', password: 'pw2' });
  t.is(u.status, 200);
  t.deepEqual(u.json, { full_uri: `/1/management/person/${id}/full/`, code: 'success', id: Number(id), uri: `/1/management/person/${id}/` });
  t.is((await me.get(`${M}/person/`)).json.first_name, 'Upped');
  t.truthy(await login(emu.url, 'update@demo.test', 'pw2'));
  for (const f of [{ system_admin: 'true' }, { site_admin: 'true' }, { space_quota: '1' }, { company_id: String(SYSTEM_ORG) }] as Array<Record<string, string>>) {
    isErr(t, await me.post(`${M}/person/update/`, { id, ...f }), 403);
  }
  isErr(t, await demo.post(`${M}/person/update/`, { id, first_name: 'Hijack' }), 403);
  isErr(t, await admin.post(`${M}/person/update/`, {}), 500, /missing required field id/);
  isErr(t, await admin.post(`${M}/person/update/`, { id: '9999' }), 404);
  isErr(t, await admin.post(`${M}/person/update/`, { id, system_admin: 'maybe' }), 400);
  t.is((await admin.post(`${M}/person/update/`, { id, site_admin: 'true', space_quota: '123' })).status, 200);
  t.like((await admin.get(`${M}/person/${id}/`)).json, { site_admin: true, space_quota: 123 });
});

test('activity: types, lists with paging, single, create with validation; create/update actions are recorded', async (t) => {
  const types = await demo.get(`${M}/activity/types/`);
  t.is(types.status, 200);
  t.true(Array.isArray(types.json));
  t.like(types.json[0], { id: 1, activity: 'added account', machine_scope: false, user_scope: false, system_scope: false });
  t.true(types.json.some((x: any) => x.id === 10 && x.activity === 'added auth source to'));

  const { companyId, site, user } = await newOrg(admin, 'activity-org');
  // newOrg recorded: organization created, 2 persons created, 2 roots created.
  const list = await admin.get(`${M}/activity/organization/${companyId}/`);
  t.is(list.status, 200);
  t.deepEqual(Object.keys(list.json).sort(), ['activities', 'page', 'total_activities', 'total_pages']);
  t.is(list.json.total_activities, 5);
  const a0 = list.json.activities[0];
  for (const k of ['id', 'acted_on_type', 'acted_on_text', 'actor_type', 'actor_company_id', 'actor_machine_id', 'actor_person_id',
    'actor_text', 'data_text', 'created', 'acted_on_machine_id', 'acted_on_company_id', 'acted_on_person_id', 'acted_on_root_id',
    'num_alerts', 'action_text']) t.true(k in a0, k);
  t.regex(a0.created, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$/);
  t.is(a0.actor_text, 'System Admin');
  t.true(list.json.activities.some((a: any) => a.action_text === 'created organization'));
  t.true(list.json.activities.some((a: any) => a.action_text === 'added account' && a.acted_on_person_id === user.id));

  // activity/create: required fields, validation, rights, then paging over 10.
  const base = { activity_type_id: '3', actor_id: String(site.id), actor_type: 'person', acted_on_id: String(user.id), acted_on_type: 'person' };
  for (const f of Object.keys(base)) {
    const { [f]: _d, ...rest } = base as Record<string, string>;
    isErr(t, await site.api.post(`${M}/activity/create/`, rest), 500, new RegExp(`missing required field ${f}`));
  }
  isErr(t, await site.api.post(`${M}/activity/create/`, { ...base, actor_type: 'robot' }), 400, /actor_type/);
  isErr(t, await site.api.post(`${M}/activity/create/`, { ...base, acted_on_type: 'planet' }), 400, /acted_on_type/);
  isErr(t, await site.api.post(`${M}/activity/create/`, { ...base, activity_type_id: '999' }), 404);
  isErr(t, await site.api.post(`${M}/activity/create/`, { ...base, acted_on_id: '2' }), 403, /permission/);
  const made = await site.api.post(`${M}/activity/create/`, { ...base, data_text: 'hello' });
  t.is(made.status, 200);
  t.deepEqual(made.json, { code: 'success', id: made.json.id, uri: `/1/management/activity/${made.json.id}/` });
  for (let i = 0; i < 10; i++) t.is((await site.api.post(`${M}/activity/create/`, { ...base, data_text: `n${i}` })).status, 200);
  const one = await site.api.get(`${M}/activity/${made.json.id}/`);
  t.like(one.json, { id: made.json.id, data_text: 'hello', activity_type_id: 3, actor_person_id: site.id, acted_on_person_id: user.id });
  const p1 = (await site.api.get(`${M}/activity/organization/${companyId}/`)).json;
  t.is(p1.total_activities, 16);
  t.is(p1.total_pages, 2);
  t.is(p1.page, 1);
  t.is(p1.activities.length, 10);
  const p2 = (await site.api.get(`${M}/activity/organization/${companyId}/page/2/`)).json;
  t.is(p2.page, 2);
  t.is(p2.activities.length, 6);
  t.deepEqual(new Set([...p1.activities, ...p2.activities].map((a: any) => a.id)).size, 16);
  isErr(t, await site.api.get(`${M}/activity/organization/${companyId}/page/3/`), 404);
  isErr(t, await site.api.get(`${M}/activity/organization/${companyId}/page/0/`), 404);
  // A person's feed: the user sees their own, not the organization's.
  const mine = await user.api.get(`${M}/activity/person/${user.id}/`);
  t.is(mine.status, 200);
  t.true(mine.json.total_activities >= 12);
  isErr(t, await user.api.get(`${M}/activity/organization/${companyId}/`), 403);
  isErr(t, await user.api.get(`${M}/activity/person/${site.id}/`), 403);
  isErr(t, await demo.get(`${M}/activity/${made.json.id}/`), 403);
  isErr(t, await demo.get(`${M}/activity/galaxy/1/`), 404);
  isErr(t, await demo.get(`${M}/activity/99999/`), 404);
});

test('policy: read by members, update by admins with validation; plain user 403', async (t) => {
  const p = await demo.get(`${M}/policy/${DEMO_ORG}/`);
  t.is(p.status, 200);
  t.deepEqual(Object.keys(p.json).sort(), ['company_id', 'excluded_extensions', 'id', 'max_file_size', 'purge_deleted',
    'purge_deleted_frequency', 'space_quota', 'trim_revisions', 'trim_revisions_x', 'user_create_backups',
    'user_purge_deleted', 'user_trim_revisions'].sort());
  t.like(p.json, { id: DEMO_ORG, company_id: DEMO_ORG, max_file_size: '1024', space_quota: 10 * 1024 ** 3, excluded_extensions: '.exe' });
  isErr(t, await demo.get(`${M}/policy/${SYSTEM_ORG}/`), 403);
  isErr(t, await demo.get(`${M}/policy/404/`), 404);
  isErr(t, await demo.post(`${M}/policy/update/`, { id: String(DEMO_ORG), max_file_size: '1' }), 403, /set policies/);
  const { companyId, site } = await newOrg(admin, 'policy-mgmt');
  isErr(t, await site.api.post(`${M}/policy/update/`, {}), 500, /missing required field id/);
  for (const [k, v] of [['space_quota', 'x'], ['max_file_size', '1.5'], ['purge_deleted', 'yes'], ['trim_revisions', '2'],
    ['user_purge_deleted', 'no'], ['purge_deleted_frequency', 'daily'], ['user_trim_revisions', 'on'], ['user_create_backups', 'y'],
    ['trim_revisions_x', 'ten'], ['excluded_extensions', 'a b,c']]) {
    isErr(t, await site.api.post(`${M}/policy/update/`, { id: String(companyId), [k]: v }), 400, new RegExp(k));
  }
  const u = await site.api.post(`${M}/policy/update/`, { id: String(companyId), space_quota: '1073741824', max_file_size: '300',
    purge_deleted: 'true', excluded_extensions: '*.mp3,*.ogg,*.avi', trim_revisions_x: '5' });
  t.deepEqual(u.json, { code: 'success', id: companyId, uri: `/1/management/policy/${companyId}/` });
  t.like((await site.api.get(`${M}/policy/${companyId}/`)).json, { space_quota: 1073741824, max_file_size: '300', purge_deleted: true,
    excluded_extensions: '*.mp3,*.ogg,*.avi', trim_revisions_x: '5' });
  // A site admin cannot set another organization's policy.
  isErr(t, await site.api.post(`${M}/policy/update/`, { id: String(DEMO_ORG), max_file_size: '1' }), 403);
  const acts = (await site.api.get(`${M}/activity/organization/${companyId}/`)).json.activities;
  t.true(acts.some((a: any) => a.action_text === 'updated policy'));
});

test('root: get, create (default, dept_share), update; validation and rights', async (t) => {
  const r = await demo.get(`${M}/root/${FILES}/`);
  t.deepEqual(r.json, { id: FILES, name: 'Files', description: '', company_id: DEMO_ORG, person_id: 2, dept_share: false, backup: false });
  t.is((await demo.get(`${M}/root/${TEAM}/`)).json.dept_share, true);
  isErr(t, await demo.get(`${M}/root/1/`), 403);
  isErr(t, await demo.get(`${M}/root/20/`), 404, /^unknown root with id 20$/);
  const { companyId, site, user } = await newOrg(admin, 'root-org');
  isErr(t, await site.api.post(`${M}/root/create/`, { name: 'x' }), 500, /missing required field company_id/);
  isErr(t, await site.api.post(`${M}/root/create/`, { company_id: String(companyId) }), 500, /missing required field name/);
  isErr(t, await site.api.post(`${M}/root/create/`, { company_id: String(companyId), name: 'x', dept_share: 'sometimes' }), 400);
  isErr(t, await site.api.post(`${M}/root/create/`, { company_id: String(companyId), name: 'x', person_id: '2' }), 400, /not in organization/);
  isErr(t, await site.api.post(`${M}/root/create/`, { company_id: String(DEMO_ORG), name: 'x' }), 403);
  isErr(t, await user.api.post(`${M}/root/create/`, { company_id: String(companyId), name: 'x' }), 403);
  const c = await site.api.post(`${M}/root/create/`, { company_id: String(companyId), name: 'Projects', person_id: String(user.id),
    default: 'true', description: 'project files' });
  t.is(c.status, 200);
  const rid = c.json.id;
  t.deepEqual(c.json, { code: 'success', id: rid, uri: `/1/management/root/${rid}/` });
  const info = (await user.api.get('/1/account/info')).json;
  t.is(info.root_id, rid);
  t.true(info.roots.some((x: any) => x.id === rid && x.type === 'sync'));
  t.is((await user.api.put(`/1/files_put/${rid}/in-projects.txt`, 'p')).status, 200);
  const share = await site.api.post(`${M}/root/create/`, { company_id: String(companyId), name: 'Org Share', dept_share: 'true' });
  t.true((await user.api.get('/1/account/info')).json.roots.some((x: any) => x.id === share.json.id && x.type === 'share'));
  // Not visible to another organization's users.
  isErr(t, await demo.get(`/1/metadata/${share.json.id}/`), 403);
  const u = await site.api.post(`${M}/root/update/`, { id: String(rid), name: 'Renamed', description: 'd2' });
  t.deepEqual(u.json, { code: 'success', id: rid, uri: `/1/management/root/${rid}/` });
  t.like((await site.api.get(`${M}/root/${rid}/`)).json, { name: 'Renamed', description: 'd2', person_id: user.id });
  isErr(t, await site.api.post(`${M}/root/update/`, {}), 500, /missing required field id/);
  isErr(t, await site.api.post(`${M}/root/update/`, { id: '99999' }), 404);
  isErr(t, await site.api.post(`${M}/root/update/`, { id: String(rid), name: '' }), 400);
  isErr(t, await site.api.post(`${M}/root/update/`, { id: String(FILES), name: 'mine' }), 403);
  isErr(t, await user.api.post(`${M}/root/update/`, { id: String(rid), name: 'mine' }), 403);
  const back = await site.api.post(`${M}/root/update/`, { id: String(user.root), default: 'true' });
  t.is(back.status, 200);
  t.is((await user.api.get('/1/account/info')).json.root_id, user.root);
});

test('machine: get and update with the validation rules of the text', async (t) => {
  const list = (await admin.get(`${M}/organization/${DEMO_ORG}/machines/`)).json;
  t.is(list.total_machines, 1);
  const id = list.machines[0].id;
  const m = await demo.get(`${M}/machine/${id}/`);
  t.is(m.status, 200);
  t.like(m.json, { id, name: 'demo-laptop', company_id: DEMO_ORG, person_id: 2 });
  isErr(t, await demo.get(`${M}/machine/999/`), 404);
  isErr(t, await demo.post(`${M}/machine/update/`, { id: String(id), bandwidth_throttle: '5' }), 403);
  isErr(t, await admin.post(`${M}/machine/update/`, {}), 500, /missing required field id/);
  const bad: Array<[string, string, RegExp]> = [
    ['bandwidth_throttle', 'fast', /bandwidth_throttle/], ['throttle_exception_dow', '[0,1,9]', /throttle_exception_dow/],
    ['throttle_exception_dow', 'monday', /throttle_exception_dow/], ['throttle_exception_days', 'holidays', /weekdays/],
    ['throttle_exception_start', '25:00', /HH:mm/], ['throttle_exception_end', '9am', /HH:mm/],
    ['throttle_exception_start', '12:60:00', /HH:mm/], ['throttle_exception_throttle', '1.5', /throttle_exception_throttle/],
  ];
  for (const [k, v, re] of bad) isErr(t, await admin.post(`${M}/machine/update/`, { id: String(id), [k]: v }), 400, re);
  const u = await admin.post(`${M}/machine/update/`, { id: String(id), bandwidth_throttle: '512', throttle_exception_dow: '[0,1,2,3]',
    throttle_exception_start: '18:00', throttle_exception_end: '07:30:00', throttle_exception_throttle: '0' });
  t.deepEqual(u.json, { code: 'success', id, uri: `/1/management/machine/${id}/` });
  t.like((await demo.get(`${M}/machine/${id}/`)).json, { bandwidth_throttle: 512, throttle_exception_dow: [0, 1, 2, 3],
    throttle_exception_start: '18:00', throttle_exception_end: '07:30:00', throttle_exception_throttle: 0 });
  // throttle_exception_days overrides throttle_exception_dow.
  await admin.post(`${M}/machine/update/`, { id: String(id), throttle_exception_dow: '[0]', throttle_exception_days: 'weekends' });
  t.like((await demo.get(`${M}/machine/${id}/`)).json, { throttle_exception_dow: [5, 6], throttle_exception_days: 'weekends' });
  await admin.post(`${M}/machine/update/`, { id: String(id), throttle_exception_days: 'weekdays' });
  t.deepEqual((await demo.get(`${M}/machine/${id}/`)).json.throttle_exception_dow, [0, 1, 2, 3, 4]);
  const acts = (await admin.get(`${M}/activity/organization/${DEMO_ORG}/`)).json.activities;
  t.true(acts.some((a: any) => a.action_text === 'updated machine' && a.acted_on_machine_id === id));
});

test('organization: get, create (system admin only), update, validation', async (t) => {
  const o = await demo.get(`${M}/organization/${DEMO_ORG}/`);
  t.is(o.status, 200);
  t.deepEqual(Object.keys(o.json).sort(), ['active', 'bandwidth_throttle', 'created', 'description', 'email', 'email_server_id',
    'hostname', 'id', 'name', 'parent_id', 'policy', 'psa', 'slug', 'throttle_exception_days', 'throttle_exception_dow',
    'throttle_exception_end', 'throttle_exception_start', 'throttle_exception_throttle', 'throttled'].sort());
  t.like(o.json, { id: DEMO_ORG, parent_id: SYSTEM_ORG, name: 'Demo Organization', slug: 'demo-organization', active: true, throttled: false });
  t.is(JSON.parse(o.json.policy).max_file_size, '1024');
  isErr(t, await demo.get(`${M}/organization/${SYSTEM_ORG}/`), 403);
  isErr(t, await demo.get(`${M}/organization/555/`), 404);
  const base = { name: 'Acme', contact_email: 'it@acme.test', slug: 'acme', policy: '{"max_file_size": 300}', parent_id: String(SYSTEM_ORG) };
  for (const f of Object.keys(base)) {
    const { [f]: _d, ...rest } = base as Record<string, string>;
    isErr(t, await admin.post(`${M}/organization/create/`, rest), 500, new RegExp(`missing required field ${f}`));
  }
  isErr(t, await demo.post(`${M}/organization/create/`, base), 403, /create organizations/);
  isErr(t, await admin.post(`${M}/organization/create/`, { ...base, policy: 'strict' }), 400, /policy/);
  isErr(t, await admin.post(`${M}/organization/create/`, { ...base, parent_id: '999' }), 404);
  isErr(t, await admin.post(`${M}/organization/create/`, { ...base, contact_email: 'nope' }), 400);
  isErr(t, await admin.post(`${M}/organization/create/`, { ...base, throttle_exception_start: '7' }), 400, /HH:mm/);
  const c = await admin.post(`${M}/organization/create/`, { ...base, hostname: 'acme.example', throttle_exception_days: 'weekdays',
    bandwidth_throttle: '100' });
  t.is(c.status, 200);
  const id = c.json.id;
  t.deepEqual(c.json, { code: 'success', id, uri: `/1/management/organization/${id}/` });
  t.like((await admin.get(`${M}/organization/${id}/`)).json, { name: 'Acme', slug: 'acme', email: 'it@acme.test', hostname: 'acme.example',
    description: '', parent_id: SYSTEM_ORG, bandwidth_throttle: 100, throttle_exception_dow: [0, 1, 2, 3, 4] });
  t.is((await admin.get(`${M}/policy/${id}/`)).json.max_file_size, '300');
  isErr(t, await admin.post(`${M}/organization/create/`, base), 400, /unique/);
  isErr(t, await admin.post(`${M}/organization/create/`, { ...base, name: 'Acme 2' }), 400, /slug must be unique/);
  const u = await admin.post(`${M}/organization/update/`, { id: String(id), name: 'Acme Corp', description: 'widgets',
    contact_email: 'ops@acme.test', slug: 'acme-corp', policy: '{"space_quota": 5000}' });
  t.deepEqual(u.json, { code: 'success', id, uri: `/1/management/organization/${id}/` });
  t.like((await admin.get(`${M}/organization/${id}/`)).json, { name: 'Acme Corp', description: 'widgets', email: 'ops@acme.test', slug: 'acme-corp' });
  t.is((await admin.get(`${M}/policy/${id}/`)).json.space_quota, 5000);
  isErr(t, await admin.post(`${M}/organization/update/`, {}), 500, /missing required field id/);
  isErr(t, await admin.post(`${M}/organization/update/`, { id: String(id), name: 'Demo Organization' }), 400, /unique/);
  isErr(t, await admin.post(`${M}/organization/update/`, { id: String(id), slug: 'bad slug!' }), 400);
  isErr(t, await demo.post(`${M}/organization/update/`, { id: String(DEMO_ORG), name: 'Mine now' }), 403);
  isErr(t, await demo.post(`${M}/organization/update/`, { id: String(id), name: 'Mine now' }), 403);
  const acts = (await admin.get(`${M}/activity/organization/${id}/`)).json.activities.map((a: any) => a.action_text);
  t.true(acts.includes('created organization'));
  t.true(acts.includes('updated organization'));
});

test('organization lists: 10 per page with total_* fields, for persons, roots, machines, organizations', async (t) => {
  const { companyId, site } = await newOrg(admin, 'paging-org');
  for (let i = 0; i < 11; i++) {
    const r = await site.api.post(`${M}/person/create/`, { company_id: String(companyId), first_name: `P${i}`, last_name: 'Page',
      email: `p${i}@paging.test`, password: 'pw', create_root: 'true' });
    t.is(r.status, 200);
  }
  // 2 from newOrg + 11 = 13 persons and 13 roots.
  const p1 = await site.api.get(`${M}/organization/${companyId}/persons/`);
  t.is(p1.status, 200);
  t.like(p1.json, { total_persons: 13, total_pages: 2, page: 1 });
  t.is(p1.json.persons.length, 10);
  t.deepEqual(Object.keys(p1.json.persons[0]).sort(), ['email', 'first_name', 'id', 'last_name', 'use_ldap', 'username']);
  const p2 = (await site.api.get(`${M}/organization/${companyId}/persons/page/2/`)).json;
  t.like(p2, { total_persons: 13, total_pages: 2, page: 2 });
  t.is(p2.persons.length, 3);
  t.is(new Set([...p1.json.persons, ...p2.persons].map((p: any) => p.id)).size, 13);
  isErr(t, await site.api.get(`${M}/organization/${companyId}/persons/page/3/`), 404);
  t.deepEqual((await site.api.get(`${M}/organization/${companyId}/persons/page/1`)).json, p1.json);

  const roots = (await site.api.get(`${M}/organization/${companyId}/roots/`)).json;
  t.like(roots, { total_roots: 13, total_pages: 2, page: 1 });
  const r0 = roots.roots[0];
  t.deepEqual(Object.keys(r0).sort(), ['backup', 'company_id', 'company_name', 'created', 'dept_share', 'email', 'file_count',
    'first_name', 'last_name', 'name', 'person_id', 'physical_space', 'revision_count', 'root_id', 'username'].sort());
  t.like(r0, { company_id: companyId, company_name: 'Org paging-org', name: 'Files', file_count: 0, physical_space: 0 });
  await site.api.put(`/1/files_put/${r0.root_id}/x.bin`, Buffer.alloc(77));
  const again = (await site.api.get(`${M}/organization/${companyId}/roots/`)).json.roots[0];
  t.like(again, { file_count: 1, physical_space: 77, revision_count: 1 });
  t.is((await site.api.get(`${M}/organization/${companyId}/roots/page/2/`)).json.roots.length, 3);

  const machines = (await site.api.get(`${M}/organization/${companyId}/machines/`)).json;
  t.deepEqual(machines, { total_machines: 0, total_pages: 1, page: 1, machines: [] });

  const orgs = (await admin.get(`${M}/organization/${SYSTEM_ORG}/organizations/`)).json;
  t.is(orgs.page, 1);
  t.true(orgs.total_organizations >= 2);
  t.true(orgs.organizations.some((o: any) => o.slug === 'demo-organization'));
  t.is(orgs.total_pages, Math.ceil(orgs.total_organizations / 10));
  // Rights: plain users never list; site admins only their own organization.
  isErr(t, await demo.get(`${M}/organization/${DEMO_ORG}/persons/`), 403);
  isErr(t, await site.api.get(`${M}/organization/${DEMO_ORG}/persons/`), 403);
  isErr(t, await site.api.get(`${M}/organization/${DEMO_ORG}/roots/`), 403);
  isErr(t, await site.api.get(`${M}/organization/${SYSTEM_ORG}/organizations/`), 403);
  isErr(t, await site.api.get(`${M}/organization/${companyId}/persons/page/x/`), 404);
});

test('isolation: users and admins of one organization cannot reach another organization', async (t) => {
  const a = await newOrg(admin, 'iso-a');
  const b = await newOrg(admin, 'iso-b');
  await a.user.api.putFile(a.user.root, 'secret.txt', 'only for A');
  for (const who of [b.user, b.site]) {
    isErr(t, await who.api.get(`/1/metadata/${a.user.root}/`), 403);
    isErr(t, await who.api.get(`/1/files/${a.user.root}/secret.txt`), 403);
    isErr(t, await who.api.post('/1/fileops/delete', { root: String(a.user.root), path: '/secret.txt' }), 403);
    isErr(t, await who.api.get(`${M}/person/${a.user.id}/`), 403);
    isErr(t, await who.api.get(`${M}/organization/${a.companyId}/`), 403);
    isErr(t, await who.api.get(`${M}/policy/${a.companyId}/`), 403);
    isErr(t, await who.api.get(`${M}/root/${a.user.root}/`), 403);
    isErr(t, await who.api.post(`${M}/person/update/`, { id: String(a.user.id), first_name: 'x' }), 403);
    isErr(t, await who.api.post(`${M}/person/create/`, { company_id: String(a.companyId), first_name: 'x', last_name: 'y',
      email: `intruder-${who.id}@x.test`, password: 'p' }), 403);
  }
  // Within one organization a plain user cannot read a colleague or another user's own root.
  isErr(t, await a.user.api.get(`${M}/person/${a.site.id}/`), 403);
  isErr(t, await a.user.api.get(`/1/metadata/${a.site.root}/`), 403);
  // The site admin may read their users and their files; the system admin may read everything.
  t.is((await a.site.api.get(`${M}/person/${a.user.id}/full/`)).status, 200);
  t.is((await a.site.api.get(`/1/files/${a.user.root}/secret.txt`)).text, 'only for A');
  t.is((await admin.get(`/1/files/${a.user.root}/secret.txt`)).text, 'only for A');
  // Site admins cannot make system admins.
  isErr(t, await a.site.api.post(`${M}/person/update/`, { id: String(a.user.id), system_admin: 'true' }), 403);
});
