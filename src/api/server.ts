import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { serve, type ServerType } from '@hono/node-server';
import { Client, Connection } from '@temporalio/client';
import type { DataConverter } from '@temporalio/common';
import { loadConfig } from '../config.js';
import { openDatabase } from '../db/connection.js';
import { migrateToLatest } from '../db/migrate.js';
import { createIngest } from '../ingest/ingest.js';
import { createLogger } from '../logger.js';
import { dataConverterFromConfig } from '../temporal/data-converter.js';
import { createApp } from './app.js';
import type { ApiDeps } from './env.js';

export interface RunningApi {
  url: string;
  server: ServerType;
  /** Stops taking connections and lets the requests in flight finish, up to the shutdown grace; idempotent. */
  close(): Promise<void>;
}

export interface ApiServerOptions {
  /** 0 picks a free one. */
  port: number;
  host: string;
  /** How long close() lets requests in flight finish before it cuts their connections; 20 s unless given. */
  shutdownGraceMs?: number;
}

/** Serves the API over HTTP. */
export async function startApiServer(deps: ApiDeps, options: ApiServerOptions): Promise<RunningApi> {
  const app = createApp(deps);
  const server = await new Promise<Server>((resolve) => {
    // A plain node:http server: serve() makes one unless given another createServer.
    const started = serve({ fetch: app.fetch, port: options.port, hostname: options.host }, () => resolve(started as Server));
  });
  let closed: Promise<void> | undefined;
  // Node keeps an answered request's keep-alive connection open until its timeout: once closing, close it when idle.
  server.on('request', (_request, response) =>
    response.once('close', () => {
      if (closed) server.closeIdleConnections();
    }),
  );
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${options.host}:${port}`,
    server,
    close: () => (closed ??= closeGracefully(server, options.shutdownGraceMs ?? 20_000)),
  };
}

/**
 * Refuses new connections at once, closes idle ones, waits for the requests in flight, and after `graceMs`
 * cuts the connections still open (a client that is cut off posts again; the inbound store dedupes).
 */
async function closeGracefully(server: Server, graceMs: number): Promise<void> {
  const allClosed = new Promise<void>((resolve) => server.close(() => resolve())); // also closes idle connections
  const deadline = setTimeout(() => server.closeAllConnections(), graceMs);
  try {
    await allClosed;
  } finally {
    clearTimeout(deadline);
  }
}

/**
 * A Temporal client that connects on first use, so the API starts (and keeps storing inbound mail)
 * while Temporal is still down. With the deployment's data converter, which encrypts what it sends.
 */
export function lazyTemporalClient(address: string, namespace: string, dataConverter: DataConverter): Client {
  return new Client({ connection: Connection.lazy({ address }), namespace, dataConverter });
}

// After the grace period, for what is left to close (database pool, Temporal connection).
const STOP_MARGIN_MS = 5_000;

async function main() {
  const config = loadConfig();
  const logger = createLogger(config.LOG_LEVEL);
  const db = await openDatabase(config);
  await migrateToLatest(db);
  const temporal = lazyTemporalClient(config.TEMPORAL_ADDRESS, config.TEMPORAL_NAMESPACE, dataConverterFromConfig(config));
  const graceMs = config.SHUTDOWN_GRACE_SECONDS * 1000;
  const api = await startApiServer(
    {
      db,
      temporal,
      ingest: createIngest({ db, temporal, taskQueue: config.TEMPORAL_TASK_QUEUE, inboundDomain: config.INBOUND_DOMAIN }),
      config,
      logger,
      taskQueue: config.TEMPORAL_TASK_QUEUE,
    },
    { port: config.PORT, host: config.HOST, shutdownGraceMs: graceMs },
  );
  logger.info({ url: api.url }, 'API listening');

  // A deploy's SIGTERM (Ctrl+C: SIGINT) lets the requests in flight finish; a second signal does not wait.
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal }, 'API exits at once: second signal');
      process.exit(1);
    }
    stopping = true;
    // Handlers of cut-off requests may still hold database connections: the pool is not waited for forever.
    setTimeout(() => {
      logger.error('API did not stop within the grace period and a margin; exiting');
      process.exit(1);
    }, graceMs + STOP_MARGIN_MS).unref();
    const closed = api.close(); // the port is closed from here on
    logger.info(
      { signal, graceSeconds: config.SHUTDOWN_GRACE_SECONDS },
      'API stopping: no new connections, requests in flight may finish',
    );
    closed
      .then(async () => {
        await db.destroy();
        await temporal.connection.close();
        logger.info('API stopped');
        process.exit(0);
      })
      .catch((error: unknown) => {
        logger.error({ err: error }, 'API failed to stop cleanly');
        process.exit(1);
      });
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((error) => {
    console.error(error);
    process.exit(1);
  });
}
