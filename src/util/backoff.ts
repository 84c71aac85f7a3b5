/**
 * The one retry backoff of the code base: exponential in the attempt number (1, 2, 3...),
 * base * 2^(attempt-1), capped, then jittered so that many clients (or many files) retrying
 * after the same failure do not come back in step.
 * - 'full' (default): a random delay in [0, capped) — AWS's "full jitter"; the remote clients'
 *   request retries use it (short waits, many of them).
 * - 'spread': capped * [0.75, 1.25) — the write-back's upload retries: the delay still grows
 *   every attempt, so a server that is down for a while is not asked again at once.
 */
export function backoffDelay(attempt: number, baseMs: number, capMs = Infinity, jitter: 'full' | 'spread' = 'full'): number {
  const capped = Math.min(capMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return jitter === 'full' ? Math.random() * capped : capped * (0.75 + Math.random() * 0.5);
}
