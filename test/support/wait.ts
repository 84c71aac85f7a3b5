// Waiting in tests: one sleep and one bounded poll, for every suite. A test waits for a state it
// can observe, never for a fixed time it hopes is enough (these machines are noisy).

/** Resolves after ms; rejects early (with signal.reason) when signal aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (!signal) return new Promise((r) => setTimeout(r, ms));
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { signal.removeEventListener('abort', onAbort); resolve(); }, ms);
    const onAbort = () => { clearTimeout(timer); reject(signal.reason); };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** p, or once ms pass first: onTimeout()'s value, or with a string, an error "<what>: no answer
 *  within <ms> ms" (the call behind p keeps running). The timer is cleared when p settles: a bare
 *  race against sleep() keeps the test's worker alive (and ava waiting for it) until the sleep ends. */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T>;
export function within<T, U>(p: Promise<T>, ms: number, onTimeout: () => U): Promise<T | U>;
export async function within<T, U>(p: Promise<T>, ms: number, onTimeout: string | (() => U)): Promise<T | U> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<U>((resolve, reject) => {
    timer = setTimeout(() => {
      if (typeof onTimeout === 'string') reject(new Error(`${onTimeout}: no answer within ${ms} ms`));
      else try { resolve(onTimeout()); } catch (e) { reject(e); }
    }, ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls cond every stepMs until it holds; throws, naming what it waited for, after ms. */
export async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 5000, stepMs = 5): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(stepMs);
  }
}

/** until() in the argument order the CLI tests use, at 100 ms steps (each check reads the disk or a mount). */
export function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs = 30_000, what = 'condition'): Promise<void> {
  return until(cond, what, timeoutMs, 100);
}

/** Polls fn until its value is truthy; when time is up returns the last value instead of throwing. */
export async function eventually<T>(fn: () => Promise<T>, ms = 20_000, stepMs = 200): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => undefined as T);
    if (v || Date.now() > end) return v;
    await sleep(stepMs);
  }
}
