// vBoxxCloud reference server: /1/... (Dropbox API v1 style files + the management API) and /s/<id>
// share links. Routes live in encapsulated Fastify contexts so their error and not-found handlers
// answer vBoxx's {status_code, message, code:"error"} without touching the Maxxo routes.
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { EmulatorContext } from '../context.js';
import { Vboxx } from './store.js';
import { seedDemo } from './demo.js';
import { registerFileRoutes, registerRawRoutes, registerShareRoutes } from './files.js';
import { registerManagement } from './management.js';
import { sendError, VboxxError } from './util.js';

export async function registerVboxx(app: FastifyInstance, ctx: EmulatorContext, _stops: Array<() => Promise<void>>): Promise<void> {
  const v = new Vboxx(ctx);
  if (ctx.opts.demo) await seedDemo(v);

  const onError = (err: FastifyError | Error, req: FastifyRequest, reply: FastifyReply) => {
    if (err instanceof VboxxError) return sendError(reply, err.status, err.message, err.extra);
    const status = (err as FastifyError).statusCode;
    // Framework errors (bad body, unsupported media type) are the client's: keep their message.
    if (status && status >= 400 && status < 500) return sendError(reply, status, err.message);
    // Never a stack or a host path to the client; the operator sees it in the log.
    ctx.log(`vboxx ${req.method} ${req.url.split('?')[0]}: ${err.stack ?? err.message}`);
    return sendError(reply, 500, 'internal server error');
  };
  const notFound = (_req: FastifyRequest, reply: FastifyReply) => sendError(reply, 404, 'unknown API endpoint');

  await app.register(async (api) => {
    api.setErrorHandler(onError);
    api.setNotFoundHandler(notFound);
    registerManagement(api, v);
    registerFileRoutes(api, v);
    await api.register(async (raw) => {
      // Upload bodies are file bytes whatever Content-Type a client sends: no parser may read them.
      raw.removeAllContentTypeParsers();
      raw.addContentTypeParser('*', (_req, _payload, done) => done(null, undefined));
      registerRawRoutes(raw, v);
    });
  }, { prefix: '/1' });

  await app.register(async (s) => {
    s.setErrorHandler(onError);
    s.setNotFoundHandler(notFound);
    registerShareRoutes(s, v);
  }, { prefix: '/s' });
}
