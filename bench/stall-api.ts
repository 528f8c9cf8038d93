// The API process of bench/stall.ts: Mailroom's HTTP API (as `npm run api` builds it, rate limits off) in a process of its
// own, so that the event-loop delay it measures is the API's alone, not the benchmark driver's. Started by the benchmark
// with IPC; not meant to be run by hand. DATABASE_URL and TEMPORAL_ADDRESS name the bench stack's servers; conversation
// workflows are started on INGEST_TASK_QUEUE, which no worker polls (as in the ingest section). With STALL_DATA_DIR set,
// the database is instead the embedded one `npm start` opens in that directory (migrated here, channels made on request).
// The event-loop delay is measured as perf_hooks.monitorEventLoopDelay measures it, how late a 1 ms timer fires, but by a
// timer of this file's own: the built-in monitor loses the sample that spans a reset() and, disabled and enabled again,
// counts the pause as one long delay, so it cannot be cut into periods. Each `mark` ends a period, answers its longest
// delay, and starts the next, whose samples go into the named workload's histogram. A built-in monitor, never reset,
// runs alongside for the whole process as a cross-check of the longest delay.
import { createHistogram, monitorEventLoopDelay, performance, type RecordableHistogram } from 'node:perf_hooks';
import { Client, Connection } from '@temporalio/client';
import { startApiServer } from '../src/api/server.js';
import { connectPostgres, openEmbeddedDatabase, type Db } from '../src/db/connection.js';
import { migrateToLatest } from '../src/db/migrate.js';
import { createAccount, createChannel } from '../src/db/seed.js';
import { createIngest } from '../src/ingest/ingest.js';
import { createLogger } from '../src/logger.js';
import { BENCH_API_CONFIG, BENCH_DATA_CONVERTER, INGEST_TASK_QUEUE } from './stack.js';
import { requiredEnv } from './child-process.js';

/** What the benchmark asks of this process over IPC. */
export type StallApiRequest =
  /** Ends the current period (answered with its longest delay) and starts the next, counted for `workload` if not null. */
  | { type: 'mark'; id: number; workload: string | null }
  | { type: 'summary'; id: number; workload: string }
  /** A channel in this process's database (the embedded one is out of the benchmark's reach), with default limits. */
  | { type: 'channel'; id: number }
  | { type: 'stop' };

export interface StallSummary {
  /** Milliseconds. */
  maxMs: number;
  p99Ms: number;
  p50Ms: number;
  /** Samples taken (one per millisecond of loop time, roughly). */
  samples: number;
  /** CPU time of the whole API process (parser threads included) during the workload's periods. */
  cpuMs: number;
  /** The longest delay monitorEventLoopDelay saw since the first measured period began, every workload and pause included. */
  builtInMaxMs: number;
}

/** What this process tells the benchmark over IPC. */
export type StallApiReport =
  | { type: 'ready'; url: string }
  | ({ type: 'mark'; id: number } & StallPeriod)
  | ({ type: 'summary'; id: number } & StallSummary)
  | { type: 'channel'; id: number; channel: { id: string; forwarderSecret: string } }
  | { type: 'failed'; message: string };

/** The deployment's limit on a forwarded mail here: the default of MAX_INBOUND_BYTES. */
export const STALL_API_MAX_INBOUND_BYTES = 25 * 1024 * 1024;

function send(report: StallApiReport) {
  process.send?.(report);
}

const ms = (nanoseconds: number) => nanoseconds / 1e6;

/** CPU time of this thread alone (the event loop's; not the parser or database threads'), microseconds. */
function threadCpuUs(): number {
  const { user, system } = process.threadCpuUsage();
  return user + system;
}

/** One period between two marks. */
export interface StallPeriod {
  /** The longest delay of the 1 ms timer: how long a request would have waited, whatever held the thread. */
  maxMs: number;
  /**
   * The most CPU time the event loop's thread spent between two firings of the timer: its own work (and garbage
   * collection) that held the loop, apart from time the machine gave to other processes.
   */
  maxBusyMs: number;
}
const RESOLUTION_MS = 1;

/** How late a RESOLUTION_MS timer fires, every time it fires: the longest delay per period, the samples into a histogram. */
class LoopDelaySampler {
  private last = performance.now();
  private lastCpuUs = threadCpuUs();
  private periodMaxMs = 0;
  private periodMaxBusyMs = 0;
  private histogram: RecordableHistogram | undefined;
  private timer: NodeJS.Timeout;

  constructor() {
    const tick = () => {
      const now = performance.now();
      const delayMs = Math.max(0, now - this.last - RESOLUTION_MS);
      this.last = now;
      this.periodMaxMs = Math.max(this.periodMaxMs, delayMs);
      const cpuUs = threadCpuUs();
      this.periodMaxBusyMs = Math.max(this.periodMaxBusyMs, (cpuUs - this.lastCpuUs) / 1000);
      this.lastCpuUs = cpuUs;
      this.histogram?.record(Math.max(1, Math.round(delayMs * 1e6))); // nanoseconds, as the built-in monitor records
      this.timer = setTimeout(tick, RESOLUTION_MS);
    };
    this.timer = setTimeout(tick, RESOLUTION_MS);
  }

  /** The longest delay and busy time since the last mark; from now on samples go to `histogram` (none if undefined). */
  mark(histogram: RecordableHistogram | undefined): StallPeriod {
    const period = { maxMs: this.periodMaxMs, maxBusyMs: this.periodMaxBusyMs };
    this.periodMaxMs = 0;
    this.periodMaxBusyMs = 0;
    this.histogram = histogram;
    return period;
  }

  stop() {
    clearTimeout(this.timer);
  }
}

/** PostgreSQL at DATABASE_URL, or the embedded database in STALL_DATA_DIR as `npm start` opens it. */
async function openStallDatabase(): Promise<Db> {
  const dataDir = process.env.STALL_DATA_DIR;
  if (!dataDir) return connectPostgres(requiredEnv('DATABASE_URL'));
  const db = await openEmbeddedDatabase(dataDir);
  await migrateToLatest(db);
  return db;
}

async function main() {
  if (!process.send) throw new Error('bench/stall-api.ts is started by bench/stall.ts, with IPC');
  const db = await openStallDatabase();
  const temporal = new Client({
    connection: await Connection.connect({ address: requiredEnv('TEMPORAL_ADDRESS') }),
    dataConverter: BENCH_DATA_CONVERTER,
  });
  const api = await startApiServer(
    {
      db,
      temporal,
      ingest: createIngest({ db, temporal, taskQueue: INGEST_TASK_QUEUE }),
      config: { ...BENCH_API_CONFIG, MAX_INBOUND_BYTES: STALL_API_MAX_INBOUND_BYTES },
      logger: createLogger('silent'),
    },
    { port: 0, host: '127.0.0.1' },
  );

  const sampler = new LoopDelaySampler();
  const builtIn = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  builtIn.enable();
  const workloads = new Map<string, RecordableHistogram>();
  const cpuMsOf = new Map<string, number>();
  let current: string | null = null;
  let cpuAtMark = process.cpuUsage();
  let measuring = false;
  process.on('message', (request: StallApiRequest) => {
    if (request.type === 'stop') {
      sampler.stop();
      builtIn.disable();
      void api
        .close()
        .then(() => temporal.connection.close())
        .then(() => db.destroy())
        .finally(() => process.exit(0));
      return;
    }
    if (request.type === 'channel') {
      void createAccount(db, 'Bench stalls')
        .then((account) =>
          createChannel(db, { accountId: account.id, name: 'Bench stalls', emailAddress: 'support@acme.example' }),
        )
        .then((channel) => send({ type: 'channel', id: request.id, channel }))
        .catch((error: unknown) => {
          send({ type: 'failed', message: error instanceof Error ? error.message : String(error) });
          process.exit(1);
        });
      return;
    }
    if (request.type === 'mark') {
      const cpu = process.cpuUsage(cpuAtMark);
      cpuAtMark = process.cpuUsage();
      if (current !== null) cpuMsOf.set(current, (cpuMsOf.get(current) ?? 0) + (cpu.user + cpu.system) / 1000);
      current = request.workload;
      let histogram: RecordableHistogram | undefined;
      if (request.workload !== null) {
        // From the first measured period on: the process's start and warm-up stay out of the cross-check.
        if (!measuring) builtIn.reset();
        measuring = true;
        histogram = workloads.get(request.workload) ?? createHistogram();
        workloads.set(request.workload, histogram);
      }
      send({ type: 'mark', id: request.id, ...sampler.mark(histogram) });
      return;
    }
    const histogram = workloads.get(request.workload);
    send({
      type: 'summary',
      id: request.id,
      maxMs: histogram ? ms(histogram.max) : 0,
      p99Ms: histogram ? ms(histogram.percentile(99)) : 0,
      p50Ms: histogram ? ms(histogram.percentile(50)) : 0,
      samples: histogram?.count ?? 0,
      cpuMs: cpuMsOf.get(request.workload) ?? 0,
      builtInMaxMs: ms(builtIn.max),
    });
  });
  send({ type: 'ready', url: api.url });
}

main().catch((error: unknown) => {
  send({ type: 'failed', message: error instanceof Error ? error.message : String(error) });
  console.error('bench stall API:', error);
  process.exit(1);
});
