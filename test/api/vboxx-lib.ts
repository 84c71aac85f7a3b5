// Helpers for the vBoxx API conformance tests: raw HTTP (paths sent byte for byte, no URL
// normalization, so encoded traversal really reaches the server), login and JSON shortcuts.
import http from 'node:http';
import type { TestFn } from 'ava';
import { startEmulator } from '../helpers/emulator.js';
import type { Emulator } from '../../src/emulator/server.js';

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  text: string;
  json: any;
}

export function raw(base: string, method: string, path: string,
  o: { headers?: Record<string, string>; body?: Buffer | string } = {}): Promise<RawResponse> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, method, path, headers: o.headers ?? {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks);
        const text = body.toString('utf8');
        let json: any;
        try { json = text ? JSON.parse(text) : undefined; } catch { json = undefined; }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, text, json });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    if (o.body !== undefined) req.end(o.body); else req.end();
  });
}

export async function login(base: string, username: string, password: string): Promise<string> {
  const r = await fetch(`${base}/1/auth`, { method: 'POST', body: new URLSearchParams({ username, password }) });
  const j = (await r.json()) as { session_token?: string };
  if (!j.session_token) throw new Error(`login of ${username} failed: ${r.status}`);
  return j.session_token;
}

/** Encodes each component of a path ("a b/c" -> "a%20b/c"). */
export const enc = (p: string) => p.split('/').map(encodeURIComponent).join('/');

export class Api {
  constructor(public base: string, public token: string) {}
  url(path: string, q: Record<string, string> = {}): string {
    const qs = new URLSearchParams({ ...q, session_token: this.token });
    return `${path}${path.includes('?') ? '&' : '?'}${qs}`;
  }
  get(path: string, q: Record<string, string> = {}, headers: Record<string, string> = {}) {
    return raw(this.base, 'GET', this.url(path, q), { headers });
  }
  post(path: string, form: Record<string, string> = {}, q: Record<string, string> = {}) {
    return raw(this.base, 'POST', this.url(path, q), {
      headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(form).toString() });
  }
  put(path: string, body: Buffer | string, q: Record<string, string> = {}, headers: Record<string, string> = {}) {
    return raw(this.base, 'PUT', this.url(path, q), { headers: { 'content-type': 'application/octet-stream', ...headers }, body });
  }
  /** PUT of a file at root/path; the JSON answer. */
  async putFile(root: number, path: string, body: Buffer | string, q: Record<string, string> = {}) {
    const r = await this.put(`/1/files_put/${root}/${enc(path)}`, body, q);
    if (r.status !== 200) throw new Error(`files_put ${path}: ${r.status} ${r.text}`);
    return r.json;
  }
  async meta(root: number, path: string, q: Record<string, string> = {}) {
    return this.get(`/1/metadata/${root}/${enc(path)}`, q);
  }
}

export const DEMO_FILES_ROOT = 2;
export const DEMO_TEAM_ROOT = 3;
export const ADMIN_ROOT = 1;
export const DEMO_ORG = 2;
export const SYSTEM_ORG = 1;

/** A fresh organization with a site admin and a plain user, each with a default root, made by the admin. */
export async function newOrg(admin: Api, slug: string, policy: Record<string, unknown> = {}) {
  const org = await admin.post('/1/management/organization/create/', {
    name: `Org ${slug}`, slug, contact_email: `${slug}@example.test`, parent_id: '1', policy: JSON.stringify(policy) });
  if (org.status !== 200) throw new Error(`organization/create: ${org.status} ${org.text}`);
  const companyId = org.json.id as number;
  const mk = async (who: string, extra: Record<string, string>) => {
    const r = await admin.post('/1/management/person/create/', {
      company_id: String(companyId), first_name: who, last_name: slug, email: `${who}@${slug}.test`,
      password: `${who}-pw`, create_root: 'true', ...extra });
    if (r.status !== 200) throw new Error(`person/create: ${r.status} ${r.text}`);
    const token = await login(admin.base, `${who}@${slug}.test`, `${who}-pw`);
    const api = new Api(admin.base, token);
    const info = (await api.get('/1/account/info/')).json;
    return { id: r.json.id as number, api, root: info.root_id as number };
  };
  const site = await mk('site', { site_admin: 'true' });
  const user = await mk('user', {});
  return { companyId, site, user };
}

export interface DemoServer { emu: Emulator; demo: Api; admin: Api }

/**
 * One reference server for a test file, with the demo user and the system admin logged in;
 * `ready` hands them over once they are up, and the server is closed after the last test.
 */
export function useDemoServer(test: TestFn, ready: (s: DemoServer) => void): void {
  let emu: Emulator | undefined;
  test.before(async () => {
    emu = await startEmulator({ rsync: false });
    ready({
      emu,
      demo: new Api(emu.url, await login(emu.url, 'demo', 'demo-password')),
      admin: new Api(emu.url, await login(emu.url, 'admin', 'admin-password')),
    });
  });
  test.after.always(async () => { await emu?.close(); });
}

