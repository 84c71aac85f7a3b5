// What the shared server core hands to each service's routes (maxxo/, vboxx/).
import type Database from 'better-sqlite3';

export interface EmulatorOptions {
  host: string;
  port: number;
  /** Directory holding the SQLite file and the users' file bytes. */
  dataDir: string;
  demo: boolean;
  latencyMs: number;
  failRate: number;
  /** Requests per second before 429 with Retry-After; 0 = unlimited. */
  rateLimit: number;
  /** Start the rsync daemon for Maxxo's data plane (tests of the vBoxx side may skip it). */
  rsync: boolean;
  quiet: boolean;
  /**
   * Port Maxxo /slice advertises as rsync_port instead of the daemon's own (the benchmark puts a
   * delay proxy in front of the daemon). Read per request, so it may be set after start.
   */
  advertiseRsyncPort?: number;
}

export interface EmulatorContext {
  opts: EmulatorOptions;
  db: Database.Database;
  /** Root of file bytes: each service/user has its own folder beneath it. */
  filesDir: string;
  /** Host and port the rsync daemon listens on (Maxxo /slice), set once it runs. */
  rsync?: { host: string; port: number };
  /** Requests counted per route, "GET /api/1/ops/list" -> n; read through /_emulator/stats. */
  stats: Map<string, number>;
  log: (msg: string) => void;
}
