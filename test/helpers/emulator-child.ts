// The reference servers in their own process with a control channel (startEmulatorProcess with
// `control`): e2e tests read and change the servers' state (SQL, users' folders, the advertised
// rsync port) while they drive a mount. They must not share the test process: the test drives the
// mount with fs calls that block a libuv thread (or the whole loop) until the drive answers, and
// the drive needs these servers to answer.
//   stdout: "READY <json {url, dataDir}>"
//   stdin:  one JSON command per line {id, op: 'sql', sql, params} | {id, op: 'maxxoFolder', email}
//           | {id, op: 'rsyncPort'} | {id, op: 'advertiseRsyncPort', port (null = the daemon's own)}
//   stdout: "RESULT <json {id, ok, value|error}>"
import readline from 'node:readline';
import { startEmulator } from './emulator.js';
import { userFolder, getUserByEmail } from '../../src/emulator/maxxo/store.js';

async function main() {
  const emu = await startEmulator({ demo: true });
  process.stdout.write(`READY ${JSON.stringify({ url: emu.url, dataDir: emu.ctx.opts.dataDir })}\n`);
  const rl = readline.createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    let id: unknown;
    try {
      const cmd = JSON.parse(line) as { id: unknown; op: string; sql?: string; params?: unknown[]; email?: string; port?: number | null };
      id = cmd.id;
      let value: unknown;
      if (cmd.op === 'sql') {
        const st = emu.ctx.db.prepare(cmd.sql!);
        value = st.reader ? st.all(...(cmd.params ?? [])) : st.run(...(cmd.params ?? []));
      } else if (cmd.op === 'maxxoFolder') {
        const u = getUserByEmail(emu.ctx.db, cmd.email!);
        if (!u) throw new Error(`no Maxxo user ${cmd.email}`);
        value = userFolder(emu.ctx, u.login);
      } else if (cmd.op === 'rsyncPort') {
        value = emu.ctx.rsync?.port ?? null;
      } else if (cmd.op === 'advertiseRsyncPort') {
        // a fault proxy in front of the daemon: /slice sends clients there (read per request)
        if (cmd.port == null) delete emu.ctx.opts.advertiseRsyncPort;
        else emu.ctx.opts.advertiseRsyncPort = cmd.port;
        value = true;
      } else {
        throw new Error(`unknown op ${cmd.op}`);
      }
      process.stdout.write(`RESULT ${JSON.stringify({ id, ok: true, value })}\n`);
    } catch (e) {
      process.stdout.write(`RESULT ${JSON.stringify({ id, ok: false, error: (e as Error).message })}\n`);
    }
  });
  rl.on('close', () => void emu.close().then(() => process.exit(0)));
  const stop = () => void emu.close().finally(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((e) => {
  process.stderr.write(`emulator child: ${(e as Error)?.stack ?? e}\n`);
  process.exit(2);
});
