// `npm run bench`: forwarded mails per second through the whole ingest path, next to bare signalWithStart per second
// on the same Temporal server, in one run. BENCH_MAILS sets how many of each (default 500).
import { startBenchStack } from './stack.js';
import { bareSignalWithStart, forwardedMail, measure, type Measurement, type Request } from './throughput.js';

const CONCURRENCY = 16;
const WARM_UP_REQUESTS = 50;
const ROUNDS = 4;

type Workload = 'bare' | 'ingest';
const workloadLabels: Record<Workload, string> = { bare: 'bare signalWithStart', ingest: 'ingest (HTTP API)' };
// ABBA order: drift during the run (a fuller Temporal database, a busier machine) weighs on both workloads alike.
const roundOrders: Workload[][] = Array.from({ length: ROUNDS }, (_, index) =>
  index % 2 === 0 ? ['bare', 'ingest'] : ['ingest', 'bare'],
);

interface Row {
  round: string;
  workload: Workload;
  measurement: Measurement;
}

async function main() {
  const totalRequests = requestsFromEnv();
  const perRound = splitEvenly(totalRequests, ROUNDS);

  const startedAt = Date.now();
  const stack = await startBenchStack();
  process.once('SIGINT', () => {
    console.error('bench: interrupted; stopping the servers (requests still in flight will fail)');
    void stack.stop().finally(() => process.exit(130));
  });
  try {
    const requests: Record<Workload, Request> = { bare: bareSignalWithStart(stack), ingest: forwardedMail(stack) };
    for (const workload of ['bare', 'ingest'] as const) {
      assertNoFailures('warm-up', workload, await measure(WARM_UP_REQUESTS, CONCURRENCY, requests[workload]));
    }

    const rows: Row[] = [];
    for (const [index, order] of roundOrders.entries()) {
      for (const workload of order) {
        const measurement = await measure(perRound[index]!, CONCURRENCY, requests[workload]);
        assertNoFailures(`round ${index + 1}`, workload, measurement);
        rows.push({ round: String(index + 1), workload, measurement });
      }
    }
    report(rows, totalRequests);
  } finally {
    await stack.stop();
  }
  console.log(`whole run (servers, warm-up, rounds, cleanup): ${((Date.now() - startedAt) / 1000).toFixed(1)} s`);
}

function requestsFromEnv(): number {
  const value = process.env.BENCH_MAILS ?? '500';
  const requests = Number(value);
  if (!Number.isInteger(requests) || requests < ROUNDS)
    throw new Error(`BENCH_MAILS must be an integer of at least ${ROUNDS}, not '${value}'`);
  return requests;
}

function splitEvenly(total: number, parts: number): number[] {
  return Array.from({ length: parts }, (_, index) => Math.floor(total / parts) + (index < total % parts ? 1 : 0));
}

function assertNoFailures(phase: string, workload: Workload, measurement: Measurement) {
  if (measurement.failures === 0) return;
  throw new Error(
    `${phase}, ${workloadLabels[workload]}: ${measurement.failures} of ${measurement.requests} requests failed; first: ${measurement.firstFailure}`,
  );
}

function report(rows: Row[], totalRequests: number) {
  const totalRows = (['bare', 'ingest'] as const).map((workload) => ({
    round: 'total',
    workload,
    measurement: combine(rows, workload),
  }));
  const allRows = [...rows, ...totalRows];
  const measurementOf = (round: string, workload: Workload) =>
    allRows.find((row) => row.round === round && row.workload === workload)!.measurement;
  const ratioOf = (round: string) => rate(measurementOf(round, 'ingest')) / rate(measurementOf(round, 'bare'));
  const roundRatios = roundOrders.map((_, index) => ratioOf(String(index + 1)));
  const ingest = measurementOf('total', 'ingest');
  const bare = measurementOf('total', 'bare');

  console.log(
    `\nMailroom ingest benchmark: N = ${totalRequests} of each in ${ROUNDS} rounds, ${CONCURRENCY} in flight, ${WARM_UP_REQUESTS} of each to warm up`,
  );
  printTable(
    ['round', 'measurement', 'requests', 'seconds', 'per second', 'p50 ms', 'p95 ms'],
    allRows.map(({ round, workload, measurement }) => [
      round,
      workloadLabels[workload],
      String(measurement.requests),
      measurement.seconds.toFixed(2),
      rate(measurement).toFixed(1),
      percentile(measurement.latenciesMs, 0.5).toFixed(1),
      percentile(measurement.latenciesMs, 0.95).toFixed(1),
    ]),
  );
  console.log(
    `ratio ingest/bare: ${ratioOf('total').toFixed(3)} (per round: ${roundRatios.map((ratio) => ratio.toFixed(3)).join(', ')})`,
  );
  console.log(
    JSON.stringify({
      n: totalRequests,
      concurrency: CONCURRENCY,
      rounds: ROUNDS,
      mailsPerSecond: round1(rate(ingest)),
      signalWithStartPerSecond: round1(rate(bare)),
      ratio: round3(ratioOf('total')),
      roundRatios: roundRatios.map(round3),
      ingestP50Ms: round1(percentile(ingest.latenciesMs, 0.5)),
      ingestP95Ms: round1(percentile(ingest.latenciesMs, 0.95)),
      bareP50Ms: round1(percentile(bare.latenciesMs, 0.5)),
      bareP95Ms: round1(percentile(bare.latenciesMs, 0.95)),
    }),
  );
}

/** Text left-aligned, figures right-aligned, columns as wide as their widest cell. */
function printTable(header: string[], rows: string[][]) {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]!.length)));
  const line = (cells: string[]) =>
    cells.map((cell, column) => (column < 2 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!))).join('  ');
  console.log([line(header), ...rows.map(line)].join('\n'));
}

/** All rounds of one workload as one measurement: the rate over the time spent on it, latencies pooled. */
function combine(rows: Row[], workload: Workload): Measurement {
  const measurements = rows.filter((row) => row.workload === workload).map((row) => row.measurement);
  return {
    requests: measurements.reduce((sum, m) => sum + m.requests, 0),
    seconds: measurements.reduce((sum, m) => sum + m.seconds, 0),
    latenciesMs: measurements.flatMap((m) => m.latenciesMs),
    failures: measurements.reduce((sum, m) => sum + m.failures, 0),
  };
}

function rate(measurement: Measurement): number {
  return measurement.requests / measurement.seconds;
}

/** Nearest-rank percentile. */
function percentile(values: number[], fraction: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(0, Math.ceil(fraction * sorted.length) - 1)] ?? Number.NaN;
}

function round1(value: number): number {
  return Math.round(value * 10) / 10;
}

function round3(value: number): number {
  return Math.round(value * 1000) / 1000;
}

main().catch((error: unknown) => {
  console.error(`bench failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
});
