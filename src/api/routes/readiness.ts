import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import { sql } from 'kysely';
import type { ApiDeps, AppEnv } from '../env.js';
import { Problem, problemResponses } from '../problem.js';
import { clientAddressBehind, rateLimited, RateLimiter } from '../rate-limit.js';

// A load balancer's readiness probe: the API can do its work only while PostgreSQL and Temporal answer.
// Liveness (/health) stays trivial, so that an outage of either never gets the API restarted.

/** How long each backing service has to answer one probe. */
export const READINESS_DEADLINE_MS = 3_000;
/** Probes a minute from one client address: a probe every half second, far more than any orchestrator sends. */
export const READINESS_PROBES_PER_MINUTE = 120;

const BACKING_SERVICES = { postgresql: 'PostgreSQL', temporal: 'Temporal' } as const;
type BackingService = keyof typeof BACKING_SERVICES;

const ReadinessSchema = z
  .object({
    status: z.literal('ready'),
    checks: z.object({ postgresql: z.literal('up'), temporal: z.literal('up') }),
  })
  .openapi('Readiness');

const readinessRoute = createRoute({
  method: 'get',
  path: '/ready',
  operationId: 'getReadiness',
  tags: ['Operations'],
  // Public: probes carry no credentials, and the answer names no host, address or error text.
  security: [],
  summary: 'Readiness: whether PostgreSQL and Temporal answer (for load balancers and orchestrators)',
  description:
    `200 when PostgreSQL answers a query and Temporal its system info, each within ${READINESS_DEADLINE_MS} ms; ` +
    `otherwise 503 naming what does not answer. At most ${READINESS_PROBES_PER_MINUTE} probes a minute from one client ` +
    'address (429 beyond). Liveness is GET /health, which checks nothing.',
  responses: {
    200: { description: 'Both answer', content: { 'application/json': { schema: ReadinessSchema } } },
    ...problemResponses(429, 503),
  },
});

/** Rejects when `work` has not settled within the deadline (what it started may go on in the background). */
async function within<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

export function readinessRoutes({ db, temporal, logger, config, clock }: ApiDeps) {
  const app = new OpenAPIHono<AppEnv>();
  const perClientAddress = new RateLimiter(READINESS_PROBES_PER_MINUTE, clock ? { now: clock } : {});
  const clientAddress = clientAddressBehind(config.TRUSTED_PROXIES ?? []);

  async function probe(): Promise<BackingService[]> {
    const checks: Record<BackingService, () => Promise<unknown>> = {
      postgresql: () => within(sql`select 1`.execute(db), READINESS_DEADLINE_MS),
      temporal: () =>
        temporal.connection.withDeadline(Date.now() + READINESS_DEADLINE_MS, () => temporal.workflowService.getSystemInfo({})),
    };
    const names = Object.keys(checks) as BackingService[];
    const results = await Promise.allSettled(names.map((name) => checks[name]()));
    const down = names.filter((_, index) => results[index]!.status === 'rejected');
    for (const [index, result] of results.entries()) {
      if (result.status === 'rejected') logger.warn({ err: result.reason, service: names[index] }, 'readiness: not answering');
    }
    return down;
  }

  // Probes arriving together share one check: a flood of them costs PostgreSQL and Temporal one query at a time.
  let running: Promise<BackingService[]> | undefined;
  const shared = () => (running ??= probe().finally(() => (running = undefined)));

  app.openapi(readinessRoute, async (c) => {
    // Anyone may ask: one client's flood is refused before it reaches PostgreSQL or Temporal.
    const verdict = perClientAddress.take(clientAddress(c));
    if (!verdict.allowed) {
      throw rateLimited(`at most ${READINESS_PROBES_PER_MINUTE} probes a minute from one address`, verdict.retryAfterSeconds);
    }
    const down = await shared();
    if (down.length > 0) {
      const names = down.map((service) => BACKING_SERVICES[service]);
      throw new Problem(503, 'not-ready', 'Not ready', `${names.join(' and ')} ${names.length > 1 ? 'do' : 'does'} not answer`);
    }
    return c.json({ status: 'ready' as const, checks: { postgresql: 'up' as const, temporal: 'up' as const } }, 200);
  });
  return app;
}
