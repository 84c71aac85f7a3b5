// Every `cloudmount vboxx ...` command against the vBoxx reference server: a success and a failure each.
import test from 'ava';
import { startEmulator } from '../helpers/emulator.js';
import type { Emulator } from '../../src/emulator/server.js';
import { cli, makeHome, type Home } from './helpers.js';

let emu: Emulator;
let h: Home;
test.before(async () => { emu = await startEmulator({ rsync: false }); h = makeHome(); });
test.after.always(async () => { await emu?.close(); });

function vb(user: 'admin' | 'demo' | string, password: string | undefined, ...args: string[]) {
  const pw = password ?? (user === 'admin' ? 'admin-password' : 'demo-password');
  return cli(['vboxx', ...args, '--server', emu.url, '--username', user], { env: { ...h.env, CLOUDMOUNT_PASSWORD: pw } });
}
const admin = (...a: string[]) => vb('admin', undefined, ...a);
const demo = (...a: string[]) => vb('demo', undefined, ...a);
const json = (r: { stdout: string }) => JSON.parse(r.stdout);

test('info: account, usage and roots; a wrong password fails', async (t) => {
  const r = await demo('info');
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /name:\s+Demo User/);
  t.regex(r.stdout, /\d+\s+Files\s+sync/);
  t.regex(r.stdout, /Team Share/);
  t.true(Array.isArray(json(await demo('info', '--json')).roots));
  const bad = await vb('demo', 'nope', 'info');
  t.is(bad.code, 1);
  t.regex(bad.stderr, /login failed for vboxx demo/);
});

test('share: a link for a file by /root/path or --root; a missing file fails', async (t) => {
  const r = await demo('share', '/Files/readme.txt');
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout.trim(), /^http:\/\/\S+\/s\/\S+$/);
  const rooted = await demo('share', 'readme.txt', '--root', 'Files', '--json');
  t.is(rooted.code, 0, rooted.stderr);
  t.regex(json(rooted).url, /\/s\//);
  const fetched = await fetch(json(rooted).url);
  t.is(fetched.status, 200);
  const missing = await demo('share', '/Files/no-such.txt');
  t.is(missing.code, 1);
  t.regex(missing.stderr, /NOT_FOUND/);
});

test.serial('admin person: get self and by id, list with paging, create (password from a file), update', async (t) => {
  const me = json(await demo('admin', 'person', 'get', '--json'));
  t.is(me.username, 'demo');
  const byId = await admin('admin', 'person', 'get', String(me.id), '--full');
  t.is(byId.code, 0, byId.stderr);
  t.regex(byId.stdout, /username:\s+demo/);
  const missing = await admin('admin', 'person', 'get', '99999');
  t.is(missing.code, 1);
  const org = me.company_id as number;

  const pw = h.pwFile('new-person-pw');
  const created: number[] = [];
  const r0 = await admin('admin', 'person', 'create', '--new-password-file', pw, '--json',
    `company_id=${org}`, 'first_name=P0', 'last_name=Test', 'email=p0@vboxx.test', 'username=p0');
  t.is(r0.code, 0, r0.stderr);
  created.push(json(r0).id);
  // Ten more straight through the API (setup only), so the organization has more than one page.
  const auth = await (await fetch(`${emu.url}/1/auth?username=admin&password=admin-password`, { method: 'POST' })).json() as { session_token: string };
  for (let i = 1; i <= 10; i++) {
    const res = await fetch(`${emu.url}/1/management/person/create/?session_token=${auth.session_token}`, {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ company_id: String(org), first_name: `P${i}`, last_name: 'Test', email: `p${i}@vboxx.test`, username: `p${i}`, password: 'x-password' }).toString(),
    });
    t.is(res.status, 200);
  }
  // The new person can log in with the password from the file.
  t.is((await vb('p0', 'new-person-pw', 'info')).code, 0);
  const noPw = await admin('admin', 'person', 'create', `company_id=${org}`, 'first_name=X', 'last_name=Y', 'email=x@vboxx.test');
  t.is(noPw.code, 2);
  t.regex(noPw.stderr, /--new-password-file/);
  const inArgv = await admin('admin', 'person', 'create', 'password=hunter2', `company_id=${org}`);
  t.is(inArgv.code, 2);
  t.regex(inArgv.stderr, /never goes on the command line/);
  const missingField = await admin('admin', 'person', 'create', '--new-password-file', pw, `company_id=${org}`);
  t.is(missingField.code, 2);
  t.regex(missingField.stderr, /missing field\(s\): first_name, last_name, email/);
  const asUser = await demo('admin', 'person', 'create', '--new-password-file', pw, `company_id=${org}`, 'first_name=A', 'last_name=B', 'email=ab@vboxx.test');
  t.is(asUser.code, 1, 'a plain user may not create persons');

  const page1 = await admin('admin', 'person', 'list', '--org', String(org));
  t.is(page1.code, 0, page1.stderr);
  t.regex(page1.stdout, /page 1 of \d+/);
  const all = json(await admin('admin', 'person', 'list', '--org', String(org), '--all', '--json'));
  t.true(all.items.length >= 12, `--all follows the pages (${all.items.length})`);
  const p2 = json(await admin('admin', 'person', 'list', '--org', String(org), '--page', '2', '--json'));
  t.is(p2.page, 2);
  t.is((await admin('admin', 'person', 'list')).code, 2, '--org is required');
  t.is((await admin('admin', 'person', 'list', '--org', String(org), '--page', '0')).code, 2);

  const up = await admin('admin', 'person', 'update', String(created[0]), 'first_name=Renamed', 'space_quota=1000000');
  t.is(up.code, 0, up.stderr);
  t.is(json(await admin('admin', 'person', 'get', String(created[0]), '--json')).first_name, 'Renamed');
  const upBad = await admin('admin', 'person', 'update', String(created[0]), 'space_quota=lots');
  t.is(upBad.code, 2);
  const upUnknown = await admin('admin', 'person', 'update', String(created[0]), 'shoe_size=42');
  t.is(upUnknown.code, 2);
  t.regex(upUnknown.stderr, /unknown field 'shoe_size'/);
});

test.serial('admin org, policy, root: get, list, create, update, with failures', async (t) => {
  const org = json(await admin('admin', 'org', 'get', '2', '--json'));
  t.is(org.id, 2);
  t.is((await admin('admin', 'org', 'get', '999')).code, 1);
  const subs = await admin('admin', 'org', 'list', '1');
  t.is(subs.code, 0, subs.stderr);
  t.regex(subs.stdout, /Demo Organization/);
  const mk = await admin('admin', 'org', 'create', '--json', 'name=CLI Org', 'contact_email=cli@vboxx.test', 'slug=cli-org', 'policy={}', 'parent_id=1');
  t.is(mk.code, 0, mk.stderr);
  const newOrg = json(mk).id as number;
  const dup = await admin('admin', 'org', 'create', 'name=CLI Org 2', 'contact_email=cli@vboxx.test', 'slug=cli-org', 'policy={}', 'parent_id=1');
  t.is(dup.code, 1, 'a second org with the same slug is refused');
  t.is((await admin('admin', 'org', 'update', String(newOrg), 'description=from the CLI')).code, 0);
  t.is(json(await admin('admin', 'org', 'get', String(newOrg), '--json')).description, 'from the CLI');
  t.is((await demo('admin', 'org', 'update', String(newOrg), 'description=nope')).code, 1, 'plain user');

  const pol = await admin('admin', 'policy', 'get', '2');
  t.is(pol.code, 0, pol.stderr);
  t.regex(pol.stdout, /excluded_extensions:\s+\.exe/);
  t.is((await admin('admin', 'policy', 'update', '2', 'max_file_size=2048')).code, 0);
  t.is(String(json(await admin('admin', 'policy', 'get', '2', '--json')).max_file_size), '2048');
  t.is((await admin('admin', 'policy', 'update', '2', 'purge_deleted=perhaps')).code, 2);
  t.is((await admin('admin', 'policy', 'get', '999')).code, 1);

  const roots = await admin('admin', 'root', 'list', '--org', '2');
  t.is(roots.code, 0, roots.stderr);
  t.regex(roots.stdout, /Team Share/);
  const mr = await admin('admin', 'root', 'create', '--json', 'company_id=2', 'name=CLI Root', 'dept_share=true');
  t.is(mr.code, 0, mr.stderr);
  const rid = json(mr).id as number;
  t.is(json(await admin('admin', 'root', 'get', String(rid), '--json')).name, 'CLI Root');
  t.is((await admin('admin', 'root', 'update', String(rid), 'name=CLI Root 2')).code, 0);
  t.is(json(await admin('admin', 'root', 'get', String(rid), '--json')).name, 'CLI Root 2');
  t.is((await admin('admin', 'root', 'get', '9999')).code, 1);
  t.is((await admin('admin', 'root', 'create', 'name=No Company')).code, 2);
});

test.serial('admin machine and activity', async (t) => {
  const ml = await admin('admin', 'machine', 'list', '--org', '2', '--json');
  t.is(ml.code, 0, ml.stderr);
  const machines = json(ml).items as Array<{ id: number }>;
  t.true(machines.length >= 1, 'the demo laptop');
  const mid = machines[0]!.id;
  t.is((await admin('admin', 'machine', 'get', String(mid))).code, 0);
  const up = await admin('admin', 'machine', 'update', String(mid), 'bandwidth_throttle=512', 'throttle_exception_dow=0,1,2');
  t.is(up.code, 0, up.stderr);
  t.is(json(await admin('admin', 'machine', 'get', String(mid), '--json')).bandwidth_throttle, 512);
  t.is((await admin('admin', 'machine', 'update', String(mid), 'throttle_exception_dow=monday')).code, 2);
  t.is((await admin('admin', 'machine', 'get', '9999')).code, 1);

  const types = await admin('admin', 'activity', 'types', '--json');
  t.is(types.code, 0, types.stderr);
  const typeId = (json(types) as Array<{ id: number }>)[0]!.id;
  const me = json(await admin('admin', 'person', 'get', '--json'));
  const mk = await admin('admin', 'activity', 'create', '--json', `activity_type_id=${typeId}`, `actor_id=${me.id}`,
    'actor_type=person', `acted_on_id=${me.id}`, 'acted_on_type=person', 'data_text=from the CLI');
  t.is(mk.code, 0, mk.stderr);
  const aid = json(mk).id as number;
  t.is(json(await admin('admin', 'activity', 'get', String(aid), '--json')).data_text, 'from the CLI');
  const list = await admin('admin', 'activity', 'list', '--person', String(me.id), '--all');
  t.is(list.code, 0, list.stderr);
  t.regex(list.stdout, new RegExp(`^${aid}\\s`, 'm'));
  t.is((await admin('admin', 'activity', 'list')).code, 2, 'needs --person or --org');
  t.is((await admin('admin', 'activity', 'list', '--person', '1', '--org', '1')).code, 2);
  t.is((await admin('admin', 'activity', 'get', '999999')).code, 1);
  const badType = await admin('admin', 'activity', 'create', 'activity_type_id=1', 'actor_id=1', 'actor_type=alien', 'acted_on_id=1', 'acted_on_type=person');
  t.is(badType.code, 1);
});
