// Ending a command without cutting its output. process.exit() discards what Node still holds
// for stdout/stderr: to a pipe that is everything past the 64 KiB the kernel buffer takes, so
// `cloudmount status --json | jq` read half a document. Every exit of a command goes through here.

/** Resolves once everything written to `s` so far has been handed to the OS (or `s` is gone). */
function drained(s: NodeJS.WriteStream): Promise<void> {
  return new Promise((resolve) => {
    if (s.destroyed || !s.writable || s.writableLength === 0) return resolve();
    // writes complete in order: the callback of an empty write runs after all earlier ones;
    // a reader gone (EPIPE) destroys the stream and calls back with the error: nothing to wait for
    s.write('', () => resolve());
    s.once('close', () => resolve());
  });
}

/** Waits until stdout and stderr drained, then exits with `code` (or, with `signal`, by that signal). */
export async function exitWhenDrained(code: number, o: { signal?: NodeJS.Signals } = {}): Promise<never> {
  await Promise.all([drained(process.stdout), drained(process.stderr)]);
  if (o.signal) {
    process.removeAllListeners(o.signal);
    process.kill(process.pid, o.signal);
  }
  process.exit(code);
}
