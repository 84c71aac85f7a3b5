// Placeholder until the Maxxo reference server lands.
import type { FastifyInstance } from 'fastify';
import type { EmulatorContext } from '../context.js';
export async function registerMaxxo(_app: FastifyInstance, _ctx: EmulatorContext, _stops: Array<() => Promise<void>>): Promise<void> {}
