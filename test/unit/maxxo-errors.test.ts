// Maxxo's own error codes stop at MaxxoRemote: each leaves it as a generic error that the one
// errno table (fuse/errno.ts, generic codes only) maps as the Maxxo code was mapped before.
import test from 'ava';
import os from 'node:os';
import { errnoName, toErrno } from '../../src/fuse/errno.js';
import { GENERIC_ERRORS, RemoteError } from '../../src/errors.js';
import * as M from '../../src/remote/maxxo/errors.js';

const N = os.constants.errno;

test('every Maxxo code becomes a generic one; errno as before the split', (t) => {
  const want: Array<[RemoteError, number]> = [
    [new M.FileNotFound(), N.ENOENT], [new M.UserNotFound(), N.ENOENT], [new M.ContactNotFound(), N.ENOENT],
    [new M.MessageNotFound(), N.ENOENT], [new M.NotificationNotFound(), N.ENOENT], [new M.EmailAlreadyExist(), N.EEXIST],
    [new M.MethodNotAllowed(), N.ENOTSUP], [new M.MethodBadRequest(), N.EINVAL], [new M.NoPermission(), N.EACCES],
    [new M.ErrUnknown(), N.EIO], [new M.TokenCannotBeGenerated(), N.EIO],
  ];
  for (const [e, errno] of want) {
    const g = M.toGeneric(e) as RemoteError;
    t.true(GENERIC_ERRORS.has(g.code), `${e.code} -> ${g.code}`);
    t.is(toErrno(g), errno, e.code);
    t.is(g.retryable, e.retryable, `${e.code} keeps its retryability`);
    t.is(g.cause, e, 'the service error stays as the cause');
  }
  // the table knows no service codes: a Maxxo error that skipped the boundary would only map by status
  t.is(errnoName(new M.MethodBadRequest()), 'EIO');
  t.is(errnoName(new M.MethodNotAllowed()), 'EIO');
});

test('maxxoError: its own table, then the generic one, then the code as it came', (t) => {
  t.true(M.maxxoError('FILE_NOT_FOUND', { status: 404 }) instanceof M.FileNotFound);
  t.is(M.maxxoError('AUTH_FAILED').code, 'AUTH_FAILED');
  const auth = M.maxxoError('AUTH_FAILED');
  t.is(M.toGeneric(auth), auth, 'generic already: passed as it is');
  const odd = M.maxxoError('SOMETHING_NEW', { status: 503 });
  t.is(odd.code, 'SOMETHING_NEW');
  t.true(odd.retryable);
  const plain = new Error('x');
  t.is(M.toGeneric(plain), plain);
});
