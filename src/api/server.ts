import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { serve, type ServerType } from '@hono/node-server';
import { Client, Connection } from '@temporalio/client';
import { loadConfig } from '../config.js';
import { openDatabase } from '../db/connection.js';
import { migrateToLatest } from '../db/migrate.js';
import { createIngest } from '../ingest/ingest.js';
import { createLogger } from '../logger.js';
import { createApp } from './app.js';
import type { ApiDeps } from './env.js';

export interface RunningApi {
  url: string;
  server: ServerType;
  close(): Promise<void>;
}

/** Serves the API over HTTP; port 0 picks a free one. */
export async function startApiServer(deps: ApiDeps, options: { port: number; host: string }): Promise<RunningApi> {
  const app = createApp(deps);
  const server = await new Promise<ServerType>((resolve) => {
    const started = serve({ fetch: app.fetch, port: options.port, hostname: options.host }, () => resolve(started));
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${options.host}:${port}`,
    server,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/**
 * A Temporal client that connects on first use, so the API starts (and keeps storing inbound mail)
 * while Temporal is still down.
 */
export function lazyTemporalClient(address: string, namespace = 'default'): Client {
  return new Client({ connection: Connection.lazy({ address }), namespace });
}

async function main() {
  const config = loadConfig();
  const logger = createLogger(config.LOG_LEVEL);
  const db = await openDatabase(config);
  await migrateToLatest(db);
  const temporal = lazyTemporalClient(config.TEMPORAL_ADDRESS, config.TEMPORAL_NAMESPACE);
  const api = await startApiServer(
    {
      db,
      temporal,
      ingest: createIngest({ db, temporal, taskQueue: config.TEMPORAL_TASK_QUEUE }),
      config,
      logger,
      taskQueue: config.TEMPORAL_TASK_QUEUE,
    },
    { port: config.PORT, host: config.HOST },
  );
  logger.info({ url: api.url }, 'API listening');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((error) => {
    console.error(error);
    process.exit(1);
  });
}
