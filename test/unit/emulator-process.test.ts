// The test helper that runs the reference servers in a child process: its data folder goes with
// it however the child ends (a 25-minute soak left one of 12 MiB behind in /tmp).
import test from 'ava';
import { existsSync } from 'node:fs';
import { startEmulatorProcess } from '../helpers/emulator-process.js';

test('a control server\'s data folder is removed when it stops, and when it is killed', async (t) => {
  const a = await startEmulatorProcess({ control: true });
  t.truthy(a.dataDir);
  t.true(existsSync(a.dataDir!));
  await a.stop();
  t.false(existsSync(a.dataDir!), 'stopped');

  const b = await startEmulatorProcess({ control: true });
  t.true(existsSync(b.dataDir!));
  b.kill('SIGKILL');
  await b.exited;
  // the removal runs in the helper's own exit handler, registered before this await's
  await new Promise((r) => setImmediate(r));
  t.false(existsSync(b.dataDir!), 'killed');
});
