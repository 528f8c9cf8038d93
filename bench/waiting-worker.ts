// The worker process of bench/waiting-conversations.ts: one Temporal worker in a process of its own, so that its RSS
// is the worker's alone. Started by the benchmark with IPC; not meant to be run by hand.
//   BENCH_WORKER_KIND=mailroom: createMailroomWorker with every activity, as src/worker.ts's main() builds it
//     (DATABASE_URL, SMTP_URL; a PostgreSQL pool of the default size, an SMTP transport, a client for the ingest),
//     its mailbox worker polling the (idle) mailbox queue next to TEMPORAL_TASK_QUEUE, as in production.
//   BENCH_WORKER_KIND=bare: a worker with no activities.
// Both poll TEMPORAL_TASK_QUEUE on TEMPORAL_ADDRESS with the prebuilt bundle at BENCH_WORKFLOW_BUNDLE and the SDK's
// default worker options. The bundle carries bench/workflows/timer-probe.ts; this process counts its log lines.
import v8 from 'node:v8';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, Worker, type LogEntry } from '@temporalio/worker';
import { connectPostgres } from '../src/db/connection.js';
import { createIngest } from '../src/ingest/ingest.js';
import { createMailTransport } from '../src/mail/transport.js';
import { createMailroomWorker } from '../src/worker.js';
import { BENCH_DATA_CONVERTER, BENCH_WORKER_SETTINGS } from './stack.js';
import { TIMER_PROBE_MESSAGE } from './workflows/timer-probe.js';
import { requiredEnv } from './child-process.js';

/** What the benchmark asks of this process over IPC. */
export type WorkerRequest = { type: 'sample'; id: number; gc: boolean } | { type: 'stop' };

/** What this process tells the benchmark over IPC. */
export type WorkerReport =
  | { type: 'ready'; maxCachedWorkflows: number; maxConcurrentWorkflowTaskExecutions: number; heapSizeLimit: number }
  | ({ type: 'sample'; id: number } & WorkerSample)
  | { type: 'failed'; message: string };

export interface WorkerSample {
  rss: number;
  /** The process's peak RSS so far. */
  maxRss: number;
  /** The main thread's heap; the workflows run in a worker thread of their own, whose heap counts only in the RSS. */
  heapUsed: number;
  /** CPU time of the whole process (every thread) so far, in seconds. */
  cpuSeconds: number;
  cachedWorkflows: number;
  /** Distinct workflows that started their first timer. */
  waiting: number;
  /** Date.now() when the last of them did, 0 before the first. */
  lastWaitingAt: number;
  /** Log lines at WARN and above (failed activity attempts among them), and the first few of them. */
  warnings: number;
  firstWarnings: string[];
}

const waitingWorkflows = new Set<string>();
let lastWaitingAt = 0;
let warnings = 0;
const firstWarnings: string[] = [];

function log(entry: LogEntry) {
  if (entry.message === TIMER_PROBE_MESSAGE) {
    const workflowId = entry.meta?.workflowId;
    if (typeof workflowId === 'string' && !waitingWorkflows.has(workflowId)) {
      waitingWorkflows.add(workflowId);
      lastWaitingAt = Date.now();
    }
    return;
  }
  if (entry.level !== 'WARN' && entry.level !== 'ERROR') return;
  if (entry.message.startsWith('No activities registered')) return; // the bare worker, as meant
  if (entry.message.startsWith('No workflows registered')) return; // Mailroom's mailbox worker (activities only), as meant
  warnings++;
  const cause = entry.meta?.error instanceof Error ? `: ${entry.meta.error.message}` : '';
  if (firstWarnings.length < 5) firstWarnings.push(`${entry.level} ${entry.message}${cause}`);
  if (warnings <= 5) console.error(`bench worker (${process.env.BENCH_WORKER_KIND}): ${entry.level} ${entry.message}${cause}`);
}

function send(report: WorkerReport) {
  process.send?.(report);
}

async function main() {
  if (!process.send) throw new Error('bench/waiting-worker.ts is started by bench/waiting-conversations.ts, with IPC');
  const kind = requiredEnv('BENCH_WORKER_KIND');
  const address = requiredEnv('TEMPORAL_ADDRESS');
  const taskQueue = requiredEnv('TEMPORAL_TASK_QUEUE');
  const workflowBundle = { codePath: requiredEnv('BENCH_WORKFLOW_BUNDLE') };
  Runtime.install({ logger: new DefaultLogger('INFO', log) });
  const connection = await NativeConnection.connect({ address });
  const closers: Array<() => Promise<void> | void> = [() => connection.close()];

  // The main worker, whose cache and slots the benchmark reports, and how to run and stop all of this process's workers.
  let worker: Worker;
  let run: () => Promise<void>;
  let shutdown: () => void;
  if (kind === 'mailroom') {
    const db = connectPostgres(requiredEnv('DATABASE_URL'));
    const temporal = new Client({ connection: await Connection.connect({ address }), dataConverter: BENCH_DATA_CONVERTER });
    const mail = createMailTransport(requiredEnv('SMTP_URL'));
    closers.push(
      () => db.destroy(),
      () => temporal.connection.close(),
      () => mail.close(),
    );
    const mailroom = await createMailroomWorker({
      connection,
      taskQueue,
      workflowBundle,
      dataConverter: BENCH_DATA_CONVERTER,
      deps: {
        db,
        ingest: createIngest({ db, temporal, taskQueue }),
        mail,
        ...BENCH_WORKER_SETTINGS,
      },
    });
    worker = mailroom.main;
    run = () => mailroom.run();
    shutdown = () => mailroom.shutdown();
  } else if (kind === 'bare') {
    const bare = await Worker.create({ connection, taskQueue, workflowBundle });
    worker = bare;
    run = () => bare.run();
    shutdown = () => {
      if (bare.getState() === 'RUNNING') bare.shutdown();
    };
  } else {
    throw new Error(`BENCH_WORKER_KIND must be mailroom or bare, not '${kind}'`);
  }

  const stop = () => shutdown();
  process.on('message', (request: WorkerRequest) => {
    if (request.type === 'stop') return stop();
    if (request.gc) global.gc?.();
    const memory = process.memoryUsage();
    const cpu = process.cpuUsage();
    send({
      type: 'sample',
      id: request.id,
      rss: memory.rss,
      maxRss: process.resourceUsage().maxRSS * 1024,
      heapUsed: memory.heapUsed,
      cpuSeconds: (cpu.user + cpu.system) / 1e6,
      cachedWorkflows: worker.getStatus().numCachedWorkflows,
      waiting: waitingWorkflows.size,
      lastWaitingAt,
      warnings,
      firstWarnings,
    });
  });
  process.on('disconnect', stop); // the benchmark is gone

  const running = run();
  send({
    type: 'ready',
    maxCachedWorkflows: worker.options.maxCachedWorkflows,
    maxConcurrentWorkflowTaskExecutions: maxWorkflowTaskSlots(worker),
    heapSizeLimit: v8.getHeapStatistics().heap_size_limit,
  });
  await running;
  for (const close of closers.reverse()) await close();
}

function maxWorkflowTaskSlots(worker: Worker): number {
  const supplier = worker.options.tuner.workflowTaskSlotSupplier;
  return supplier.type === 'fixed-size' ? supplier.numSlots : Number.NaN;
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
    send({ type: 'failed', message });
    console.error(`bench worker (${process.env.BENCH_WORKER_KIND}) failed: ${message}`);
    process.exit(1);
  },
);
