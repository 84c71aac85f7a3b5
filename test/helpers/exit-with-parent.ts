// Preloaded (node --import) into a reference server a test starts: fd 3 is a pipe from the test
// process, and its end (that process gone, even by SIGKILL or a crash, with no teardown run) ends
// the server as SIGTERM does, rsync daemon included. Without it a crashed test worker left its
// servers running for good.
import net from 'node:net';

try {
  const parent = new net.Socket({ fd: 3, readable: true, writable: false });
  parent.on('data', () => {});
  parent.on('error', () => {});
  parent.on('close', () => process.kill(process.pid, 'SIGTERM'));
  // the pipe alone must not keep the server running
  parent.unref();
} catch {
  // no fd 3: started some other way
}
