// Starts a reference server for a test, in this process, on a free loopback port.
import { createEmulator, type Emulator } from '../../src/emulator/server.js';
import type { EmulatorOptions } from '../../src/emulator/context.js';

export async function startEmulator(opts: Partial<EmulatorOptions> = {}): Promise<Emulator> {
  return createEmulator({ demo: true, ...opts });
}

export async function serverStats(url: string): Promise<Record<string, number>> {
  const r = await fetch(`${url}/_emulator/stats`);
  return (await r.json()) as Record<string, number>;
}

export async function resetStats(url: string): Promise<void> {
  await fetch(`${url}/_emulator/stats/reset`, { method: 'POST' });
}
