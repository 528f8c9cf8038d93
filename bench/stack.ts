// What the benchmark runs against: real Temporal and PostgreSQL servers, a fresh database with one channel, and the HTTP API.
// The IMAP part (bench/imap-stack.ts) adds its Dovecot and worker to this stack, so one stop() ends everything.
import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import type { ActivityDeps } from '../src/activities/index.js';
import { SmtpCapture } from '../src/mail/smtp-capture.js';
import { createMailTransport } from '../src/mail/transport.js';
import { createMailroomWorker, type MailroomWorker } from '../src/worker.js';
import { startPostgres } from '../scripts/servers/postgres.js';
import { createScratchDatabase } from '../scripts/servers/scratch-database.js';
import { startTemporalDevServer } from '../scripts/servers/temporal-dev-server.js';
import { ensureTools } from '../scripts/servers/tools.js';
import { startApiServer } from '../src/api/server.js';
import { LOOPBACK_NETWORKS } from '../src/config.js';
import { dataConverterFromConfig, mailroomDataConverter } from '../src/temporal/data-converter.js';
import { installTemporalRuntime } from '../src/observability/temporal-runtime.js';
import { connectPostgres, type Db } from '../src/db/connection.js';
import { migrateToLatest } from '../src/db/migrate.js';
import { createAccount, createChannel } from '../src/db/seed.js';
import { createIngest } from '../src/ingest/ingest.js';
import { createLogger } from '../src/logger.js';
import { SqlStatementLog } from './ingest-breakdown.js';

/** No worker polls these queues, so only ingest (or the bare call) is measured, never workflow execution. */
export const INGEST_TASK_QUEUE = 'bench-ingest';
export const BARE_TASK_QUEUE = 'bench-bare';
/** The API's SECRET_KEY; the IMAP worker needs the same one to decrypt the mailbox passwords. */
export const BENCH_SECRET_KEY = 'x'.repeat(40);
/** Encrypts as a deployment does (its key derived from BENCH_SECRET_KEY); `mailroomDataConverter(false)` leaves payloads clear. */
export const BENCH_DATA_CONVERTER = dataConverterFromConfig({ SECRET_KEY: BENCH_SECRET_KEY });

/** The configuration of every API the bench starts, in its process or in one of their own. */
export const BENCH_API_CONFIG = {
  SECRET_KEY: BENCH_SECRET_KEY,
  MAX_INBOUND_BYTES: 25 * 1024 * 1024,
  PUBLIC_URL: 'http://localhost',
  INBOUND_DOMAIN: 'inbound.mailroom.test',
  // The benchmark's Dovecot and SMTP capture run on loopback.
  ALLOWED_PRIVATE_NETWORKS: LOOPBACK_NETWORKS,
  // It measures throughput and cost per mail: limited, the forwarder would answer 429 after 600 mails a minute.
  RATE_LIMIT_INBOUND_PER_MINUTE: 0,
  RATE_LIMIT_SURVEY_PER_MINUTE: 0,
  RATE_LIMIT_API_KEY_PER_MINUTE: 0,
};

/** What every Mailroom worker the bench starts is given besides its database, ingest and mail. */
export const BENCH_WORKER_SETTINGS = {
  publicUrl: 'http://localhost',
  secretKey: BENCH_SECRET_KEY,
  // The bench's Dovecot, SMTP capture and webhook subscribers run on loopback.
  allowedPrivateNetworks: LOOPBACK_NETWORKS,
};

let runtimeInstalled: Promise<void> | undefined;

/** The Temporal runtime for the bench's in-process workers, once (before the first NativeConnection). */
export function installBenchRuntime(): Promise<void> {
  // No shutdown signals: bench/run.ts's SIGINT handler stops the workers.
  runtimeInstalled ??= installTemporalRuntime({ logger: createLogger('warn'), metrics: false, shutdownSignals: [] });
  return runtimeInstalled;
}

/**
 * A Mailroom worker in the bench process on `taskQueue`, its SMTP capture and connection stopped with the stack. Its
 * ingest starts conversation workflows on the forwarder's unpolled queue, so only what the section measures runs.
 */
export async function startBenchWorker(
  stack: BenchStack,
  taskQueue: string,
  deps: Partial<ActivityDeps> = {},
): Promise<MailroomWorker> {
  await installBenchRuntime();
  const connection = await NativeConnection.connect({ address: stack.temporalAddress });
  stack.addStop(() => connection.close());
  const capture = new SmtpCapture();
  const smtp = await capture.listen();
  stack.addStop(() => capture.close());
  const mail = createMailTransport(smtp.url, { allowedPrivateNetworks: LOOPBACK_NETWORKS });
  const worker = await createMailroomWorker({
    connection,
    taskQueue,
    dataConverter: BENCH_DATA_CONVERTER,
    deps: {
      db: stack.db,
      ingest: createIngest({ db: stack.db, temporal: stack.temporal, taskQueue: INGEST_TASK_QUEUE }),
      mail,
      ...BENCH_WORKER_SETTINGS,
      ...deps,
    },
  });
  const running = worker.run();
  running.catch((error: unknown) => console.error(`bench: the worker of ${taskQueue} stopped:`, error));
  stack.addStop(async () => {
    if (worker.getState() === 'RUNNING') worker.shutdown();
    await running;
    mail.close();
  });
  return worker;
}

export interface BenchStack {
  apiUrl: string;
  /** A second API on the same database and channel whose Temporal client leaves payloads in clear text: the codec's cost. */
  clearApiUrl: string;
  db: Db;
  /** Every SQL statement the two APIs send, with its round trip (the ingest breakdown reads it). */
  sqlLog: SqlStatementLog;
  /** The database's URL, for API or worker processes of a section's own. */
  databaseUrl: string;
  accountId: string;
  channel: { id: string; forwarderSecret: string };
  temporal: Client;
  temporalAddress: string;
  /** Has stop() stop this too, before anything started earlier. */
  addStop(stopOne: () => Promise<void>): void;
  /** Stops everything started so far, newest first; safe to call twice. */
  stop(): Promise<void>;
}

export async function startBenchStack(): Promise<BenchStack> {
  const stops: Array<() => Promise<void>> = [];
  const stop = async () => {
    for (const stopOne of stops.splice(0).reverse()) {
      await stopOne().catch((error: unknown) => console.error('bench: cleanup step failed:', error));
    }
  };

  try {
    await ensureTools(['temporal', 'postgres', 'dovecot']);
    const temporalServer = await startTemporalDevServer();
    stops.push(temporalServer.stop);

    // Like the tests: a server of your own via DATABASE_URL, else the project's private cluster.
    let serverUrl = process.env.DATABASE_URL;
    if (!serverUrl) {
      const postgres = await startPostgres();
      stops.push(postgres.stop);
      serverUrl = postgres.url;
    }
    const database = await createScratchDatabase(serverUrl, { prefix: 'mailroom_bench' });
    stops.push(database.drop);
    const { db } = database;
    await migrateToLatest(db);
    const account = await createAccount(db, 'Bench');
    const channel = await createChannel(db, {
      accountId: account.id,
      name: 'Bench support',
      emailAddress: 'support@acme.example',
    });

    const temporal = new Client({
      connection: await Connection.connect({ address: temporalServer.address }),
      dataConverter: BENCH_DATA_CONVERTER,
    });
    stops.push(() => temporal.connection.close());
    // The APIs' own pool, of the size `npm run api` uses, so the figure is that of the deployed API; its statements logged.
    const sqlLog = new SqlStatementLog();
    const apiDb = connectPostgres(database.url, { log: sqlLog.log });
    stops.push(() => apiDb.destroy());
    const startApi = (client: Client) =>
      startApiServer(
        {
          db: apiDb,
          temporal: client,
          ingest: createIngest({ db: apiDb, temporal: client, taskQueue: INGEST_TASK_QUEUE }),
          config: BENCH_API_CONFIG,
          logger: createLogger('silent'),
        },
        { port: 0, host: '127.0.0.1' },
      );
    const api = await startApi(temporal);
    stops.push(api.close);
    const clearTemporal = new Client({
      connection: temporal.connection,
      dataConverter: mailroomDataConverter(false),
    });
    const clearApi = await startApi(clearTemporal);
    stops.push(clearApi.close);

    return {
      apiUrl: api.url,
      clearApiUrl: clearApi.url,
      db,
      sqlLog,
      databaseUrl: database.url,
      accountId: account.id,
      channel,
      temporal,
      temporalAddress: temporalServer.address,
      addStop: (stopOne) => void stops.push(stopOne),
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
