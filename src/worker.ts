import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import type { DataConverter } from '@temporalio/common';
import {
  bundleWorkflowCode,
  NativeConnection,
  Runtime,
  Worker,
  type State,
  type BundleOptions,
  type WorkerOptions,
} from '@temporalio/worker';
import { createActivities, type ActivityDeps } from './activities/index.js';
import type { MailboxSyncResult } from './activities/mailbox.js';
import {
  deploymentOAuthClients,
  loadConfig,
  mailboxImportLimits,
  openAiCompatibleSettings,
  webhookDeliverySettings,
} from './config.js';
import { openDatabase } from './db/connection.js';
import { migrateToLatest } from './db/migrate.js';
import { createIngest } from './ingest/ingest.js';
import { startMailReconciler } from './temporal/reconciler.js';
import { ensureRetentionSchedule } from './temporal/erasure.js';
import { startWebhookDispatcher } from './temporal/webhooks.js';
import { createLogger } from './logger.js';
import { startMetricsServer } from './observability/metrics-endpoint.js';
import { installTemporalRuntime } from './observability/temporal-runtime.js';
import { createMailTransport } from './mail/transport.js';
import { dataConverterFromConfig, FAILURE_CONVERTER_PATH } from './temporal/data-converter.js';
import { mailboxTaskQueue, TASK_QUEUE, webhookTaskQueue } from './workflows/ids.js';

// Under tsx the sources are .ts; compiled (npm run build) this file and the workflows are .js side by side.
const SOURCE_EXTENSION = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
export const WORKFLOWS_PATH = fileURLToPath(new URL(`./workflows/index${SOURCE_EXTENSION}`, import.meta.url));
const STACK_TRACE_LIMIT_PATH = fileURLToPath(new URL(`./workflows/stack-trace-limit${SOURCE_EXTENSION}`, import.meta.url));

/** How a bundle of the workflows under `workflowsPath` is built (all but the logger). */
export function workflowBundleOptionsOf(workflowsPath: string) {
  return {
    workflowsPath,
    // Failures the workflows raise travel encoded (and so encrypted), like the worker's own.
    failureConverterPath: FAILURE_CONVERTER_PATH,
    // Loaded once as the workflows' sandbox is set up, before its globals are frozen: the stack limit, and the
    // workflows' own modules, which every workflow then shares (frozen) instead of evaluating a copy of its own. They
    // keep nothing of a workflow at module scope (the lint forbids module-level `let` in src/workflows and src/domain).
    preloadModules: [STACK_TRACE_LIMIT_PATH, workflowsPath],
  } satisfies Omit<BundleOptions, 'logger'>;
}

/** Mailroom's workflow bundle, the same for the production build, the tests and the bench. */
export const workflowBundleOptions = workflowBundleOptionsOf(WORKFLOWS_PATH);

/** Where `npm run build` writes the prebuilt bundle: next to the compiled worker (under tsx there is none). */
export const PREBUILT_WORKFLOW_BUNDLE_PATH = fileURLToPath(new URL('./workflow-bundle.js', import.meta.url));

export interface MailroomWorkerOptions {
  connection: NativeConnection;
  namespace?: string;
  /** Tests give each worker its own queue; everything else uses the default. The mailbox queue is derived from it. */
  taskQueue?: string;
  deps: ActivityDeps;
  /** The deployment's (src/temporal/data-converter.ts): payloads and failures are encrypted before Temporal sees them. */
  dataConverter: DataConverter;
  /** A prebuilt bundle (the production build's, or one per test file); otherwise the workflows are bundled at start. */
  workflowBundle?: WorkerOptions['workflowBundle'];
  /** After shutdown(), how long running activities may finish before they are cancelled; the SDK's default is 0. */
  shutdownGraceTime?: WorkerOptions['shutdownGraceTime'];
  /** After shutdown(), when run() gives up on activities that ignore their cancellation and throws; unset: never. */
  shutdownForceTime?: WorkerOptions['shutdownForceTime'];
}

// A mailbox session is mostly an idle IMAP connection: hundreds fit in one process.
const MAILBOX_SESSION_SLOTS = 500;
// A webhook attempt waits on a subscriber for at most 15 s; these run at once, apart from everything else.
const WEBHOOK_ATTEMPT_SLOTS = 100;

/** The Temporal workers of one Mailroom process, run and stopped together. */
export interface MailroomWorker {
  /** Every workflow, and every activity but the mailbox sessions, on the main task queue. */
  readonly main: Worker;
  /** The IMAP mailbox sessions (syncMailbox) and mailbox imports on the mailbox queue, with slots of their own. */
  readonly mailbox: Worker;
  /** The webhook attempts (attemptWebhookDelivery) on the webhook queue, with slots of their own. */
  readonly webhooks: Worker;
  /** Runs them until shutdown; when one fails, the others are shut down too and the failure is thrown. */
  run(): Promise<void>;
  shutdown(): void;
  /** The main worker's state. */
  getState(): State;
}

/**
 * A session that a mailbox workflow started before the mailbox queue scheduled on the main queue, and that is
 * retried there after the deploy: it ends at once, and the workflow schedules its next session on the mailbox queue.
 */
async function handOverMailboxSession(): Promise<MailboxSyncResult> {
  return { state: 'synced', ingested: 0, idleSupported: true, pollIntervalSeconds: 0 };
}

/**
 * The Temporal workers: every Mailroom workflow and activity on the main task queue, except the IMAP
 * mailbox sessions, which poll a queue of their own so that 100+ idle sessions never starve conversations.
 */
export async function createMailroomWorker({
  connection,
  namespace = 'default',
  taskQueue = TASK_QUEUE,
  deps,
  dataConverter,
  workflowBundle,
  shutdownGraceTime,
  shutdownForceTime,
}: MailroomWorkerOptions): Promise<MailroomWorker> {
  const { syncMailbox, ...activities } = createActivities(deps);
  // Left out unless given: an undefined option would override the SDK's default.
  const shutdownTimes = {
    ...(shutdownGraceTime === undefined ? {} : { shutdownGraceTime }),
    ...(shutdownForceTime === undefined ? {} : { shutdownForceTime }),
  };
  const main = await Worker.create({
    connection,
    namespace,
    taskQueue,
    dataConverter,
    workflowBundle: workflowBundle ?? (await bundleWorkflowCode({ ...workflowBundleOptions, logger: Runtime.instance().logger })),
    activities: { ...activities, syncMailbox: handOverMailboxSession },
    ...shutdownTimes,
  });
  const mailbox = await Worker.create({
    connection,
    namespace,
    taskQueue: mailboxTaskQueue(taskQueue),
    dataConverter,
    ...shutdownTimes,
    // A mailbox import's run holds its slot for as long as it reads: here it never takes a conversation's.
    activities: { syncMailbox, importMailboxExport: activities.importMailboxExport },
    maxConcurrentActivityTaskExecutions: MAILBOX_SESSION_SLOTS,
  });
  const webhooks = await Worker.create({
    connection,
    namespace,
    taskQueue: webhookTaskQueue(taskQueue),
    dataConverter,
    ...shutdownTimes,
    // A dead or slow subscriber holds these slots, never a conversation's or a mailbox's.
    activities: { attemptWebhookDelivery: activities.attemptWebhookDelivery },
    maxConcurrentActivityTaskExecutions: WEBHOOK_ATTEMPT_SLOTS,
  });
  const workers = [main, mailbox, webhooks];
  const shutdown = () => {
    for (const worker of workers) if (worker.getState() === 'RUNNING') worker.shutdown();
  };
  return {
    main,
    mailbox,
    webhooks,
    async run() {
      const runs = workers.map((worker) => worker.run());
      try {
        await Promise.all(runs);
      } catch (error) {
        shutdown();
        await Promise.allSettled(runs);
        throw error;
      }
    },
    shutdown,
    getState: () => main.getState(),
  };
}

// After the grace period, for cancelled activities to stop before the worker gives up on them and exits.
const CANCELLED_ACTIVITIES_MARGIN_MS = 10_000;

async function main() {
  const config = loadConfig();
  const logger = createLogger(config.LOG_LEVEL);
  if (!config.SMTP_URL) throw new Error('SMTP_URL is required to run the worker on its own (npm start runs a capture instead)');
  // The SDK's logs through pino, its worker metrics beside Mailroom's. Left to itself, the runtime would shut the
  // workers down on SIGINT, SIGTERM, SIGQUIT and SIGUSR2 without closing anything else: the signals are handled
  // below instead, where what they do can be read.
  await installTemporalRuntime({ logger, shutdownSignals: [] });
  const db = await openDatabase(config);
  await migrateToLatest(db);
  const metrics =
    config.METRICS_PORT === undefined
      ? undefined
      : await startMetricsServer({ port: config.METRICS_PORT, host: config.METRICS_HOST, token: config.METRICS_TOKEN });
  const connection = await NativeConnection.connect({ address: config.TEMPORAL_ADDRESS });
  // IMAP mailboxes feed the same ingest as the forwarder endpoint, which starts conversation workflows.
  const dataConverter = dataConverterFromConfig(config);
  const temporal = new Client({
    connection: await Connection.connect({ address: config.TEMPORAL_ADDRESS }),
    namespace: config.TEMPORAL_NAMESPACE,
    dataConverter,
  });
  const mail = createMailTransport(config.SMTP_URL, { allowedPrivateNetworks: config.ALLOWED_PRIVATE_NETWORKS });
  const graceMs = config.SHUTDOWN_GRACE_SECONDS * 1000;
  const worker = await createMailroomWorker({
    connection,
    namespace: config.TEMPORAL_NAMESPACE,
    taskQueue: config.TEMPORAL_TASK_QUEUE,
    dataConverter,
    deps: {
      db,
      ingest: createIngest({ db, temporal, taskQueue: config.TEMPORAL_TASK_QUEUE, inboundDomain: config.INBOUND_DOMAIN }),
      inboundDomain: config.INBOUND_DOMAIN,
      mail,
      publicUrl: config.PUBLIC_URL,
      secretKey: config.SECRET_KEY,
      allowedPrivateNetworks: config.ALLOWED_PRIVATE_NETWORKS,
      openAiCompatible: openAiCompatibleSettings(config),
      mailboxImports: mailboxImportLimits(config),
      oauthClients: deploymentOAuthClients(config),
      webhooks: { ...webhookDeliverySettings(config), temporal },
    },
    shutdownGraceTime: graceMs,
    shutdownForceTime: graceMs + CANCELLED_ACTIVITIES_MARGIN_MS,
    // The compiled worker starts from the bundle built with the image instead of bundling on every start.
    ...(existsSync(PREBUILT_WORKFLOW_BUNDLE_PATH) ? { workflowBundle: { codePath: PREBUILT_WORKFLOW_BUNDLE_PATH } } : {}),
  });
  // One per task queue however many workers run: stored mail that never reached its conversation is finished.
  await startMailReconciler(temporal, config.TEMPORAL_TASK_QUEUE);
  // One per task queue too: the daily sweep that erases closed conversations past their account's retention.
  await ensureRetentionSchedule(temporal, config.TEMPORAL_TASK_QUEUE);
  // Likewise one dispatcher: committed webhook deliveries reach their lanes even when a process died after the commit.
  await startWebhookDispatcher(temporal, config.TEMPORAL_TASK_QUEUE);
  const running = worker.run(); // both workers are running from here on, so a signal can stop them

  // A deploy's SIGTERM (Ctrl+C: SIGINT) stops polling and lets running activities finish within the grace period;
  // then they are cancelled, and Temporal retries them on another worker. A second signal does not wait.
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal }, 'worker exits at once: second signal; Temporal retries the activities it was running');
      process.exit(1);
    }
    stopping = true;
    worker.shutdown();
    logger.info(
      { signal, graceSeconds: config.SHUTDOWN_GRACE_SECONDS },
      'worker stopping: no new tasks, running activities may finish',
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  logger.info(
    {
      taskQueue: config.TEMPORAL_TASK_QUEUE,
      mailboxTaskQueue: mailboxTaskQueue(config.TEMPORAL_TASK_QUEUE),
      temporal: config.TEMPORAL_ADDRESS,
      workflowBundle: existsSync(PREBUILT_WORKFLOW_BUNDLE_PATH) ? 'prebuilt' : 'bundled at start',
      ...(metrics ? { metrics: metrics.url } : {}),
    },
    'worker started',
  );
  await running;
  await metrics?.close();
  mail.close();
  await db.destroy();
  await temporal.connection.close();
  await connection.close();
  logger.info('worker stopped');
  process.exit(0);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((error) => {
    console.error(error);
    process.exit(1);
  });
}
