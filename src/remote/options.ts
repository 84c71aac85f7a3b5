// Options every client takes. The CLI builds these from flags, saved accounts and -o options.
import type { Logger } from '../log.js';

export interface ClientOptions {
  /** Base URL of the service, e.g. http://127.0.0.1:8080 (Maxxo under /api/1, vBoxx under /1). */
  server: string;
  /** Maxxo: e-mail; vBoxx: username. */
  user: string;
  /** Kept in memory only; never logged nor put in argv. */
  password: string;
  /** Parallel requests per account (default 8). */
  concurrency?: number;
  /** Requests per second (0 = unlimited, default). */
  rateLimit?: number;
  /** Connect / headers / body-idle timeout per request in ms (default 30000). */
  timeoutMs?: number;
  /** Attempts for a retryable request, first included (default 5). */
  maxAttempts?: number;
  /** Total time budget for one request with its retries in ms (default 60000). */
  maxRetryTimeMs?: number;
  /** PEM CA bundle for https servers with a private CA. */
  ca?: string | Buffer;
  /**
   * false (-o no_modtime, as rclone's --no-modtime): modification times are neither written
   * (no time or mode write-back, no client_mtime) nor read where reading them costs extra (Maxxo:
   * no rsync daemon listings; files show the mount's own times, and a same-size change by another
   * client is not told from the version cached). Default true.
   */
  modtimes?: boolean;
  /**
   * vBoxx: who reads file content from the server: our own connections, straight into large
   * buffers (default 'raw'), or undici like every other request (remote/rawget.ts says why).
   */
  bulkReader?: 'raw' | 'undici';
  log?: Logger;
}

/** vBoxx only: mount one root (id or name) instead of all roots as top-level folders. */
export interface VboxxClientOptions extends ClientOptions {
  root?: string;
}
