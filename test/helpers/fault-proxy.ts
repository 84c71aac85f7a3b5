// Deterministic fault injection between a client and a reference server, for read tests that
// must hit one exact failure (the server's own --fail-rate is random and its drop always cuts at
// the same 11 bytes of a fake body). Two forms:
//
// - HTTP (vBoxx, Maxxo API): every request is forwarded; a rule picks the Nth request matching a
//   method and path and replaces its answer by a fault: the real status and headers (so the
//   content-length still promises the whole body) and K real body bytes, then the connection is
//   closed ("cut") or kept open silent ("stall", until release() or close()); or a made-up answer
//   ("answer": e.g. 200 with an error JSON, no version headers).
// - TCP (Maxxo's rsync daemon): the Nth connection's server->client stream is cut or stalled after
//   K bytes; everything before that is forwarded unchanged.
//
// Runs in the test process: it must not be the process that serves a mount (async sockets only).
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';

export type Fault =
  | { kind: 'cut'; afterBytes: number }
  | { kind: 'stall'; afterBytes: number }
  /** A made-up answer; with `cut` the connection closes after its body (headers may promise more). */
  | { kind: 'answer'; status: number; headers?: Record<string, string>; body: string | Buffer; cut?: boolean };

export interface HttpRule {
  method?: string;
  /** Matched against the path without the query string. */
  path?: RegExp;
  /** Which matching request (1-based) gets the fault; later ones pass (default 1). */
  nth?: number;
  /** How many matching requests from nth on get it (default 1; Infinity = all). */
  times?: number;
  fault: Fault;
}

export interface Armed {
  /** Requests this rule hit so far. */
  readonly hits: number;
  /**
   * Resolves when the fault took effect (its K bytes went out and the answer was cut or stalled,
   * or the made-up answer was sent) for the last of `times` requests (the first, for Infinity).
   */
  readonly fired: Promise<void>;
  /** Stops the rule (requests pass again). */
  disarm(): void;
}

export interface LogEntry { method: string; path: string; range?: string; status?: number; fault?: Fault['kind'] }

export interface HttpFaultProxy {
  url: string;
  port: number;
  /** Every request seen, in arrival order. */
  readonly log: LogEntry[];
  add(rule: HttpRule): Armed;
  /** Ends stalled answers: 'cut' closes them, 'finish' sends the rest of their body. */
  release(how?: 'cut' | 'finish'): void;
  close(): Promise<void>;
}

interface RuleState { rule: HttpRule; seen: number; hits: number; active: boolean; done: () => void; fired: Promise<void> }

function armedOf(st: RuleState): Armed {
  return {
    get hits() { return st.hits; },
    fired: st.fired,
    disarm() { st.active = false; },
  };
}

function newRule(rule: HttpRule): RuleState {
  let done!: () => void;
  const fired = new Promise<void>((r) => { done = r; });
  return { rule, seen: 0, hits: 0, active: true, done, fired };
}

/** The fault this request gets, if any (counts the request against every matching rule). */
function pick(rules: RuleState[], method: string, path: string): RuleState | undefined {
  let out: RuleState | undefined;
  for (const st of rules) {
    if (!st.active) continue;
    const r = st.rule;
    if (r.method && r.method.toUpperCase() !== method) continue;
    if (r.path && !r.path.test(path)) continue;
    st.seen++;
    const nth = r.nth ?? 1;
    const times = r.times ?? 1;
    if (st.seen < nth || st.seen >= nth + times || out) continue;
    out = st;
    st.hits++;
  }
  return out;
}

const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'proxy-connection', 'upgrade', 'te', 'trailer']);

export async function startHttpFaultProxy(target: string): Promise<HttpFaultProxy> {
  const t = new URL(target);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  const rules: RuleState[] = [];
  const log: LogEntry[] = [];
  const stalled = new Set<{ res: ServerResponse; up: IncomingMessage; rest: Buffer }>();
  const sockets = new Set<net.Socket>();

  function cut(res: ServerResponse): void {
    // FIN after what was written (the client reads exactly those bytes, then a premature end);
    // destroyed for sure shortly after, whatever the client does.
    const s = res.socket;
    if (!s) return;
    s.end();
    setTimeout(() => s.destroy(), 200).unref();
  }

  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    const entry: LogEntry = { method: req.method ?? 'GET', path, ...(typeof req.headers.range === 'string' ? { range: req.headers.range } : {}) };
    log.push(entry);
    const hit = pick(rules, entry.method, path);
    const fault = hit?.rule.fault;
    if (fault) entry.fault = fault.kind;
    // `fired` means the fault took effect (its bytes went out), not merely that it was picked
    const fired = () => { if (hit && (hit.hits >= (hit.rule.times ?? 1) || hit.rule.times === Infinity)) hit.done(); };
    if (fault?.kind === 'answer') {
      // The request still reaches nobody: a made-up answer, as from a broken gateway.
      req.resume();
      const body = Buffer.from(fault.body);
      entry.status = fault.status;
      res.writeHead(fault.status, { 'content-type': 'application/json', 'content-length': String(body.length), ...(fault.headers ?? {}) });
      if (fault.cut) res.write(body, () => { cut(res); fired(); });
      else res.end(body, fired);
      return;
    }
    const headers: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(req.headers)) if (v !== undefined && !HOP.has(k)) headers[k] = v;
    headers.host = t.host;
    const upReq = http.request({ host: t.hostname, port: t.port, method: req.method, path: req.url, headers, agent }, (up) => {
      entry.status = up.statusCode;
      const out: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(up.headers)) if (v !== undefined && !HOP.has(k)) out[k] = v;
      res.writeHead(up.statusCode ?? 502, up.statusMessage, out);
      if (!fault) { up.pipe(res); return; }
      const limit = fault.afterBytes;
      let sent = 0;
      const onData = (c: Buffer) => {
        const room = limit - sent;
        const part = c.length <= room ? c : c.subarray(0, Math.max(0, room));
        if (part.length > 0) { res.write(part); sent += part.length; }
        if (sent < limit) return;
        up.off('data', onData);
        if (fault.kind === 'cut') {
          up.destroy();
          cut(res);
        } else {
          up.pause();
          stalled.add({ res, up, rest: c.subarray(part.length) });
        }
        fired();
      };
      up.on('data', onData);
      // a body shorter than K: the answer goes through whole
      up.on('end', () => { if (sent < limit) { res.end(); fired(); } });
    });
    upReq.on('error', () => { if (!res.headersSent) res.writeHead(502); res.end(); });
    req.pipe(upReq);
  });
  server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    log,
    add(rule) { const st = newRule(rule); rules.push(st); return armedOf(st); },
    release(how = 'cut') {
      for (const s of [...stalled]) {
        stalled.delete(s);
        if (how === 'cut') { s.up.destroy(); cut(s.res); continue; }
        if (s.rest.length) s.res.write(s.rest);
        s.up.pipe(s.res);
        s.up.resume();
      }
    },
    async close() {
      for (const s of stalled) s.up.destroy();
      stalled.clear();
      agent.destroy();
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

export interface TcpRule {
  /**
   * Which connection (1-based, in accept order) gets the fault. Without it, the first connection(s)
   * whose server->client stream reaches afterBytes get it: a client that opens small connections
   * of its own first (Maxxo's daemon listings) does not take the fault away from the transfer.
   */
  nth?: number;
  /** How many connections get it (default 1). */
  times?: number;
  /** Bytes of the server->client stream forwarded before the fault. */
  afterBytes: number;
  kind: 'cut' | 'stall';
}

export interface TcpFaultProxy {
  host: string;
  port: number;
  /** Connections accepted so far. */
  readonly connections: number;
  /** Server->client bytes forwarded per connection, in accept order. */
  readonly bytesDown: number[];
  add(rule: TcpRule): Armed;
  /** Cuts stalled connections. */
  release(): void;
  close(): Promise<void>;
}

export async function startTcpFaultProxy(targetHost: string, targetPort: number): Promise<TcpFaultProxy> {
  const rules: { rule: TcpRule; st: RuleState }[] = [];
  const open = new Set<net.Socket>();
  const stalled = new Set<() => void>();
  const bytesDown: number[] = [];
  let connections = 0;
  const server = net.createServer((client) => {
    const idx = connections++;
    bytesDown[idx] = 0;
    let fault: TcpRule | undefined;
    let faultState: RuleState | undefined;
    for (const { rule, st } of rules) {
      if (!st.active) continue;
      const times = rule.times ?? 1;
      if (rule.nth === undefined ? st.hits < times : idx + 1 >= rule.nth && idx + 1 < rule.nth + times) {
        fault = rule;
        faultState = st;
        break;
      }
    }
    const up = net.connect(targetPort, targetHost);
    open.add(client); open.add(up);
    const kill = () => { client.destroy(); up.destroy(); };
    client.on('close', () => { open.delete(client); up.destroy(); });
    up.on('close', () => { open.delete(up); if (!stalling) client.end(); });
    client.on('error', kill);
    up.on('error', kill);
    client.pipe(up);
    let stalling = false;
    up.on('data', (c: Buffer) => {
      if (stalling) return;
      // a rule without nth may have been taken by another connection meanwhile: this one goes on
      if (fault && fault.nth === undefined && faultState!.hits >= (fault.times ?? 1)) fault = undefined;
      if (!fault) { bytesDown[idx]! += c.length; client.write(c); return; }
      const room = fault.afterBytes - bytesDown[idx]!;
      const part = c.length <= room ? c : c.subarray(0, room);
      if (part.length) { client.write(part); bytesDown[idx]! += part.length; }
      if (bytesDown[idx]! < fault.afterBytes) return;
      const times = fault.times ?? 1;
      stalling = true;
      up.pause();
      faultState!.hits++;
      if (faultState!.hits >= times || times === Infinity) faultState!.done();
      if (fault.kind === 'cut') {
        up.destroy();
        client.end();
        setTimeout(() => client.destroy(), 200).unref();
      } else {
        const end = () => { stalled.delete(end); up.destroy(); client.destroy(); };
        stalled.add(end);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    host: '127.0.0.1',
    port,
    get connections() { return connections; },
    bytesDown,
    add(rule) {
      const st = newRule({ fault: { kind: 'cut', afterBytes: 0 } });
      rules.push({ rule, st });
      return armedOf(st);
    },
    release() { for (const end of [...stalled]) end(); },
    async close() {
      for (const end of [...stalled]) end();
      for (const s of open) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
