// /1/auth, /1/account/info and the management API under /1/management/.
// Rights: a system admin may do everything; a site admin manages their own organization (persons,
// roots, machines, policy, the organization record) but cannot create organizations; a plain user
// reads themself, their organization, its policy and their roots, and may update their own name,
// password and phone. Everything else is 403. Unknown ids are 404 before any rights check.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { hashPassword } from '../security.js';
import { type Machine, type Org, type Person, type Policy, type Root, ACT } from './db.js';
import type { Vboxx } from './store.js';
import { route } from './files.js';
import { fail, humanSize, isoMicro, params, parseBoolField, parseId, parseIntField, requireFields } from './util.js';

type P = Record<string, string | undefined>;
const PAGE = 10;

const b = (x: number | null | undefined) => !!x;
/** Update endpoints: a field sent empty is cleared (to `to`: NULL, or '' for text columns). */
const cleared = (q: P, keys: string[], to: null | '' = null): Record<string, null | ''> =>
  Object.fromEntries(keys.filter((k) => q[k] === '').map((k) => [k, to]));
const THROTTLE = ['bandwidth_throttle', 'throttle_exception_dow', 'throttle_exception_days', 'throttle_exception_start',
  'throttle_exception_end', 'throttle_exception_throttle'];

export function orgJson(o: Org, policy: Policy | undefined) {
  return {
    id: o.id, parent_id: o.parent_id, name: o.name, slug: o.slug, description: o.description, email: o.email,
    hostname: o.hostname, policy: JSON.stringify(policy ? policyJson(policy) : {}), created: o.created,
    email_server_id: o.email_server_id, psa: o.psa, bandwidth_throttle: o.bandwidth_throttle,
    throttle_exception_days: o.throttle_exception_days, throttle_exception_start: o.throttle_exception_start,
    throttle_exception_end: o.throttle_exception_end, throttle_exception_throttle: o.throttle_exception_throttle,
    throttled: b(o.throttled), active: b(o.active),
    throttle_exception_dow: o.throttle_exception_dow ? JSON.parse(o.throttle_exception_dow) : null,
  };
}

export function policyJson(p: Policy) {
  return {
    space_quota: p.space_quota, max_file_size: p.max_file_size, purge_deleted: b(p.purge_deleted),
    trim_revisions: b(p.trim_revisions), excluded_extensions: p.excluded_extensions, company_id: p.company_id,
    purge_deleted_frequency: p.purge_deleted_frequency, user_purge_deleted: b(p.user_purge_deleted),
    user_trim_revisions: b(p.user_trim_revisions), user_create_backups: b(p.user_create_backups), id: p.id,
    trim_revisions_x: p.trim_revisions_x,
  };
}

export function personJson(p: Person) {
  return {
    id: p.id, first_name: p.first_name, last_name: p.last_name, email: p.email, username: p.username ?? '',
    company_id: p.company_id, space_quota: p.space_quota, mobile_phone: p.mobile_phone,
    mobile_service_provider_id: p.mobile_service_provider_id, site_admin: b(p.site_admin),
    system_admin: b(p.system_admin), use_ldap: b(p.use_ldap), default_root_id: p.default_root_id, created: p.created,
  };
}

export function rootJson(r: Root) {
  return { id: r.id, name: r.name, description: r.description, company_id: r.company_id, person_id: r.person_id,
    dept_share: b(r.dept_share), backup: b(r.backup) };
}

export function machineJson(m: Machine) {
  return {
    id: m.id, name: m.name, company_id: m.company_id, person_id: m.person_id, bandwidth_throttle: m.bandwidth_throttle,
    throttle_exception_dow: m.throttle_exception_dow ? JSON.parse(m.throttle_exception_dow) : null,
    throttle_exception_days: m.throttle_exception_days, throttle_exception_start: m.throttle_exception_start,
    throttle_exception_end: m.throttle_exception_end, throttle_exception_throttle: m.throttle_exception_throttle,
    created: m.created,
  };
}

/** Validates the throttle fields shared by machine/update and organization/create. */
function throttleFields(q: P): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const bt = parseIntField(q, 'bandwidth_throttle', { min: 0 });
  if (bt !== undefined) out.bandwidth_throttle = bt;
  if (q.throttle_exception_dow !== undefined && q.throttle_exception_dow !== '') {
    const s = q.throttle_exception_dow.trim();
    const inner = s.startsWith('[') && s.endsWith(']') ? s.slice(1, -1) : s;
    const items = inner.split(',').map((x) => x.trim()).filter((x) => x !== '');
    if (!items.every((x) => /^[0-6]$/.test(x))) {
      fail(400, 'throttle_exception_dow must be a list of integers 0-6 (0=Monday, 6=Sunday), e.g. [0,1,2,3]');
    }
    out.throttle_exception_dow = JSON.stringify([...new Set(items.map(Number))].sort());
  }
  if (q.throttle_exception_days !== undefined && q.throttle_exception_days !== '') {
    const d = q.throttle_exception_days.trim();
    if (d !== 'weekdays' && d !== 'weekends') fail(400, "throttle_exception_days must be either 'weekdays' or 'weekends'");
    out.throttle_exception_days = d;
    out.throttle_exception_dow = JSON.stringify(d === 'weekdays' ? [0, 1, 2, 3, 4] : [5, 6]);
  }
  for (const k of ['throttle_exception_start', 'throttle_exception_end']) {
    const t = q[k];
    if (t === undefined || t === '') continue;
    const m = /^(\d{2}):(\d{2})(?::(\d{2}))?$/.exec(t.trim());
    if (!m || Number(m[1]) > 23 || Number(m[2]) > 59 || (m[3] !== undefined && Number(m[3]) > 59)) {
      fail(400, `${k} must be a time of the form 'HH:mm' or 'HH:mm:ss'`);
    }
    out[k] = t.trim();
  }
  const tt = parseIntField(q, 'throttle_exception_throttle', { min: 0 });
  if (tt !== undefined) out.throttle_exception_throttle = tt;
  return out;
}

function pageNum(s: string | undefined): number {
  if (s === undefined) return 1;
  if (!/^\d{1,9}$/.test(s) || Number(s) < 1) return fail(404, `invalid page ${String(s).slice(0, 20)}`);
  return Number(s);
}

function paged<T>(total: number, page: number, fetch: (limit: number, offset: number) => T[]) {
  const pages = Math.max(1, Math.ceil(total / PAGE));
  if (page > pages) fail(404, `page ${page} does not exist (${pages} pages)`);
  return { items: fetch(PAGE, (page - 1) * PAGE), total_pages: pages, page };
}

export function registerManagement(api: FastifyInstance, v: Vboxx): void {
  const db = v.ctx.db;
  const st = v.st;
  const who = (req: FastifyRequest): Person => v.personForToken(params(req).session_token);

  // ---- auth and account ----------------------------------------------------------------------
  route(api, ['POST', 'GET'], '/auth', async (req, reply) => {
    const q = params(req);
    if (!q.username || !q.password) {
      return reply.code(400).send({ message: 'You must provide a username and password', success: false });
    }
    const token = await v.login(q.username, q.password);
    if (!token) return reply.code(401).send({ message: 'Invalid username or password', success: false });
    return { success: true, session_token: token };
  });

  route(api, ['GET'], '/account/info', async (req) => {
    const p = who(req);
    const roots = st.visibleRoots.all(p.id, p.company_id).map((r) => ({
      type: v.rootType(r), space_used: v.usage(r.id), id: r.id, name: r.name }));
    const usage = roots.reduce((a, r) => a + r.space_used, 0);
    return {
      id: p.id, first_name: p.first_name, last_name: p.last_name, display_name: v.displayName(p), email: p.email,
      root_id: p.default_root_id, space_usage: usage, space_usage_formatted: humanSize(usage),
      space_quota: p.space_quota, space_quota_formatted: p.space_quota != null ? humanSize(p.space_quota) : null,
      roots, success: true,
    };
  });

  const M = '/management';
  const getOrg = (id: number): Org => st.org.get(id) ?? fail(404, `unknown organization with id ${id}`);
  const getPerson = (id: number): Person => st.person.get(id) ?? fail(404, `unknown person with id ${id}`);
  const getRoot = (id: number): Root => st.root.get(id) ?? fail(404, `unknown root with id ${id}`);
  const getMachine = (id: number): Machine => st.machine.get(id) ?? fail(404, `unknown machine with id ${id}`);
  const forbid = (what: string): never => fail(403, `you do not have permission to ${what}`);
  const canReadOrg = (p: Person, id: number) => !!p.system_admin || p.company_id === id;
  const update = (table: string, id: number, fields: Record<string, unknown>) => {
    const keys = Object.keys(fields);
    if (!keys.length) return;
    db.prepare(`UPDATE ${table} SET ${keys.map((k) => `${k} = @${k}`).join(', ')} WHERE id = @id`).run({ ...fields, id });
  };
  const boolCol = (x: boolean | undefined) => (x === undefined ? undefined : x ? 1 : 0);
  const defined = (o: Record<string, unknown>) => Object.fromEntries(Object.entries(o).filter(([, x]) => x !== undefined));

  // ---- person --------------------------------------------------------------------------------
  const readPerson = (p: Person, id: number): Person => {
    const t = getPerson(id);
    if (t.id !== p.id && !v.adminsCompany(p, t.company_id)) forbid(`read person ${id}`);
    return t;
  };
  route(api, ['GET'], `${M}/person/`, async (req) => personJson(who(req)));
  route(api, ['GET'], `${M}/person/:id/`, async (req) => {
    const p = who(req);
    return personJson(readPerson(p, parseId((req.params as any).id, 'person')));
  });
  route(api, ['GET'], `${M}/person/:id/full/`, async (req) => {
    const p = who(req);
    const t = readPerson(p, parseId((req.params as any).id, 'person'));
    const org = st.org.get(t.company_id);
    return {
      ...personJson(t),
      company: org ? orgJson(org, st.policy.get(org.id)) : null,
      default_root: t.default_root_id != null && st.root.get(t.default_root_id) ? rootJson(st.root.get(t.default_root_id)!) : null,
      roots: st.visibleRoots.all(t.id, t.company_id).map(rootJson),
    };
  });

  route(api, ['POST'], `${M}/person/create/`, async (req) => {
    const p = who(req);
    const q = params(req);
    requireFields(q, ['company_id', 'first_name', 'last_name', 'email', 'password']);
    const companyId = parseIntField(q, 'company_id')!;
    getOrg(companyId);
    if (!v.adminsCompany(p, companyId)) forbid('create persons in this organization');
    const systemAdmin = parseBoolField(q, 'system_admin') ?? false;
    const siteAdmin = parseBoolField(q, 'site_admin') ?? false;
    if (systemAdmin && !p.system_admin) forbid('grant system_admin');
    const spaceQuota = parseIntField(q, 'space_quota', { min: 0 }) ?? null;
    const mspi = parseIntField(q, 'mobile_service_provider_id') ?? null;
    const createRoot = parseBoolField(q, 'create_root') ?? false;
    if (!/^[^\s@]+@[^\s@]+$/.test(q.email!)) fail(400, 'email must be an email address');
    // hashed before the check for an existing person, so the check and the insert stay one step
    const passwordHash = await hashPassword(q.password!);
    // Extension: `username` (the text's create has none; login also accepts the email).
    const username = q.username && q.username.trim() ? q.username.trim() : null;
    if (db.prepare('SELECT 1 FROM vboxx_persons WHERE email = ? OR (username IS NOT NULL AND username = ?)').get(q.email, username ?? q.email)) {
      fail(400, 'a person with this email or username already exists');
    }
    const created = isoMicro();
    const id = db.transaction(() => {
      const pid = Number(db.prepare(`INSERT INTO vboxx_persons (company_id, username, email, first_name, last_name,
          password_hash, space_quota, mobile_phone, mobile_service_provider_id, site_admin, system_admin, created)
          VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`).run(companyId, username, q.email, q.first_name, q.last_name,
        passwordHash, spaceQuota, q.mobile_phone ?? null, mspi, siteAdmin ? 1 : 0, systemAdmin ? 1 : 0, created)
        .lastInsertRowid);
      if (createRoot) {
        const rid = Number(db.prepare('INSERT INTO vboxx_roots (company_id, person_id, name, created) VALUES (?, ?, ?, ?)')
          .run(companyId, pid, 'Files', created).lastInsertRowid);
        db.prepare('UPDATE vboxx_persons SET default_root_id = ? WHERE id = ?').run(rid, pid);
        v.ensureRootDir(rid);
        v.record(ACT.rootCreated, p, { type: 'root', text: 'Files', company: companyId, root: rid, person: pid });
      }
      v.record(ACT.personCreated, p, { type: 'person', text: `${q.first_name} ${q.last_name}`, company: companyId, person: pid });
      return pid;
    })();
    return { full_uri: `/1/management/person/${id}/full/`, root_created: createRoot, code: 'success', id,
      uri: `/1/management/person/${id}/` };
  });

  route(api, ['POST'], `${M}/person/update/`, async (req) => {
    const p = who(req);
    const q = params(req);
    requireFields(q, ['id']);
    const passwordHash = q.password ? await hashPassword(q.password) : undefined;
    const t = getPerson(parseIntField(q, 'id')!);
    const admin = v.adminsCompany(p, t.company_id);
    if (t.id !== p.id && !admin) forbid(`update person ${t.id}`);
    const fields: Record<string, unknown> = defined({
      first_name: q.first_name || undefined, last_name: q.last_name || undefined,
      mobile_phone: q.mobile_phone, password_hash: passwordHash,
    });
    Object.assign(fields, cleared(q, ['mobile_phone', 'mobile_service_provider_id']));
    const mspi = parseIntField(q, 'mobile_service_provider_id');
    if (mspi !== undefined) fields.mobile_service_provider_id = mspi;
    const privileged = defined({
      company_id: parseIntField(q, 'company_id'), space_quota: parseIntField(q, 'space_quota', { min: 0 }),
      site_admin: boolCol(parseBoolField(q, 'site_admin')), system_admin: boolCol(parseBoolField(q, 'system_admin')),
      ...cleared(q, ['space_quota']),
    });
    if (Object.keys(privileged).length) {
      if (!admin) forbid('change company, quota or admin rights');
      if (privileged.system_admin !== undefined && !p.system_admin) forbid('change system_admin');
      if (privileged.company_id !== undefined) {
        getOrg(privileged.company_id as number);
        if (!v.adminsCompany(p, privileged.company_id as number)) forbid('move a person into that organization');
      }
    }
    db.transaction(() => {
      update('vboxx_persons', t.id, { ...fields, ...privileged });
      v.record(ACT.personUpdated, p, { type: 'person', text: `${q.first_name ?? t.first_name} ${q.last_name ?? t.last_name}`,
        company: (privileged.company_id as number | undefined) ?? t.company_id, person: t.id });
    })();
    return { full_uri: `/1/management/person/${t.id}/full/`, code: 'success', id: t.id, uri: `/1/management/person/${t.id}/` };
  });

  // ---- activity ------------------------------------------------------------------------------
  const ACT_COLS = `id, acted_on_type, acted_on_text, actor_type, actor_company_id, actor_machine_id, actor_person_id,
    actor_text, data_text, created, acted_on_machine_id, acted_on_company_id, acted_on_person_id, acted_on_root_id,
    num_alerts, action_text, activity_type_id`;
  route(api, ['GET'], `${M}/activity/types/`, async (req) => {
    who(req);
    return db.prepare('SELECT * FROM vboxx_activity_types ORDER BY id').all().map((t: any) => ({
      id: t.id, activity: t.activity, machine_scope: b(t.machine_scope), user_scope: b(t.user_scope), system_scope: b(t.system_scope) }));
  });
  const activityList = async (req: FastifyRequest) => {
    const p = who(req);
    const prm = req.params as Record<string, string>;
    const et = prm.etype;
    const id = parseId(prm.id, et ?? 'entity');
    const page = pageNum(prm.page);
    let where: string;
    if (et === 'organization') {
      getOrg(id);
      if (!v.adminsCompany(p, id)) forbid(`read the activities of organization ${id}`);
      where = 'acted_on_company_id = @id';
    } else if (et === 'person') {
      const t = getPerson(id);
      if (t.id !== p.id && !v.adminsCompany(p, t.company_id)) forbid(`read the activities of person ${id}`);
      where = '(acted_on_person_id = @id OR actor_person_id = @id)';
    } else {
      return fail(404, `unknown entity type ${String(et).slice(0, 40)} (organization or person)`);
    }
    const total = (db.prepare(`SELECT COUNT(*) AS n FROM vboxx_activities WHERE ${where}`).get({ id }) as { n: number }).n;
    const r = paged(total, page, (limit, offset) => db.prepare(
      `SELECT ${ACT_COLS} FROM vboxx_activities WHERE ${where} ORDER BY id DESC LIMIT @limit OFFSET @offset`).all({ id, limit, offset }));
    return { activities: r.items, total_activities: total, total_pages: r.total_pages, page: r.page };
  };
  route(api, ['GET'], `${M}/activity/:etype/:id/`, activityList);
  route(api, ['GET'], `${M}/activity/:etype/:id/page/:page/`, activityList);
  route(api, ['GET'], `${M}/activity/:id/`, async (req) => {
    const p = who(req);
    const id = parseId((req.params as any).id, 'activity');
    const a = db.prepare(`SELECT ${ACT_COLS} FROM vboxx_activities WHERE id = ?`).get(id) as any;
    if (!a) return fail(404, `unknown activity with id ${id}`);
    const mine = a.actor_person_id === p.id || a.acted_on_person_id === p.id;
    const company = a.acted_on_company_id ?? a.actor_company_id;
    if (!mine && !p.system_admin && !(company != null && v.adminsCompany(p, company))) forbid(`read activity ${id}`);
    return a;
  });
  route(api, ['POST'], `${M}/activity/create/`, async (req) => {
    const p = who(req);
    const q = params(req);
    requireFields(q, ['activity_type_id', 'actor_id', 'actor_type', 'acted_on_id', 'acted_on_type']);
    const typeId = parseIntField(q, 'activity_type_id')!;
    const actorId = parseIntField(q, 'actor_id')!;
    const onId = parseIntField(q, 'acted_on_id')!;
    const type = st.activityType.get(typeId) ?? fail(404, `unknown activity type with id ${typeId}`);
    if (!['person', 'site', 'machine'].includes(q.actor_type!)) fail(400, "actor_type must be one of 'person', 'site', 'machine'");
    if (!['person', 'site', 'machine', 'root'].includes(q.acted_on_type!)) {
      fail(400, "acted_on_type must be one of 'person', 'site', 'machine', 'root'");
    }
    // Resolve both ends to their organization so rights and the organization's feed follow them.
    const companyOf = (kind: string, id: number): number => {
      if (kind === 'person') return getPerson(id).company_id;
      if (kind === 'machine') return getMachine(id).company_id;
      if (kind === 'root') return getRoot(id).company_id;
      return getOrg(id).id;
    };
    const actorCompany = companyOf(q.actor_type!, actorId);
    const onCompany = companyOf(q.acted_on_type!, onId);
    const selfOnly = q.actor_type === 'person' && actorId === p.id && onCompany === p.company_id;
    if (!selfOnly && !(v.adminsCompany(p, actorCompany) && v.adminsCompany(p, onCompany))) forbid('create this activity');
    const id = Number(st.addActivity.run({
      activity_type_id: typeId, actor_type: q.actor_type, actor_text: q.actor_text ?? null,
      actor_company_id: actorCompany, actor_machine_id: q.actor_type === 'machine' ? actorId : null,
      actor_person_id: q.actor_type === 'person' ? actorId : null, action_text: type.activity,
      acted_on_type: q.acted_on_type, acted_on_text: q.acted_on_text ?? null, acted_on_company_id: onCompany,
      acted_on_machine_id: q.acted_on_type === 'machine' ? onId : null,
      acted_on_person_id: q.acted_on_type === 'person' ? onId : null,
      acted_on_root_id: q.acted_on_type === 'root' ? onId : null, data_text: q.data_text ?? null, created: isoMicro(),
    }).lastInsertRowid);
    return { code: 'success', id, uri: `/1/management/activity/${id}/` };
  });

  // ---- policy --------------------------------------------------------------------------------
  route(api, ['GET'], `${M}/policy/:id/`, async (req) => {
    const p = who(req);
    const id = parseId((req.params as any).id, 'policy');
    const pol = st.policy.get(id) ?? fail(404, `unknown policy with id ${id}`);
    if (!canReadOrg(p, pol.company_id)) forbid(`read policy ${id}`);
    return policyJson(pol);
  });
  const policyFields = (q: P): Record<string, unknown> => {
    const out: Record<string, unknown> = defined({
      space_quota: parseIntField(q, 'space_quota', { min: 0 }),
      max_file_size: parseIntField(q, 'max_file_size', { min: 0 }),
      purge_deleted: boolCol(parseBoolField(q, 'purge_deleted')),
      trim_revisions: boolCol(parseBoolField(q, 'trim_revisions')),
      user_purge_deleted: boolCol(parseBoolField(q, 'user_purge_deleted')),
      purge_deleted_frequency: parseIntField(q, 'purge_deleted_frequency', { min: 0 }),
      user_trim_revisions: boolCol(parseBoolField(q, 'user_trim_revisions')),
      user_create_backups: boolCol(parseBoolField(q, 'user_create_backups')),
      trim_revisions_x: parseIntField(q, 'trim_revisions_x', { min: 0 }),
    });
    for (const k of ['max_file_size', 'purge_deleted_frequency', 'trim_revisions_x']) if (out[k] !== undefined) out[k] = String(out[k]);
    if (q.excluded_extensions !== undefined) {
      const list = q.excluded_extensions.split(',').map((e) => e.trim()).filter(Boolean);
      if (!list.every((e) => /^(\*?\.)?[^\s,./\\*]+$/.test(e))) fail(400, 'excluded_extensions must be a comma-separated list of extensions, e.g. "*.mp3,*.ogg"');
      out.excluded_extensions = list.join(',');
    }
    return out;
  };
  route(api, ['POST'], `${M}/policy/update/`, async (req) => {
    const p = who(req);
    const q = params(req);
    requireFields(q, ['id']);
    const id = parseIntField(q, 'id')!;
    const pol = st.policy.get(id) ?? fail(404, `unknown policy with id ${id}`);
    if (!v.adminsCompany(p, pol.company_id)) forbid('set policies');
    const f = { ...policyFields(q), ...cleared(q, ['space_quota']),
      ...cleared(q, ['max_file_size', 'purge_deleted_frequency', 'trim_revisions_x'], '') };
    db.transaction(() => {
      update('vboxx_policies', id, f);
      v.record(ACT.policyUpdated, p, { type: 'site', text: st.org.get(pol.company_id)?.name, company: pol.company_id });
    })();
    return { code: 'success', id, uri: `/1/management/policy/${id}/` };
  });

  // ---- root ----------------------------------------------------------------------------------
  route(api, ['GET'], `${M}/root/:id/`, async (req) => {
    const p = who(req);
    const r = getRoot(parseId((req.params as any).id, 'root'));
    if (!v.canAccessRoot(p, r) && !v.adminsCompany(p, r.company_id)) forbid(`read root ${r.id}`);
    return rootJson(r);
  });
  const rootOwner = (p: Person, q: P, companyId: number): number | null | undefined => {
    const pid = parseIntField(q, 'person_id');
    if (pid === undefined) return undefined;
    const owner = getPerson(pid);
    if (owner.company_id !== companyId) fail(400, `person ${pid} is not in organization ${companyId}`);
    return pid;
  };
  route(api, ['POST'], `${M}/root/create/`, async (req) => {
    const p = who(req);
    const q = params(req);
    requireFields(q, ['company_id', 'name']);
    const companyId = parseIntField(q, 'company_id')!;
    getOrg(companyId);
    if (!v.adminsCompany(p, companyId)) forbid('create roots in this organization');
    const personId = rootOwner(p, q, companyId) ?? null;
    const isDefault = parseBoolField(q, 'default') ?? false;
    const dept = parseBoolField(q, 'dept_share') ?? false;
    const backup = parseBoolField(q, 'backup') ?? false; // extension: account/info type "backup"
    if (isDefault && personId == null) fail(400, 'default requires person_id');
    const id = db.transaction(() => {
      const rid = Number(db.prepare(`INSERT INTO vboxx_roots (company_id, person_id, name, description, dept_share, backup, created)
        VALUES (?, ?, ?, ?, ?, ?, ?)`).run(companyId, personId, q.name, q.description ?? '', dept ? 1 : 0, backup ? 1 : 0, isoMicro()).lastInsertRowid);
      if (isDefault) db.prepare('UPDATE vboxx_persons SET default_root_id = ? WHERE id = ?').run(rid, personId);
      v.record(ACT.rootCreated, p, { type: 'root', text: q.name, company: companyId, root: rid, person: personId });
      return rid;
    })();
    v.ensureRootDir(id);
    return { code: 'success', id, uri: `/1/management/root/${id}/` };
  });
  route(api, ['POST'], `${M}/root/update/`, async (req) => {
    const p = who(req);
    const q = params(req);
    requireFields(q, ['id']);
    const r = getRoot(parseIntField(q, 'id')!);
    if (!v.adminsCompany(p, r.company_id)) forbid(`update root ${r.id}`);
    const companyId = parseIntField(q, 'company_id') ?? r.company_id;
    if (companyId !== r.company_id) { getOrg(companyId); if (!v.adminsCompany(p, companyId)) forbid('move a root into that organization'); }
    const personId = rootOwner(p, q, companyId);
    const isDefault = parseBoolField(q, 'default');
    const ownerAfter = personId !== undefined ? personId : r.person_id;
    if (isDefault && ownerAfter == null) fail(400, 'default requires a person_id');
    if (q.name !== undefined && q.name.trim() === '') fail(400, 'name must not be empty');
    db.transaction(() => {
      update('vboxx_roots', r.id, defined({ company_id: companyId, name: q.name, description: q.description, person_id: personId }));
      if (isDefault) db.prepare('UPDATE vboxx_persons SET default_root_id = ? WHERE id = ?').run(r.id, ownerAfter);
      v.record(ACT.rootUpdated, p, { type: 'root', text: q.name ?? r.name, company: companyId, root: r.id });
    })();
    return { code: 'success', id: r.id, uri: `/1/management/root/${r.id}/` };
  });

  // ---- machine -------------------------------------------------------------------------------
  route(api, ['GET'], `${M}/machine/:id/`, async (req) => {
    const p = who(req);
    const m = getMachine(parseId((req.params as any).id, 'machine'));
    if (m.person_id !== p.id && !v.adminsCompany(p, m.company_id)) forbid(`read machine ${m.id}`);
    return machineJson(m);
  });
  route(api, ['POST'], `${M}/machine/update/`, async (req) => {
    const p = who(req);
    const q = params(req);
    requireFields(q, ['id']);
    const m = getMachine(parseIntField(q, 'id')!);
    if (!v.adminsCompany(p, m.company_id)) forbid(`update machine ${m.id}`);
    const f = { ...throttleFields(q), ...cleared(q, THROTTLE) };
    db.transaction(() => {
      update('vboxx_machines', m.id, f);
      v.record(ACT.machineUpdated, p, { type: 'machine', text: m.name, company: m.company_id, machine: m.id });
    })();
    return { code: 'success', id: m.id, uri: `/1/management/machine/${m.id}/` };
  });

  // ---- organization --------------------------------------------------------------------------
  route(api, ['GET'], `${M}/organization/:id/`, async (req) => {
    const p = who(req);
    const o = getOrg(parseId((req.params as any).id, 'organization'));
    if (!canReadOrg(p, o.id)) forbid(`read organization ${o.id}`);
    return orgJson(o, st.policy.get(o.id));
  });

  const lists: Record<string, { total: string; rows: string; map: (r: any) => unknown }> = {
    organizations: {
      total: 'SELECT COUNT(*) AS n FROM vboxx_orgs WHERE parent_id = @id',
      rows: 'SELECT * FROM vboxx_orgs WHERE parent_id = @id ORDER BY id LIMIT @limit OFFSET @offset',
      map: (o: Org) => orgJson(o, st.policy.get(o.id)),
    },
    roots: {
      total: 'SELECT COUNT(*) AS n FROM vboxx_roots WHERE company_id = @id',
      rows: `SELECT r.*, o.name AS company_name, p.first_name, p.last_name, p.username, p.email
             FROM vboxx_roots r JOIN vboxx_orgs o ON o.id = r.company_id LEFT JOIN vboxx_persons p ON p.id = r.person_id
             WHERE r.company_id = @id ORDER BY r.id LIMIT @limit OFFSET @offset`,
      map: (r: any) => ({
        company_id: r.company_id, company_name: r.company_name, root_id: r.id, name: r.name,
        physical_space: v.usage(r.id), file_count: st.rootFileCount.get(r.id)!.n,
        revision_count: st.rootRevisionCount.get(r.id)!.n, created: r.created, dept_share: b(r.dept_share),
        backup: b(r.backup), person_id: r.person_id, first_name: r.first_name ?? null, last_name: r.last_name ?? null,
        username: r.person_id == null ? null : (r.username ?? ''), email: r.email ?? null,
      }),
    },
    machines: {
      total: 'SELECT COUNT(*) AS n FROM vboxx_machines WHERE company_id = @id',
      rows: 'SELECT * FROM vboxx_machines WHERE company_id = @id ORDER BY id LIMIT @limit OFFSET @offset',
      map: machineJson,
    },
    persons: {
      total: 'SELECT COUNT(*) AS n FROM vboxx_persons WHERE company_id = @id',
      rows: 'SELECT * FROM vboxx_persons WHERE company_id = @id ORDER BY id LIMIT @limit OFFSET @offset',
      map: (x: Person) => ({ id: x.id, first_name: x.first_name, last_name: x.last_name, email: x.email,
        use_ldap: b(x.use_ldap), username: x.username ?? '' }),
    },
  };
  for (const [kind, def] of Object.entries(lists)) {
    const h = async (req: FastifyRequest) => {
      const p = who(req);
      const prm = req.params as Record<string, string>;
      const o = getOrg(parseId(prm.id, 'organization'));
      if (!v.adminsCompany(p, o.id)) forbid(`list the ${kind} of organization ${o.id}`);
      const total = (db.prepare(def.total).get({ id: o.id }) as { n: number }).n;
      const r = paged(total, pageNum(prm.page), (limit, offset) => db.prepare(def.rows).all({ id: o.id, limit, offset }).map(def.map));
      return { [`total_${kind}`]: total, total_pages: r.total_pages, page: r.page, [kind]: r.items };
    };
    route(api, ['GET'], `${M}/organization/:id/${kind}/`, h);
    route(api, ['GET'], `${M}/organization/:id/${kind}/page/:page/`, h);
  }

  /** The text's create takes `policy`: a JSON object of policy fields ("{}" = defaults). */
  const parsePolicy = (s: string): P => {
    let obj: unknown;
    try { obj = JSON.parse(s); } catch { return fail(400, 'policy must be a JSON object of policy fields, e.g. {"space_quota": 1073741824, "max_file_size": 300}'); }
    if (!obj || typeof obj !== 'object' || Array.isArray(obj)) return fail(400, 'policy must be a JSON object of policy fields');
    const out: P = {};
    for (const [k, x] of Object.entries(obj as Record<string, unknown>)) if (x !== null && x !== undefined) out[k] = String(x);
    return out;
  };
  const uniqueOrg = (name?: string, slug?: string, except = 0) => {
    if (name !== undefined && db.prepare('SELECT 1 FROM vboxx_orgs WHERE name = ? AND id != ?').get(name, except)) {
      fail(400, 'name must be unique in the system');
    }
    if (slug !== undefined) {
      if (!/^[a-z0-9][a-z0-9-_]*$/i.test(slug)) fail(400, 'slug may contain only letters, digits, - and _');
      if (db.prepare('SELECT 1 FROM vboxx_orgs WHERE slug = ? AND id != ?').get(slug, except)) fail(400, 'slug must be unique in the system');
    }
  };
  const emailOk = (e: string) => { if (!/^[^\s@]+@[^\s@]+$/.test(e)) fail(400, 'contact_email must be an email address'); };

  route(api, ['POST'], `${M}/organization/create/`, async (req) => {
    const p = who(req);
    const q = params(req);
    requireFields(q, ['name', 'contact_email', 'slug', 'policy', 'parent_id']);
    if (!p.system_admin) forbid('create organizations');
    const parentId = parseIntField(q, 'parent_id')!;
    getOrg(parentId);
    emailOk(q.contact_email!);
    uniqueOrg(q.name, q.slug);
    const pol = policyFields(parsePolicy(q.policy!));
    const t = throttleFields(q);
    const id = db.transaction(() => {
      const oid = Number(db.prepare(`INSERT INTO vboxx_orgs (parent_id, name, slug, description, email, hostname, created)
        VALUES (?, ?, ?, ?, ?, ?, ?)`).run(parentId, q.name, q.slug, q.description ?? '', q.contact_email, q.hostname ?? '', isoMicro()).lastInsertRowid);
      update('vboxx_orgs', oid, t);
      db.prepare('INSERT INTO vboxx_policies (id, company_id) VALUES (?, ?)').run(oid, oid);
      update('vboxx_policies', oid, pol);
      v.record(ACT.orgCreated, p, { type: 'site', text: q.name, company: oid });
      return oid;
    })();
    return { code: 'success', id, uri: `/1/management/organization/${id}/` };
  });

  route(api, ['POST'], `${M}/organization/update/`, async (req) => {
    const p = who(req);
    const q = params(req);
    requireFields(q, ['id']);
    const o = getOrg(parseIntField(q, 'id')!);
    if (!v.adminsCompany(p, o.id)) forbid(`update organization ${o.id}`);
    if (q.name !== undefined && q.name.trim() === '') fail(400, 'name must not be empty');
    uniqueOrg(q.name, q.slug, o.id);
    if (q.contact_email !== undefined) emailOk(q.contact_email);
    const pol = q.policy !== undefined ? policyFields(parsePolicy(q.policy)) : {};
    db.transaction(() => {
      update('vboxx_orgs', o.id, defined({ name: q.name, slug: q.slug, description: q.description, email: q.contact_email }));
      update('vboxx_policies', o.id, pol);
      v.record(ACT.orgUpdated, p, { type: 'site', text: q.name ?? o.name, company: o.id });
    })();
    return { code: 'success', id: o.id, uri: `/1/management/organization/${o.id}/` };
  });
}
