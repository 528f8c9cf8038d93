import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import {
  DefaultLogger,
  NativeConnection,
  Worker,
  type LogLevel,
  type LogMetadata,
  type State,
  type WorkerOptions,
} from '@temporalio/worker';
import { createActivities, type ActivityDeps } from './activities/index.js';
import type { MailboxSyncResult } from './activities/mailbox.js';
import { loadConfig, openAiCompatibleSettings } from './config.js';
import { openDatabase } from './db/connection.js';
import { migrateToLatest } from './db/migrate.js';
import { createIngest } from './ingest/ingest.js';
import { createLogger } from './logger.js';
import { createMailTransport } from './mail/transport.js';
import { mailboxTaskQueue, TASK_QUEUE } from './workflows/ids.js';

export const WORKFLOWS_PATH = fileURLToPath(new URL('./workflows/index.ts', import.meta.url));

export interface MailroomWorkerOptions {
  connection: NativeConnection;
  namespace?: string;
  /** Tests give each worker its own queue; everything else uses the default. The mailbox queue is derived from it. */
  taskQueue?: string;
  deps: ActivityDeps;
  /** A prebuilt bundle (tests build one per file); otherwise the workflows are bundled at start. */
  workflowBundle?: WorkerOptions['workflowBundle'];
}

/**
 * The SDK's logger (Runtime.install), less its warning that the mailbox worker polls no workflows: that worker
 * runs activities only, as meant, and the warning would read like a fault at every start.
 */
export class MailroomRuntimeLogger extends DefaultLogger {
  override log(level: LogLevel, message: string, meta?: LogMetadata): void {
    if (message.startsWith('No workflows registered') && String(meta?.taskQueue).endsWith(mailboxTaskQueue(''))) return;
    super.log(level, message, meta);
  }
}

// A mailbox session is mostly an idle IMAP connection: hundreds fit in one process.
const MAILBOX_SESSION_SLOTS = 500;

/** The two Temporal workers of one Mailroom process, run and stopped together. */
export interface MailroomWorker {
  /** Every workflow, and every activity but the mailbox sessions, on the main task queue. */
  readonly main: Worker;
  /** The IMAP mailbox sessions (syncMailbox) on the mailbox queue, with slots of their own. */
  readonly mailbox: Worker;
  /** Runs both until shutdown; when one fails, the other is shut down too and the failure is thrown. */
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
  workflowBundle,
}: MailroomWorkerOptions): Promise<MailroomWorker> {
  const { syncMailbox, ...activities } = createActivities(deps);
  const main = await Worker.create({
    connection,
    namespace,
    taskQueue,
    ...(workflowBundle ? { workflowBundle } : { workflowsPath: WORKFLOWS_PATH }),
    activities: { ...activities, syncMailbox: handOverMailboxSession },
  });
  const mailbox = await Worker.create({
    connection,
    namespace,
    taskQueue: mailboxTaskQueue(taskQueue),
    activities: { syncMailbox },
    maxConcurrentActivityTaskExecutions: MAILBOX_SESSION_SLOTS,
  });
  const workers = [main, mailbox];
  const shutdown = () => {
    for (const worker of workers) if (worker.getState() === 'RUNNING') worker.shutdown();
  };
  return {
    main,
    mailbox,
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

async function main() {
  const config = loadConfig();
  const logger = createLogger(config.LOG_LEVEL);
  if (!config.SMTP_URL) throw new Error('SMTP_URL is required to run the worker on its own (npm start runs a capture instead)');
  const db = await openDatabase(config);
  await migrateToLatest(db);
  const connection = await NativeConnection.connect({ address: config.TEMPORAL_ADDRESS });
  // IMAP mailboxes feed the same ingest as the forwarder endpoint, which starts conversation workflows.
  const temporal = new Client({
    connection: await Connection.connect({ address: config.TEMPORAL_ADDRESS }),
    namespace: config.TEMPORAL_NAMESPACE,
  });
  const worker = await createMailroomWorker({
    connection,
    namespace: config.TEMPORAL_NAMESPACE,
    taskQueue: config.TEMPORAL_TASK_QUEUE,
    deps: {
      db,
      ingest: createIngest({ db, temporal, taskQueue: config.TEMPORAL_TASK_QUEUE }),
      mail: createMailTransport(config.SMTP_URL, { allowedPrivateNetworks: config.ALLOWED_PRIVATE_NETWORKS }),
      publicUrl: config.PUBLIC_URL,
      secretKey: config.SECRET_KEY,
      allowedPrivateNetworks: config.ALLOWED_PRIVATE_NETWORKS,
      openAiCompatible: openAiCompatibleSettings(config),
    },
  });
  logger.info(
    {
      taskQueue: config.TEMPORAL_TASK_QUEUE,
      mailboxTaskQueue: mailboxTaskQueue(config.TEMPORAL_TASK_QUEUE),
      temporal: config.TEMPORAL_ADDRESS,
    },
    'worker started',
  );
  await worker.run();
  await db.destroy();
  await temporal.connection.close();
  await connection.close();
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((error) => {
    console.error(error);
    process.exit(1);
  });
}
