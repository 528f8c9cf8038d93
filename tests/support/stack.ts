import { randomUUID } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import { bundleWorkflowCode, NativeConnection } from '@temporalio/worker';
import { pino } from 'pino';
import { inject } from 'vitest';
import type { ActivityDeps } from '../../src/activities/index.js';
import { startApiServer, type RunningApi } from '../../src/api/server.js';
import { LOOPBACK_NETWORKS, type Config, type RateLimitSettings } from '../../src/config.js';
import type { Db } from '../../src/db/connection.js';
import { addAgentToChannel, createAccount, createChannel, createUser, type ChannelSettings } from '../../src/db/seed.js';
import { createIngest, type Ingest } from '../../src/ingest/ingest.js';
import { startMailReconciler } from '../../src/temporal/reconciler.js';
import { startWebhookDispatcher } from '../../src/temporal/webhooks.js';
import type { WebhookDeliverySettings } from '../../src/activities/webhooks.js';
import { createLogger } from '../../src/logger.js';
import { SmtpCapture } from '../../src/mail/smtp-capture.js';
import { createMailTransport } from '../../src/mail/transport.js';
import { dataConverterFromConfig } from '../../src/temporal/data-converter.js';
import { createMailroomWorker, workflowBundleOptions, type MailroomWorker } from '../../src/worker.js';
import { installTemporalRuntime } from '../../src/observability/temporal-runtime.js';
import { mailReconcilerWorkflowId, webhookDispatcherWorkflowId } from '../../src/workflows/ids.js';
import type { MailReconcilerInput } from '../../src/workflows/reconciler.js';
import { createTestDatabase } from './database.js';

export const TEST_SECRET_KEY = 'test-secret-key-test-secret-key-0123456789';
/** What every test's Temporal clients and workers encrypt with: the key derived from TEST_SECRET_KEY, as in production. */
export const TEST_DATA_CONVERTER = dataConverterFromConfig({ SECRET_KEY: TEST_SECRET_KEY });
/** The stack's INBOUND_DOMAIN: channels' forwarding addresses are username@subdomain.<this>. */
export const TEST_INBOUND_DOMAIN = 'inbound.mailroom.test';

export interface TestStack {
  db: Db;
  api: RunningApi;
  capture: SmtpCapture;
  temporal: Client;
  /** The main worker and the mailbox sessions' worker. */
  worker: MailroomWorker;
  /** The main task queue; the mailbox sessions run on mailboxTaskQueue(taskQueue). */
  taskQueue: string;
  /** Shuts the workers down, cancelling what they run, and starts new ones on the same task queues. */
  restartWorker(): Promise<void>;
  /** Runs `during` with the in-process workers stopped (e.g. while a worker process of the test's own runs), then starts them again. */
  runWithoutWorker(during: () => Promise<void>): Promise<void>;
  databaseUrl: string;
  smtpUrl: string;
  stop(): Promise<void>;
}

/**
 * The whole of Mailroom on real servers: its own database and task queue on the shared test
 * PostgreSQL and Temporal dev server, an SMTP capture on loopback, the worker and the HTTP API.
 */
export async function startTestStack(
  options: Pick<ActivityDeps, 'openAiCompatible'> & {
    /** Non-public ranges mail servers may resolve to; loopback by default, where the tests' Dovecot and SMTP servers run. */
    allowedPrivateNetworks?: string[];
    /** The API's rate limits (and their clock); unlimited unless given, so suites may call as fast as they like. */
    rateLimits?: Partial<RateLimitSettings> & Partial<Pick<Config, 'TRUSTED_PROXIES'>> & { clock?: () => number };
    /** Wraps the ingest the worker's activities use (the API keeps the plain one), e.g. to slow it down or count calls. */
    workerIngest?: (ingest: Ingest) => Ingest;
    /** Starts the mail reconciler on the stack's task queue at this pace; unless given, none runs. */
    reconciler?: MailReconcilerInput;
    /** Starts the webhook dispatcher on the stack's task queue (handing over every dispatchIntervalMs) with these retries; unless given, none runs. */
    webhooks?: Omit<WebhookDeliverySettings, 'temporal'> & { dispatchIntervalMs?: number };
    /** The API's port (any free one unless given), for a PUBLIC_URL that others must know first (an OAuth redirect URI). */
    api?: { port: number; publicUrl: string };
    /** Mailbox export limits: the upload (MAX_IMPORT_BYTES), a mail of it (1 MiB, as MAX_INBOUND_BYTES here), unpacked gzip; a run's length. */
    mailboxImports?: { maxImportBytes?: number; maxUnpackedBytes?: number; runMs?: number };
  } = {},
): Promise<TestStack> {
  const {
    allowedPrivateNetworks = LOOPBACK_NETWORKS,
    rateLimits: { clock, ...rateLimits } = {},
    workerIngest = (ingest: Ingest) => ingest,
    reconciler,
    webhooks: { dispatchIntervalMs, ...webhookSettings } = {},
    api: apiAddress,
    mailboxImports = {},
    ...activityOptions
  } = options;
  await quietTemporalRuntime();
  const address = inject('temporalAddress');
  const taskQueue = `mailroom-test-${randomUUID()}`;
  const database = await createTestDatabase();
  const { db } = database;
  const capture = new SmtpCapture();
  const smtp = await capture.listen();
  const temporal = new Client({ connection: await Connection.connect({ address }), dataConverter: TEST_DATA_CONVERTER });
  const logger = createLogger('silent');
  const ingest = createIngest({ db, temporal, taskQueue, inboundDomain: TEST_INBOUND_DOMAIN });
  const api = await startApiServer(
    {
      db,
      temporal,
      ingest,
      taskQueue,
      config: {
        SECRET_KEY: TEST_SECRET_KEY,
        MAX_INBOUND_BYTES: 1024 * 1024,
        PUBLIC_URL: apiAddress?.publicUrl ?? 'http://unused',
        INBOUND_DOMAIN: TEST_INBOUND_DOMAIN,
        ALLOWED_PRIVATE_NETWORKS: allowedPrivateNetworks,
        RATE_LIMIT_INBOUND_PER_MINUTE: 0,
        RATE_LIMIT_SURVEY_PER_MINUTE: 0,
        RATE_LIMIT_API_KEY_PER_MINUTE: 0,
        ...(mailboxImports.maxImportBytes ? { MAX_IMPORT_BYTES: mailboxImports.maxImportBytes } : {}),
        ...rateLimits,
      },
      logger,
      ...(clock ? { clock } : {}),
    },
    { port: apiAddress?.port ?? 0, host: '127.0.0.1' },
  );
  const workerConnection = await NativeConnection.connect({ address });
  const workflowBundle = await bundleWorkflowCode({ ...workflowBundleOptions, logger: quietBundlerLogger });
  const startWorker = async () => {
    const worker = await createMailroomWorker({
      connection: workerConnection,
      taskQueue,
      workflowBundle,
      dataConverter: TEST_DATA_CONVERTER,
      deps: {
        db,
        ingest: workerIngest(ingest),
        inboundDomain: TEST_INBOUND_DOMAIN,
        mail: createMailTransport(smtp.url, { allowedPrivateNetworks }),
        publicUrl: api.url,
        secretKey: TEST_SECRET_KEY,
        allowedPrivateNetworks,
        mailboxImports: {
          maxMailBytes: 1024 * 1024,
          maxUnpackedBytes: mailboxImports.maxUnpackedBytes ?? 1024 ** 3,
          ...(mailboxImports.runMs === undefined ? {} : { runMs: mailboxImports.runMs }),
        },
        webhooks: { ...webhookSettings, temporal },
        ...activityOptions,
      },
    });
    return { worker, running: worker.run() };
  };
  let current = await startWorker();
  if (reconciler) await startMailReconciler(temporal, taskQueue, reconciler);
  // Short runs, so that a test sees the dispatcher's workflow at work between them (and records it).
  if (options.webhooks)
    await startWebhookDispatcher(temporal, taskQueue, { intervalMs: dispatchIntervalMs ?? 200, runMs: 5_000 });
  return {
    db,
    api,
    capture,
    temporal,
    get worker() {
      return current.worker;
    },
    taskQueue,
    async restartWorker() {
      current.worker.shutdown();
      await current.running;
      current = await startWorker();
    },
    async runWithoutWorker(during: () => Promise<void>) {
      current.worker.shutdown();
      await current.running;
      try {
        await during();
      } finally {
        current = await startWorker();
      }
    },
    databaseUrl: database.url,
    smtpUrl: smtp.url,
    async stop() {
      await (await import('./history-recorder.js')).recordTaskQueueHistories(temporal, taskQueue);
      // The reconciler would otherwise wait on the shared dev server for a worker that never comes back.
      if (reconciler) await temporal.workflow.getHandle(mailReconcilerWorkflowId(taskQueue)).terminate('test stack stopped');
      current.worker.shutdown();
      await current.running;
      // After the worker, whose shutdown cancels the dispatcher's running activity while its workflow still runs.
      if (options.webhooks) await stopWebhookWorkflows(temporal, taskQueue);
      await workerConnection.close();
      await api.close();
      await temporal.connection.close();
      await capture.close();
      await database.drop();
    },
  };
}

/** The dispatcher and every lane still waiting (a retry's backoff, an idle minute) of the stack's task queue. */
async function stopWebhookWorkflows(temporal: Client, taskQueue: string) {
  await temporal.workflow.getHandle(webhookDispatcherWorkflowId(taskQueue)).terminate('test stack stopped');
  const running = temporal.workflow.list({
    query: `WorkflowType = 'webhookLane' AND TaskQueue = '${taskQueue}' AND ExecutionStatus = 'Running'`,
  });
  for await (const lane of running) {
    await temporal.workflow
      .getHandle(lane.workflowId)
      .terminate('test stack stopped')
      .catch(() => undefined);
  }
}

let runtimeInstalled: Promise<void> | undefined;
/** The newest lines the Temporal runtime logged in this test process (pino JSON), for tests of what they carry. */
export const temporalRuntimeLog: Record<string, unknown>[] = [];
const RUNTIME_LOG_KEPT = 500;

/**
 * The SDK logs every worker state change at INFO; tests want warnings only (through pino, as in production: echoed
 * to stderr and kept in temporalRuntimeLog), and its worker metrics on the stack's /metrics as in production.
 * Once per process.
 */
export function quietTemporalRuntime(): Promise<void> {
  const destination = {
    write(line: string) {
      process.stderr.write(line);
      temporalRuntimeLog.push(JSON.parse(line) as Record<string, unknown>);
      if (temporalRuntimeLog.length > RUNTIME_LOG_KEPT) temporalRuntimeLog.shift();
    },
  };
  runtimeInstalled ??= installTemporalRuntime({ logger: pino({ level: 'warn', base: { service: 'mailroom' } }, destination) });
  return runtimeInstalled;
}

const quietBundlerLogger = {
  log: () => undefined,
  trace: () => undefined,
  debug: () => undefined,
  info: () => undefined,
  warn: (message: string) => console.warn(message),
  error: (message: string) => console.error(message),
};

/** An account with an admin, two agents and a channel; returns their keys and the forwarder secret. */
export async function seedSupportTeam(db: Db, channel: Omit<ChannelSettings, 'accountId'>) {
  const account = await createAccount(db, 'Acme');
  const admin = await createUser(db, { accountId: account.id, name: 'Ada Admin', email: 'ada@acme.example', role: 'admin' });
  const alice = await createUser(db, { accountId: account.id, name: 'Alice Agent', email: 'alice@acme.example', role: 'agent' });
  const bob = await createUser(db, { accountId: account.id, name: 'Bob Agent', email: 'bob@acme.example', role: 'agent' });
  const created = await createChannel(db, { accountId: account.id, ...channel });
  await addAgentToChannel(db, created.id, alice.id);
  await addAgentToChannel(db, created.id, bob.id);
  return { account, admin, agents: [alice, bob], channel: created };
}
