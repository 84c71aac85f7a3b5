// The reference server as the benchmark runs it: its own process (so its CPU is not the
// harness's), demo accounts, a given data folder, and a control channel on stdin:
//   {"advertiseRsyncPort": N}  -> Maxxo /slice advertises N (a delay proxy in front of the daemon)
// Prints one JSON line {url, port, rsyncHost, rsyncPort, dataDir, filesDir}; answers each
// command with {"ok":true}; exits when stdin closes or on SIGTERM/SIGINT, stopping its rsync daemon.
import { createInterface } from 'node:readline';
import { createEmulator } from '../../src/emulator/server.js';

async function main(argv: string[]): Promise<void> {
  let dataDir = '';
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--data-dir' && argv[i + 1]) dataDir = argv[++i]!;
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  if (!dataDir) throw new Error('--data-dir DIR is required');
  const emu = await createEmulator({ demo: true, dataDir, quiet: true });
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    void emu.close().finally(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.stdout.write(`${JSON.stringify({
    url: emu.url, port: emu.port, rsyncHost: emu.ctx.rsync?.host ?? null, rsyncPort: emu.ctx.rsync?.port ?? null,
    dataDir, filesDir: emu.ctx.filesDir,
  })}\n`);
  const rl = createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    try {
      const cmd = JSON.parse(line) as { advertiseRsyncPort?: number };
      if (cmd.advertiseRsyncPort !== undefined) emu.ctx.opts.advertiseRsyncPort = cmd.advertiseRsyncPort;
      process.stdout.write('{"ok":true}\n');
    } catch (e) {
      process.stdout.write(`${JSON.stringify({ ok: false, error: (e as Error).message })}\n`);
    }
  });
  rl.on('close', stop);
}

main(process.argv.slice(2)).catch((e) => {
  console.error(`bench serve: ${(e as Error).message}`);
  process.exit(2);
});
