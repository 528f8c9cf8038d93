// The API process of bench/greeting-load.ts: Mailroom's HTTP API (as `npm run api` builds it, rate limits off) in a
// process of its own, so that its CPU time per mail is the API's alone. Its ingest starts conversation workflows on
// TEMPORAL_TASK_QUEUE, which the load's workers poll. Started by the benchmark with IPC; not meant to be run by hand.
import { Client, Connection } from '@temporalio/client';
import { startApiServer } from '../src/api/server.js';
import { connectPostgres } from '../src/db/connection.js';
import { createIngest } from '../src/ingest/ingest.js';
import { createLogger } from '../src/logger.js';
import { BENCH_API_CONFIG, BENCH_DATA_CONVERTER } from './stack.js';
import { requiredEnv } from './child-process.js';

/** What the benchmark asks of this process over IPC. */
export type LoadApiRequest = { type: 'cpu'; id: number } | { type: 'stop' };

/** What this process tells the benchmark over IPC. */
export type LoadApiReport =
  | { type: 'ready'; url: string }
  /** CPU time of the whole process (parser threads included) so far, in seconds. */
  | { type: 'cpu'; id: number; cpuSeconds: number }
  | { type: 'failed'; message: string };

function send(report: LoadApiReport) {
  process.send?.(report);
}

async function main() {
  if (!process.send) throw new Error('bench/load-api.ts is started by the benchmark, with IPC');
  const db = connectPostgres(requiredEnv('DATABASE_URL'));
  const temporal = new Client({
    connection: await Connection.connect({ address: requiredEnv('TEMPORAL_ADDRESS') }),
    dataConverter: BENCH_DATA_CONVERTER,
  });
  const api = await startApiServer(
    {
      db,
      temporal,
      ingest: createIngest({ db, temporal, taskQueue: requiredEnv('TEMPORAL_TASK_QUEUE') }),
      config: BENCH_API_CONFIG,
      logger: createLogger('silent'),
    },
    { port: 0, host: '127.0.0.1' },
  );
  process.on('message', (request: LoadApiRequest) => {
    if (request.type === 'cpu') {
      const cpu = process.cpuUsage();
      send({ type: 'cpu', id: request.id, cpuSeconds: (cpu.user + cpu.system) / 1e6 });
      return;
    }
    void api
      .close()
      .then(() => temporal.connection.close())
      .then(() => db.destroy())
      .finally(() => process.exit(0));
  });
  process.on('disconnect', () => process.exit(0)); // the benchmark is gone
  send({ type: 'ready', url: api.url });
}

main().catch((error: unknown) => {
  send({ type: 'failed', message: error instanceof Error ? error.message : String(error) });
  console.error('bench load API:', error);
  process.exit(1);
});
