/**
 * A timer that an AbortSignal ends early. It rejects with the signal's reason unless the caller
 * names the error to use (the clients turn an abort into their typed Cancelled).
 */
export function sleep(ms: number, signal?: AbortSignal, abortError: () => unknown = () => signal!.reason): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) { reject(abortError()); return; }
    const t = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve(); }, ms);
    const onAbort = () => { clearTimeout(t); reject(abortError()); };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * p, or the abort error as soon as signal aborts: the caller stops waiting, the work behind p goes
 * on (a flush that is given up on still finishes its uploads).
 */
export function untilAborted<T>(p: Promise<T>, signal: AbortSignal | undefined, abortError: () => unknown = () => signal!.reason): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) return Promise.reject(abortError());
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(abortError());
    signal.addEventListener('abort', onAbort, { once: true });
    p.then((v) => { signal.removeEventListener('abort', onAbort); resolve(v); },
      (e) => { signal.removeEventListener('abort', onAbort); reject(e); });
  });
}
