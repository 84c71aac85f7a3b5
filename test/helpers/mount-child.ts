// The FUSE driver process of an e2e test. The test process never runs a mount itself (a sync fs
// call into its own mount would deadlock it); it spawns this, which:
//   reads ONE line of JSON config from stdin (password included: never argv or env),
//   creates the remote, mounts with mountDrive, prints "MOUNTED <mnt>",
//   then answers stdin commands: "FLUSH" -> "FLUSHED" | "FLUSH_ERROR <msg>", "STATUS" -> "STATUS <json>",
//   and unmounts cleanly on SIGTERM (installSignalHandlers).
import readline from 'node:readline';
import type { Remote } from '../../src/remote/types.js';
import { createLogger, type Level } from '../../src/log.js';
import { installSignalHandlers, mountDrive, type MountedDrive } from '../../src/fuse/mount.js';
import type { ChildConfig } from './mount.js';

async function createRemote(cfg: ChildConfig, log: ReturnType<typeof createLogger>): Promise<Remote> {
  const client = { server: cfg.server ?? '', user: cfg.user ?? '', password: cfg.password ?? '', log, ...(cfg.client ?? {}) };
  switch (cfg.kind) {
    case 'memory': {
      const m = await import('./memory-remote.js');
      return new m.MemoryRemote() as Remote;
    }
    case 'maxxo': {
      const m = await import('../../src/remote/maxxo/index.js');
      return m.createMaxxoRemote(client) as Remote;
    }
    case 'vboxx': {
      const m = await import('../../src/remote/vboxx/index.js');
      return m.createVboxxRemote({ ...client, root: cfg.root }) as Remote;
    }
    default:
      throw new Error(`unknown remote kind ${String(cfg.kind)}`);
  }
}

async function main() {
  const rl = readline.createInterface({ input: process.stdin });
  const lines = rl[Symbol.asyncIterator]();
  const first = await lines.next();
  if (first.done) throw new Error('no config on stdin');
  const cfg = JSON.parse(first.value) as ChildConfig;
  const log = createLogger((cfg.logLevel ?? 'warn') as Level);
  const remote = await createRemote(cfg, log);
  let drive: MountedDrive;
  try {
    drive = await mountDrive(remote, cfg.mountpoint, {
      accountId: cfg.accountId,
      cacheDir: cfg.cacheDir,
      log,
      // the suites pin fuse-native unless a test (or CLOUDMOUNT_TEST_BACKEND) asks for another
      backend: (process.env.CLOUDMOUNT_TEST_BACKEND as 'libfuse3' | 'fuse-native' | undefined) || 'fuse-native',
      // (measuring -o writeback_cache: the suites run with it on, not in CI; native-notes/lowlevel.md)
      ...(process.env.CLOUDMOUNT_TEST_WRITEBACK_CACHE ? { writebackCache: true } : {}),
      // (reader threads instead of the default poll reader: test/e2e/libfuse3/threads.test.ts)
      ...(process.env.CLOUDMOUNT_TEST_FUSE_READER ? { fuseReader: process.env.CLOUDMOUNT_TEST_FUSE_READER as 'threads' | 'poll' } : {}),
      ...(cfg.vfs ?? {}),
      ...(cfg.mount ?? {}),
    });
  } catch (e) {
    process.stdout.write(`ERROR ${(e as Error).message.replace(/\n/g, ' ')}\n`);
    await remote.close().catch(() => {});
    process.exit(2);
  }
  installSignalHandlers(drive, { log });
  void drive.closed.then(() => process.exit(0));
  process.stdout.write(`MOUNTED ${drive.mountpoint}\n`);

  for (;;) {
    const next = await lines.next();
    if (next.done) break;
    const cmd = next.value.trim();
    if (cmd === 'FLUSH') {
      drive.flush().then(
        () => process.stdout.write('FLUSHED\n'),
        (e) => process.stdout.write(`FLUSH_ERROR ${(e as Error).message.replace(/\n/g, ' ')}\n`),
      );
    } else if (cmd === 'STATUS') {
      process.stdout.write(`STATUS ${JSON.stringify(drive.status())}\n`);
    }
  }
  // stdin closed: the test process is gone (and likely its servers): don't outlive it with a
  // mount, nor wait long for uploads that cannot arrive.
  const bounded = new Promise<void>((_, reject) => setTimeout(() => reject(new Error('unmount timed out')), 20_000).unref());
  await Promise.race([drive.unmount(), bounded]).catch(() => drive.unmount({ force: true }));
  process.exit(0);
}

main().catch((e) => {
  process.stdout.write(`ERROR ${(e as Error)?.message ?? e}\n`);
  process.exit(2);
});
