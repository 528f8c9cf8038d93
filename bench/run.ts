// `npm run bench`: forwarded mails per second through the whole ingest path, next to bare signalWithStart per second
// on the same Temporal server, in one run. BENCH_MAILS sets how many of each (default 500).
// Then, on a real Dovecot, IMAP: APPEND-to-signalled latency with the mailbox in IDLE (BENCH_IMAP_MAILS, default 200,
// spread over BENCH_IMAP_MAILBOXES mailboxes, default 4), and how fast a backlog drains once IMAP is enabled
// (BENCH_BACKLOG, default 500), next to the forwarder's rate.
import { measureBacklogDrain, type BacklogDrain } from './imap-backlog.js';
import { measureImapLatency, type ImapLatency } from './imap-latency.js';
import { startImapBench } from './imap-stack.js';
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

interface ImapFigures {
  latency: ImapLatency;
  drain: BacklogDrain;
  /** Wall time of the IMAP part: Dovecot and worker start, both measurements. */
  seconds: number;
}

async function main() {
  const totalRequests = integerFromEnv('BENCH_MAILS', 500, ROUNDS);
  const imapMails = integerFromEnv('BENCH_IMAP_MAILS', 200, 1);
  // Dovecot tells an IDLE session of new mail only after 500 ms (NOTIFY_DELAY_MSECS): one mailbox alone would take 2 min.
  const latencyMailboxes = integerFromEnv('BENCH_IMAP_MAILBOXES', 4, 1);
  const backlogMails = integerFromEnv('BENCH_BACKLOG', 500, 1);
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

    // After the rounds, so the forwarder figures above are taken without the IMAP worker and Dovecot running.
    const imapStartedAt = Date.now();
    const imap = await startImapBench(stack, latencyMailboxes);
    const latency = await measureImapLatency(stack.db, imap.latencyMailboxes, imapMails);
    const drain = await measureBacklogDrain(stack.db, imap.backlogMailbox, backlogMails);
    report(rows, totalRequests, { latency, drain, seconds: (Date.now() - imapStartedAt) / 1000 });
  } finally {
    await stack.stop();
  }
  console.log(`whole run (servers, warm-up, rounds, cleanup): ${((Date.now() - startedAt) / 1000).toFixed(1)} s`);
}

function integerFromEnv(name: string, fallback: number, minimum: number): number {
  const value = process.env[name] ?? String(fallback);
  const integer = Number(value);
  if (!Number.isInteger(integer) || integer < minimum)
    throw new Error(`${name} must be an integer of at least ${minimum}, not '${value}'`);
  return integer;
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

function report(rows: Row[], totalRequests: number, imap: ImapFigures) {
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

  const imapFigures = printImapReport(imap, ingest);
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
      ...imapFigures,
    }),
  );
}

/** Prints the IMAP table, next to the forwarder's total; returns the figures for the JSON line. */
function printImapReport({ latency, drain, seconds }: ImapFigures, forwarder: Measurement) {
  const drainRate = drain.mails / drain.seconds;
  const figures = {
    imapMails: latency.mails,
    imapMailboxes: latency.mailboxes,
    imapLatencyP50Ms: round1(percentile(latency.latenciesMs, 0.5)),
    imapLatencyP95Ms: round1(percentile(latency.latenciesMs, 0.95)),
    imapLatencyMaxMs: round1(Math.max(...latency.latenciesMs)),
    imapToStoredP50Ms: round1(percentile(latency.toStoredMs, 0.5)),
    imapToStoredP95Ms: round1(percentile(latency.toStoredMs, 0.95)),
    backlog: drain.mails,
    backlogDrainPerSecond: round1(drainRate),
    backlogFirstMailMs: drain.firstMailMs,
    drainToForwarderRatio: round3(drainRate / rate(forwarder)),
  };
  const percentiles = (values: number[]) =>
    [0.5, 0.95].map((fraction) => percentile(values, fraction).toFixed(1)).concat(Math.max(...values).toFixed(1));

  console.log(
    `\nIMAP on a real Dovecot (IDLE), after the rounds: ${latency.mails} mails over ${latency.mailboxes} mailbox${latency.mailboxes === 1 ? '' : 'es'}, ` +
      `appended one at a time into each; then a backlog of ${drain.mails}`,
  );
  printTable(
    ['measurement', 'mails', 'seconds', 'per second', 'p50 ms', 'p95 ms', 'max ms'],
    [
      [
        'APPEND → signalled, in IDLE',
        String(latency.mails),
        latency.seconds.toFixed(2),
        '-',
        ...percentiles(latency.latenciesMs),
      ],
      ['  of which APPEND → stored', String(latency.mails), '-', '-', ...percentiles(latency.toStoredMs)],
      ['backlog drain', String(drain.mails), drain.seconds.toFixed(2), drainRate.toFixed(1), '-', '-', '-'],
      [
        'forwarder (ingest total above)',
        String(forwarder.requests),
        forwarder.seconds.toFixed(2),
        rate(forwarder).toFixed(1),
        '-',
        '-',
        '-',
      ],
    ],
    1,
  );
  const goal = figures.imapLatencyP95Ms < 2000 ? 'met' : 'MISSED';
  console.log(`ratio drain/forwarder: ${figures.drainToForwarderRatio.toFixed(3)}; latency goal p95 < 2000 ms: ${goal}`);
  console.log(
    "APPEND → stored includes Dovecot's own 500 ms wait before it tells an IDLE session of new mail (NOTIFY_DELAY_MSECS)",
  );
  console.log(
    `drain: from enabling IMAP (workflow start and login; first mail signalled after ${drain.firstMailMs} ms) to the last ` +
      `mail signalled. One session ingests one mail at a time; the forwarder had ${CONCURRENCY} requests in flight.\n` +
      'Both start conversation workflows with signalWithStart on a queue no worker polls: neither figure includes running them.',
  );
  console.log(
    `IMAP part (Dovecot, worker and its workflow bundle, warm-up, backlog APPENDs ${drain.appendSeconds.toFixed(1)} s): ` +
      `${seconds.toFixed(1)} s`,
  );
  return figures;
}

/** The first textColumns left-aligned, the figures after them right-aligned, columns as wide as their widest cell. */
function printTable(header: string[], rows: string[][], textColumns = 2) {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, column) => (column < textColumns ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!)))
      .join('  ');
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
