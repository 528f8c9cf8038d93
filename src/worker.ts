import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import { createActivities, type ActivityDeps } from './activities/index.js';
import { loadConfig, openAiCompatibleSettings } from './config.js';
import { openDatabase } from './db/connection.js';
import { migrateToLatest } from './db/migrate.js';
import { createIngest } from './ingest/ingest.js';
import { createLogger } from './logger.js';
import { createMailTransport } from './mail/transport.js';
import { TASK_QUEUE } from './workflows/ids.js';

export const WORKFLOWS_PATH = fileURLToPath(new URL('./workflows/index.ts', import.meta.url));

export interface MailroomWorkerOptions {
  connection: NativeConnection;
  namespace?: string;
  /** Tests give each worker its own queue; everything else uses the default. */
  taskQueue?: string;
  deps: ActivityDeps;
  /** A prebuilt bundle (tests build one per file); otherwise the workflows are bundled at start. */
  workflowBundle?: WorkerOptions['workflowBundle'];
}

/** The Temporal worker: every Mailroom workflow and activity on the one task queue. */
export function createMailroomWorker({
  connection,
  namespace,
  taskQueue,
  deps,
  workflowBundle,
}: MailroomWorkerOptions): Promise<Worker> {
  return Worker.create({
    connection,
    namespace: namespace ?? 'default',
    taskQueue: taskQueue ?? TASK_QUEUE,
    ...(workflowBundle ? { workflowBundle } : { workflowsPath: WORKFLOWS_PATH }),
    activities: createActivities(deps),
  });
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
  logger.info({ taskQueue: config.TEMPORAL_TASK_QUEUE, temporal: config.TEMPORAL_ADDRESS }, 'worker started');
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
