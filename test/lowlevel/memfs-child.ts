// The FUSE server process of a low-level binding test: mounts MemFs with LowLevelSession and
// answers one JSON command per stdin line with one JSON line on stdout. The test process never
// serves a mount itself (a sync fs call into its own mount would deadlock it).
//   argv[2]: {"mnt", "mount": MountOptions, "fs": MemfsOptions}
// Unmounts and exits on {"cmd":"unmount"}, on SIGTERM, and when stdin closes (test process gone).
import readline from 'node:readline';
import fs from 'node:fs';
import { execFile } from 'node:child_process';
import { LowLevelSession, type MountOptions } from '../../src/fuse/lowlevel.js';
import { MemFs, type MemfsOptions } from './memfs.js';

interface Cfg { mnt: string; mount?: MountOptions; fs?: MemfsOptions; bigFile?: { path: string; splice: boolean; async?: boolean } }
const cfg = JSON.parse(process.argv[2]!) as Cfg;

function procInfo() {
  // collect first: RSS then shows what is still held, not garbage (external Buffers) not yet freed
  (globalThis as { gc?: () => void }).gc?.();
  const status = fs.readFileSync('/proc/self/status', 'utf8');
  const threads = Number(/Threads:\s+(\d+)/.exec(status)![1]);
  return { fds: fs.readdirSync('/proc/self/fd').length, threads, rss: process.memoryUsage().rss };
}

function sh(cmd: string): Promise<string> {
  return new Promise((resolve, reject) => execFile('bash', ['-c', cmd], { timeout: 60_000, maxBuffer: 1 << 26 },
    (e, out, err) => (e ? reject(new Error(`${cmd}: ${e.message} ${err}`)) : resolve(out))));
}

const out = (o: unknown) => process.stdout.write(JSON.stringify(o) + '\n');

async function main() {
  const fsOpts = { ...cfg.fs };
  if (cfg.bigFile) {
    fsOpts.bigFromFd = { fd: fs.openSync(cfg.bigFile.path, 'r'), splice: cfg.bigFile.splice, ...(cfg.bigFile.async ? { async: { path: cfg.bigFile.path } } : {}) };
  }
  const memfs = new MemFs(fsOpts);
  let session = await LowLevelSession.mount(cfg.mnt, memfs.handlers(), cfg.mount);
  let handlerErrors = 0;
  session.on('error', () => handlerErrors++);
  let ended = false;
  void session.closed.then(() => (ended = true));
  let closing = false;
  const close = async (code: number) => {
    if (closing) return;
    closing = true;
    try {
      await session.unmount();
    } catch {
      await session.unmount({ lazy: true }).catch(() => undefined);
    }
    out({ closed: true });
    process.exit(code);
  };
  process.on('SIGTERM', () => void close(0));
  out({ ready: true, conn: session.conn, pid: process.pid });

  const rl = readline.createInterface({ input: process.stdin });
  rl.on('close', () => void close(0));
  for await (const line of rl) {
    const c = JSON.parse(line) as Record<string, any>;
    try {
      switch (c.cmd) {
        case 'stats':
          out({
            counts: memfs.counts, readSizes: memfs.readSizes, writeSizes: memfs.writeSizes, setattrs: memfs.setattrs,
            creates: memfs.creates, renames: memfs.renames, forgets: memfs.forgets, secondRepliesRefused: memfs.secondRepliesRefused, interruptedLookups: memfs.interruptedLookups, nodes: memfs.nodes.size,
            nlookup: Object.fromEntries([...memfs.nodes].map(([i, n]) => [i, n.nlookup])),
            native: session.stats(), pending: session.pending.size, proc: procInfo(), ended, handlerErrors,
          });
          break;
        case 'reset':
          memfs.resetCounters();
          out({ ok: true });
          break;
        case 'mk': {
          const parent = memfs.resolve(c.dir ?? '/')!;
          const ino = memfs.mk(parent, c.name, c.mode ?? 0o100644, c.content !== undefined ? Buffer.from(c.content) : undefined);
          out({ ino });
          break;
        }
        case 'mkmany': {
          const parent = memfs.resolve(c.dir)!;
          for (let i = 0; i < c.n; i++) memfs.mk(parent, `${c.prefix}${i}`, 0o100644, Buffer.from(`file ${i}\n`));
          out({ n: c.n });
          break;
        }
        case 'set': {
          const ino = memfs.resolve(c.path)!;
          const n = memfs.nodes.get(ino)!;
          n.data = Buffer.from(c.content);
          n.attr.size = n.data.length;
          if (c.keepMtime !== true) n.attr.mtime = { sec: Math.floor(Date.now() / 1000), nsec: 0 };
          out({ ino });
          break;
        }
        case 'chmod': {
          // a change the kernel did not make (another client's, on the server)
          const n = memfs.nodes.get(memfs.resolve(c.path)!)!;
          n.attr.mode = (n.attr.mode & 0o170000) | c.mode;
          out({ ok: true });
          break;
        }
        case 'invalEntry':
          out({ r: await session.notifyInvalEntry(memfs.resolve(c.dir)!, c.name) });
          break;
        case 'invalInode':
          out({ r: await session.notifyInvalInode(memfs.resolve(c.path)!, c.off ?? 0, 0) });
          break;
        case 'cycles': {
          // mount/unmount a second memfs n times at c.mnt; each cycle does real I/O through a child
          const before = procInfo();
          let first: ReturnType<typeof procInfo> | undefined;
          for (let i = 0; i < c.n; i++) {
            const m2 = new MemFs({ bigFileBytes: 1 << 20 });
            const s2 = await LowLevelSession.mount(c.mnt, m2.handlers(), { ...(cfg.mount ?? {}), threads: c.threads ?? 2 });
            await sh(`ls -l ${c.mnt} >/dev/null && cat ${c.mnt}/big | cksum >/dev/null && echo x > ${c.mnt}/f${i} && cat ${c.mnt}/f${i} >/dev/null`);
            await s2.unmount();
            if (i === 0) first = procInfo();
          }
          out({ before, first, after: procInfo() });
          break;
        }
        case 'tryUnmount':
          try {
            await session.unmount();
            out({ ok: true, ended });
          } catch (e) {
            out({ code: (e as NodeJS.ErrnoException).code, message: (e as Error).message });
          }
          break;
        case 'exit':
          // leave without unmounting: the binding's exit hook must take the mount away
          process.exit(3);
          break;
        case 'unmount':
          await close(0);
          break;
        default:
          out({ error: `unknown command ${c.cmd}` });
      }
    } catch (e) {
      out({ error: (e as Error).message });
    }
  }
}

main().catch((e) => {
  process.stderr.write(`memfs-child: ${(e as Error).stack}\n`);
  out({ error: (e as Error).message });
  process.exit(1);
});
