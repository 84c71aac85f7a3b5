// Starts a reference server for a test, in this process, on a free loopback port.
import { createEmulator, type Emulator } from '../../src/emulator/server.js';
import type { EmulatorOptions } from '../../src/emulator/context.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Without opts.dataDir the server gets a fresh temporary directory that close() removes (a demo
 * holds over 10 MiB); a given dataDir is kept, so restart tests can reopen it.
 */
export async function startEmulator(opts: Partial<EmulatorOptions> = {}): Promise<Emulator> {
  const temp = opts.dataDir ? undefined : mkdtempSync(join(tmpdir(), 'cloudmount-test-serve-'));
  let em: Emulator;
  try {
    em = await createEmulator({ demo: true, ...opts, ...(temp ? { dataDir: temp } : {}) });
  } catch (e) {
    if (temp) rmSync(temp, { recursive: true, force: true });
    throw e;
  }
  if (temp) {
    const close = em.close.bind(em);
    em.close = async () => {
      try { await close(); } finally { rmSync(temp, { recursive: true, force: true }); }
    };
  }
  return em;
}

export async function serverStats(url: string): Promise<Record<string, number>> {
  const r = await fetch(`${url}/_emulator/stats`);
  return (await r.json()) as Record<string, number>;
}

export async function resetStats(url: string): Promise<void> {
  await fetch(`${url}/_emulator/stats/reset`, { method: 'POST' });
}

/** Changes fault injection of a running server (in-process or child). */
export async function setFaults(url: string, f: { failRate?: number; latencyMs?: number; rateLimit?: number }): Promise<void> {
  const body = new URLSearchParams();
  for (const [k, v] of Object.entries(f)) if (v !== undefined) body.set(k, String(v));
  const r = await fetch(`${url}/_emulator/faults`, { method: 'POST', body });
  if (!r.ok) throw new Error(`faults: HTTP ${r.status}`);
}

export const MAXXO_DEMO = { email: 'demo@maxxo.test', password: 'demo-password' } as const;
export const MAXXO_FRIEND = { email: 'friend@maxxo.test', password: 'friend-password' } as const;

/** A Maxxo token for email/password (GET /api/1/auth/token); throws on failure. */
export async function maxxoToken(url: string, email: string = MAXXO_DEMO.email, password: string = MAXXO_DEMO.password): Promise<string> {
  const q = new URLSearchParams({ email, password });
  const r = await fetch(`${url}/api/1/auth/token?${q}`);
  const b = (await r.json()) as { token?: string; error?: string };
  if (!r.ok || !b.token) throw new Error(`maxxo auth failed: ${r.status} ${b.error ?? ''}`);
  return b.token;
}

/**
 * Creates a Maxxo account on a running server (in-process or child) through the emulator's
 * control route; quota and receivingQuota in bytes. Its rsync module exists from then on.
 */
export async function createMaxxoAccount(url: string, a: {
  email: string; password: string; fullname?: string; quota?: number; receivingQuota?: number; acceptAll?: boolean;
}): Promise<{ email: string; login: string }> {
  const body = new URLSearchParams({ email: a.email, password: a.password });
  if (a.fullname) body.set('fullname', a.fullname);
  if (a.quota !== undefined) body.set('quota', String(a.quota));
  if (a.receivingQuota !== undefined) body.set('receiving_quota', String(a.receivingQuota));
  if (a.acceptAll) body.set('accept_all', '1');
  const r = await fetch(`${url}/_emulator/maxxo/users`, { method: 'POST', body });
  const b = (await r.json()) as { email: string; login: string; error?: string };
  if (!r.ok) throw new Error(`create maxxo account: ${r.status} ${b.error ?? ''}`);
  return b;
}

export interface MaxxoReply {
  status: number;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  body: any;
  headers: Headers;
}

type FormInput = Record<string, string | string[]> | Array<[string, string]>;

function toSearch(f: FormInput): URLSearchParams {
  const u = new URLSearchParams();
  const entries = Array.isArray(f) ? f : Object.entries(f);
  for (const [k, v] of entries) for (const x of Array.isArray(v) ? v : [v]) u.append(k, x);
  return u;
}

/**
 * One Maxxo API call: `path` is below /api/1 (e.g. "ops/list"); query and form accept repeated
 * PHP-style keys (`{'file[]': ['a', 'b']}`); multipart sends a FormData as is.
 */
export async function maxxoCall(url: string, method: string, path: string, o: {
  token?: string; query?: FormInput; form?: FormInput; multipart?: FormData; headers?: Record<string, string>;
} = {}): Promise<MaxxoReply> {
  const headers: Record<string, string> = { ...(o.headers ?? {}) };
  if (o.token) headers.token = o.token;
  const q = o.query ? `?${toSearch(o.query)}` : '';
  let body: BodyInit | undefined;
  if (o.form) body = toSearch(o.form);
  else if (o.multipart) body = o.multipart;
  const r = await fetch(`${url}/api/1/${path}${q}`, { method, headers, body });
  const text = await r.text();
  let parsed: unknown = text;
  try { parsed = text ? JSON.parse(text) : undefined; } catch { /* keep text */ }
  return { status: r.status, body: parsed, headers: r.headers };
}
