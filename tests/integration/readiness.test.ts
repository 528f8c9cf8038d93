import { createServer, type Server, type Socket } from 'node:net';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { READINESS_PROBES_PER_MINUTE } from '../../src/api/routes/readiness.js';
import { startApiServer, lazyTemporalClient, type RunningApi } from '../../src/api/server.js';
import { connectPostgres, type Db } from '../../src/db/connection.js';
import { createIngest } from '../../src/ingest/ingest.js';
import { createLogger } from '../../src/logger.js';
import { createTestDatabase } from '../support/database.js';
import { TEST_DATA_CONVERTER, TEST_INBOUND_DOMAIN, TEST_SECRET_KEY } from '../support/stack.js';

// GET /ready asks the real PostgreSQL and Temporal servers; GET /health asks nothing. Each API below is the real one,
// its database or Temporal pointed at something that is up, missing, or silent.

async function startApi(db: Db, temporal: Client, options: { clock?: () => number; trustedProxies?: string[] } = {}) {
  return startApiServer(
    {
      db,
      temporal,
      ingest: createIngest({ db, temporal, taskQueue: 'mailroom-readiness-test', inboundDomain: TEST_INBOUND_DOMAIN }),
      config: {
        SECRET_KEY: TEST_SECRET_KEY,
        MAX_INBOUND_BYTES: 1024 * 1024,
        PUBLIC_URL: 'http://unused',
        INBOUND_DOMAIN: TEST_INBOUND_DOMAIN,
        ...(options.trustedProxies ? { TRUSTED_PROXIES: options.trustedProxies } : {}),
      },
      logger: createLogger('silent'),
      ...(options.clock ? { clock: options.clock } : {}),
    },
    { port: 0, host: '127.0.0.1' },
  );
}

async function get(api: RunningApi, path: string, headers: Record<string, string> = {}) {
  const response = await fetch(`${api.url}${path}`, { headers });
  return {
    status: response.status,
    contentType: response.headers.get('content-type'),
    retryAfter: response.headers.get('retry-after'),
    body: (await response.json()) as any,
  };
}

/** A TCP server on loopback that takes connections and never says a word: a PostgreSQL or Temporal that hangs. */
async function silentServer(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as { port: number }).port,
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const probe = await silentServer();
  await probe.close();
  return probe.port;
}

describe('readiness (GET /ready) and liveness (GET /health)', () => {
  const stops: Array<() => Promise<void>> = [];
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let temporal: Client;

  beforeAll(async () => {
    database = await createTestDatabase();
    stops.push(() => database.drop());
    temporal = new Client({ connection: await Connection.connect({ address: inject('temporalAddress') }) });
    stops.push(() => temporal.connection.close());
  });
  afterAll(async () => {
    for (const stop of stops.reverse()) await stop();
  });

  async function apiWith(db: Db, client: Client, options: Parameters<typeof startApi>[2] = {}): Promise<RunningApi> {
    const api = await startApi(db, client, options);
    stops.push(() => api.close());
    return api;
  }

  /** A pool on the test PostgreSQL server, on a database that does not exist there. */
  function missingDatabase(): Db {
    const url = new URL(inject('databaseUrl'));
    url.pathname = '/mailroom_readiness_no_such_database';
    const db = connectPostgres(url.toString(), { maxConnections: 2 });
    stops.push(() => db.destroy());
    return db;
  }

  it('is ready when PostgreSQL and Temporal answer', async () => {
    const api = await apiWith(database.db, temporal);
    const ready = await get(api, '/ready');
    expect(ready).toMatchObject({
      status: 200,
      contentType: expect.stringContaining('application/json'),
      body: { status: 'ready', checks: { postgresql: 'up', temporal: 'up' } },
    });
  });

  it('is not ready, naming PostgreSQL, when its database is not there; liveness still answers', async () => {
    const api = await apiWith(missingDatabase(), temporal);
    const ready = await get(api, '/ready');
    expect(ready.status).toBe(503);
    expect(ready.contentType).toBe('application/problem+json');
    expect(ready.body).toEqual({
      type: 'https://mailroom.dev/problems/not-ready',
      title: 'Not ready',
      status: 503,
      detail: 'PostgreSQL does not answer',
    });
    // The probe's answer is for anyone: the server's error text (database names, addresses) stays in the log.
    expect(JSON.stringify(ready.body)).not.toContain('mailroom_readiness_no_such_database');
    expect(await get(api, '/health')).toMatchObject({ status: 200, body: { status: 'ok' } });
  });

  it('is not ready, naming Temporal, when nothing listens at its address', async () => {
    const client = lazyTemporalClient(`127.0.0.1:${await closedPort()}`, 'default', TEST_DATA_CONVERTER);
    stops.push(() => client.connection.close());
    const api = await apiWith(database.db, client);
    const ready = await get(api, '/ready');
    expect(ready).toMatchObject({ status: 503, body: { detail: 'Temporal does not answer' } });
  });

  it('answers instead of hanging when both take connections and never reply, naming both', async () => {
    const silentPostgres = await silentServer();
    const silentTemporal = await silentServer();
    const db = connectPostgres(`postgres://mailroom@127.0.0.1:${silentPostgres.port}/mailroom`, { maxConnections: 2 });
    const client = lazyTemporalClient(`127.0.0.1:${silentTemporal.port}`, 'default', TEST_DATA_CONVERTER);
    // Stopped in reverse: the silent servers drop their connections first, so the pool and the client can close.
    stops.push(
      () => db.destroy(),
      () => client.connection.close(),
      silentPostgres.close,
      silentTemporal.close,
    );
    const api = await apiWith(db, client);
    // Probes that arrive together share one check, and each of them gets the answer.
    const answers = await Promise.all([get(api, '/ready'), get(api, '/ready'), get(api, '/ready')]);
    for (const ready of answers) {
      expect(ready).toMatchObject({ status: 503, body: { detail: 'PostgreSQL and Temporal do not answer' } });
    }
  });

  it('refuses a flood from one client address with 429 before asking the servers; other addresses are still answered', async () => {
    // The clock stands still: no bucket refills while the test sends.
    const api = await apiWith(database.db, temporal, { clock: () => 1_000_000, trustedProxies: ['127.0.0.0/8'] });
    const flooder = { 'x-forwarded-for': '203.0.113.66' };
    for (let sent = 0; sent < READINESS_PROBES_PER_MINUTE; sent += 20) {
      const batch = await Promise.all(Array.from({ length: 20 }, () => get(api, '/ready', flooder)));
      expect(batch.map((answer) => answer.status)).toEqual(Array(20).fill(200));
    }
    const refused = await get(api, '/ready', flooder);
    expect(refused).toMatchObject({
      status: 429,
      contentType: 'application/problem+json',
      body: { title: 'Too many requests', detail: `at most ${READINESS_PROBES_PER_MINUTE} probes a minute from one address` },
    });
    expect(Number(refused.retryAfter)).toBeGreaterThan(0);
    expect(await get(api, '/ready', { 'x-forwarded-for': '198.51.100.7' })).toMatchObject({ status: 200 });
  });
});
