// Placeholder until the vBoxx reference server lands.
import type { FastifyInstance } from 'fastify';
import type { EmulatorContext } from '../context.js';
export async function registerVboxx(_app: FastifyInstance, _ctx: EmulatorContext, _stops: Array<() => Promise<void>>): Promise<void> {}
