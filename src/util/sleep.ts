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
