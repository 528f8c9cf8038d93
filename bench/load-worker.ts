// A worker process of bench/greeting-load.ts and bench/cost.ts: one Mailroom worker (createMailroomWorker, every activity,
// as src/worker.ts's main() builds it) in a process of its own, so that its CPU time and RSS are the worker's alone and two
// of them on one task queue are two workers as a deployment runs them. Started by the benchmark with IPC; not meant to be
// run by hand. DATABASE_URL, SMTP_URL, TEMPORAL_ADDRESS, TEMPORAL_TASK_QUEUE, and the prebuilt bundle at
// BENCH_WORKFLOW_BUNDLE. Temporal records its default identity (pid@host) on every task it takes: the benchmark counts
// each process's work from the histories by this process's pid.
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, type LogEntry } from '@temporalio/worker';
import { LOOPBACK_NETWORKS } from '../src/config.js';
import { connectPostgres } from '../src/db/connection.js';
import { createIngest } from '../src/ingest/ingest.js';
import { createMailTransport } from '../src/mail/transport.js';
import { createMailroomWorker } from '../src/worker.js';
import { BENCH_DATA_CONVERTER, BENCH_WORKER_SETTINGS } from './stack.js';
import { requiredEnv } from './child-process.js';

/** What the benchmark asks of this process over IPC. */
export type LoadWorkerRequest = { type: 'sample'; id: number; gc: boolean } | { type: 'stop' };

export interface LoadWorkerSample {
  rss: number;
  /** The main thread's heap and the memory outside it (buffers, sockets): activities live here, workflows do not. */
  heapUsed: number;
  external: number;
  /** CPU time of the whole process (every thread) so far, in seconds. */
  cpuSeconds: number;
  cachedWorkflows: number;
  /** Activities running on the mailbox queue: one per IMAP session. */
  mailboxSessions: number;
  /** Log lines at WARN and above (failed activity attempts among them), and the first few of them. */
  warnings: number;
  firstWarnings: string[];
}

/** What this process tells the benchmark over IPC. */
export type LoadWorkerReport =
  { type: 'ready'; pid: number } | ({ type: 'sample'; id: number } & LoadWorkerSample) | { type: 'failed'; message: string };

let warnings = 0;
const firstWarnings: string[] = [];

function log(entry: LogEntry) {
  if (entry.level !== 'WARN' && entry.level !== 'ERROR') return;
  if (entry.message.startsWith('No workflows registered')) return; // the mailbox and webhook workers, as meant
  warnings++;
  const cause = entry.meta?.error instanceof Error ? `: ${entry.meta.error.message}` : '';
  if (firstWarnings.length < 5) firstWarnings.push(`${entry.level} ${entry.message}${cause}`);
}

function send(report: LoadWorkerReport) {
  process.send?.(report);
}

async function main() {
  if (!process.send) throw new Error('bench/load-worker.ts is started by the benchmark, with IPC');
  const address = requiredEnv('TEMPORAL_ADDRESS');
  const taskQueue = requiredEnv('TEMPORAL_TASK_QUEUE');
  Runtime.install({ logger: new DefaultLogger('WARN', log) });
  const connection = await NativeConnection.connect({ address });
  const db = connectPostgres(requiredEnv('DATABASE_URL'));
  const temporal = new Client({ connection: await Connection.connect({ address }), dataConverter: BENCH_DATA_CONVERTER });
  const mail = createMailTransport(requiredEnv('SMTP_URL'), { allowedPrivateNetworks: LOOPBACK_NETWORKS });
  const worker = await createMailroomWorker({
    connection,
    taskQueue,
    workflowBundle: { codePath: requiredEnv('BENCH_WORKFLOW_BUNDLE') },
    dataConverter: BENCH_DATA_CONVERTER,
    deps: {
      db,
      ingest: createIngest({ db, temporal, taskQueue }),
      mail,
      ...BENCH_WORKER_SETTINGS,
    },
  });

  process.on('message', (request: LoadWorkerRequest) => {
    if (request.type === 'stop') return worker.shutdown();
    if (request.gc) global.gc?.();
    const cpu = process.cpuUsage();
    const memory = process.memoryUsage();
    send({
      type: 'sample',
      id: request.id,
      rss: memory.rss,
      heapUsed: memory.heapUsed,
      external: memory.external,
      cpuSeconds: (cpu.user + cpu.system) / 1e6,
      cachedWorkflows: worker.main.getStatus().numCachedWorkflows,
      mailboxSessions: worker.mailbox.getStatus().numInFlightActivities,
      warnings,
      firstWarnings,
    });
  });
  process.on('disconnect', () => worker.shutdown()); // the benchmark is gone

  const running = worker.run();
  send({ type: 'ready', pid: process.pid });
  await running;
  mail.close();
  await db.destroy();
  await temporal.connection.close();
  await connection.close();
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
    send({ type: 'failed', message });
    console.error(`bench load worker failed: ${message}`);
    process.exit(1);
  },
);
