// `npm run bench`: forwarded mails per second through the whole ingest path, next to bare signalWithStart per second
// on the same Temporal server, in one run. BENCH_MAILS sets how many of each (default 500).
// Then, on a real Dovecot, IMAP: APPEND-to-signalled latency with the mailbox in IDLE (BENCH_IMAP_MAILS, default 200,
// spread over BENCH_IMAP_MAILBOXES mailboxes, default 4), and how fast a backlog drains once IMAP is enabled
// (BENCH_BACKLOG, default 500), next to the forwarder's rate.
// Then waiting conversations (bench/waiting-conversations.ts): BENCH_WAITING (default 10000) conversations waiting on the
// business-hours timer on one worker process, next to as many bare workflows that only sleep on a fresh one: time until
// all wait, the worker's RSS per waiting workflow, and the CPU time of the worker and the Temporal server per workflow.
// It is the slow part: on 2 shared cores about 15 conversations a second, so BENCH_WAITING=1000 takes ~2 min, the
// default 10000 about a quarter of an hour.
// Then event-loop stalls (bench/stall.ts): the API in a process of its own takes the adversarial corpus
// (tests/adversarial/corpus.ts) through the forwarder endpoint, one mail at a time, and as many ordinary mails, in ABBA
// order (BENCH_STALL_ROUNDS of each, default 2); it measures how late a 1 ms timer fires: the longest stall (goal at
// most 50 ms) and the p99, per workload, and which corpus mails stalled it longest. Then (bench/stall-big-mail.ts) the
// longest stall while the API takes one 22 MB mail next to a small one, on PostgreSQL and on the embedded database as
// `npm start` opens it (goal at most 50 ms on both). It runs after the ingest section and before the IMAP one, while no
// worker or Dovecot runs.
// First, the history of a typical conversation and of the longest other workflow test (bench/history.ts): events and
// Temporal Cloud actions by kind on the current workflow, next to the same lives recorded before the leaner history
// ("today", the replay fixtures) and the goal (half of today), per conversation and per 1,000 conversations.
// Then the SMTP receiver (bench/smtp.ts): BENCH_MAILS mails posted to the forwarder endpoint and as many delivered over SMTP,
// in the same run and ABBA order: mails per second of each, their ratio (goal at least 0.8), and for SMTP the end of DATA
// to the conversation signalled, p50 and p95.
// Then webhooks (bench/webhooks.ts): BENCH_MAILS mails posted with a subscriber on loopback for message.received; deliveries
// per second from the first post to the last delivery, and each delivery's latency, next to the forwarder's rate.
// The ingest section runs a third workload beside the two: the same ingest through an API whose Temporal client does
// not encrypt payloads, so the codec's cost on ingest is measured in the same run.
// Then two worker processes next to one (bench/workers.ts, before the waiting section): the same load, BENCH_CONVERSATIONS
// (default 300) mails to a channel with a greeting until each conversation is greeted and queued, on one worker process
// and on two polling the same queue, BENCH_WORKERS_ROUNDS (default 2) rounds in ABBA order; throughput and CPU of two
// over one, and checks that both shared the work and every conversation was greeted once. The cost section prints what
// the README's cost model needs from the one-worker runs (history events and bytes, PostgreSQL rows and bytes by table,
// CPU and RSS per conversation, API CPU per mail), and measures attachments' storage and idle IMAP sessions' memory
// (BENCH_COST_MAILBOXES, default 20, on a Dovecot of its own).
// BENCH_SKIP leaves sections out, comma-separated: history, ingest, smtp, webhooks, stall, imap, waiting, workers, cost (e.g.
// BENCH_SKIP=history,ingest,smtp,webhooks,imap,waiting,workers,cost for the stall part alone). The IMAP part measures the
// forwarder again right before the drain, its comparison. The JSON line at the end holds the figures of the sections that ran.
import { measureConversationHistory, type HistoryCounts, type HistoryFigures, type LifeFigures } from './history.js';
import { printGoals } from './goals.js';
import { measureBacklogDrain, type BacklogDrain } from './imap-backlog.js';
import { INGEST_STEPS, measureIngestBreakdown, type IngestBreakdown, type ProcessCpu } from './ingest-breakdown.js';
import { measureImapLatency, type ImapLatency } from './imap-latency.js';
import { startImapBench } from './imap-stack.js';
import { startBenchStack } from './stack.js';
import { measureSmtpReceiver, type SmtpFigures, type SmtpWorkload } from './smtp.js';
import { measureStalls, type StallFigures } from './stall.js';
import { measureBigMailStalls, type BigMailStalls } from './stall-big-mail.js';
import {
  bareSignalWithStart,
  conversationSignalWithStart,
  forwardedMail,
  measure,
  type Measurement,
  type Request,
} from './throughput.js';
import { measureWaitingWorkflows, WAITING_IDLE_SECONDS, type WaitingFigures } from './waiting-conversations.js';
import { measureWebhookDeliveries, type WebhookFigures } from './webhooks.js';
import { availableParallelism } from 'node:os';
import { measureAttachmentStorage, measureIdleImapSessions, type AttachmentFigures, type ImapSessionFigures } from './cost.js';
import { prepareLoadBench, type LoadRun } from './greeting-load.js';
import { sumUsage, totalUsage } from './pg-usage.js';
import { loadCheckFailure, measureWorkers, summarize, workersOrder, type LoadSummary } from './workers.js';

const CONCURRENCY = 16;
const WARM_UP_REQUESTS = 500;
const ROUNDS = 4;
/** signalWithStart calls in flight while the waiting workflows start. */
const WAITING_CONCURRENCY = 32;

const SECTIONS = ['history', 'ingest', 'smtp', 'webhooks', 'stall', 'imap', 'waiting', 'workers', 'cost'] as const;
/** SMTP mails per second over forwarded ones that the smtp section accepts. */
const SMTP_RATIO_GOAL = 0.8;
/** The longest event-loop stall of the API the stall section accepts, in milliseconds. */
const STALL_GOAL_MS = 50;
/** The cost section's mails with an attachment, and the attachment's size. */
const COST_ATTACHMENT_MAILS = 20;
const COST_ATTACHMENT_BYTES = 256 * 1024;
/** How long the cost section lets its IMAP sessions idle while it takes the worker's CPU time. */
const COST_IMAP_IDLE_SECONDS = 20;
type Section = (typeof SECTIONS)[number];

type Workload = 'bare' | 'ingest' | 'ingestClear';
const WORKLOADS = ['bare', 'ingest', 'ingestClear'] as const;
const workloadLabels: Record<Workload, string> = {
  bare: 'bare signalWithStart',
  ingest: 'ingest (HTTP API)',
  ingestClear: 'ingest, payloads not encrypted',
};
// ABBA order: drift during the run (a fuller Temporal database, a busier machine) weighs on every workload alike.
const roundOrders: Workload[][] = Array.from({ length: ROUNDS }, (_, index) =>
  index % 2 === 0 ? [...WORKLOADS] : [...WORKLOADS].reverse(),
);

interface Row {
  round: string;
  workload: Workload;
  measurement: Measurement;
}

interface ImapFigures {
  latency: ImapLatency;
  drain: BacklogDrain;
  /** As many mails as the backlog through the forwarder, right before the drain. */
  forwarderBeside: Measurement;
  /** Wall time of the IMAP part: Dovecot and worker start, both measurements. */
  seconds: number;
}

async function main() {
  const sections = sectionsToRun();
  const totalRequests = integerFromEnv('BENCH_MAILS', 500, ROUNDS);
  const imapMails = integerFromEnv('BENCH_IMAP_MAILS', 200, 1);
  // Dovecot tells an IDLE session of new mail only after 500 ms (NOTIFY_DELAY_MSECS): one mailbox alone would take 2 min.
  const latencyMailboxes = integerFromEnv('BENCH_IMAP_MAILBOXES', 4, 1);
  const backlogMails = integerFromEnv('BENCH_BACKLOG', 500, 1);
  const waitingWorkflows = integerFromEnv('BENCH_WAITING', 10_000, 1);
  const stallRounds = integerFromEnv('BENCH_STALL_ROUNDS', 2, 1);
  const perRound = splitEvenly(totalRequests, ROUNDS);

  const startedAt = Date.now();
  // No servers of the bench's own: the workflow test runs on the time-skipping server.
  const history = sections.has('history') ? printHistoryReport(await measureConversationHistory()) : {};
  const stack = await startBenchStack();
  process.once('SIGINT', () => {
    console.error('bench: interrupted; stopping the servers (requests still in flight will fail)');
    void stack.stop().finally(() => process.exit(130));
  });
  try {
    const figures: Record<string, unknown> = { ...history };
    let forwarder: Measurement | undefined;
    if (sections.has('ingest')) {
      const requests: Record<Workload, Request> = {
        bare: bareSignalWithStart(stack),
        ingest: forwardedMail(stack),
        ingestClear: forwardedMail(stack, stack.clearApiUrl),
      };
      for (const workload of WORKLOADS) {
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
      forwarder = combine(rows, 'ingest');
      Object.assign(figures, reportIngest(rows, totalRequests));
      // Once more, as many mails as a round, to see where their time goes.
      const breakdown = await measureIngestBreakdown(
        stack,
        { ...requests, conversationSignal: conversationSignalWithStart(stack) },
        { mails: perRound[0]!, concurrency: CONCURRENCY },
      );
      assertNoFailures('breakdown', 'ingest', breakdown.measurement);
      Object.assign(figures, printIngestBreakdown(breakdown));
    }

    if (sections.has('smtp')) {
      const smtp = await measureSmtpReceiver(stack, { perRound, concurrency: CONCURRENCY, warmUp: WARM_UP_REQUESTS });
      Object.assign(figures, printSmtpReport(smtp, totalRequests));
    }

    if (sections.has('webhooks')) {
      // After the ingest and SMTP rounds, so those are measured without a webhook subscription and its worker.
      const webhooks = await measureWebhookDeliveries(stack, { mails: totalRequests, concurrency: CONCURRENCY });
      Object.assign(figures, printWebhookReport(webhooks, forwarder));
    }

    if (sections.has('stall')) {
      const stallStartedAt = Date.now();
      const stalls = await measureStalls(stack, { rounds: stallRounds });
      Object.assign(figures, printStallReport(stalls, (Date.now() - stallStartedAt) / 1000));
      const bigMailStartedAt = Date.now();
      const bigMail = await measureBigMailStalls(stack, { rounds: stallRounds });
      Object.assign(figures, printBigMailStallReport(bigMail, (Date.now() - bigMailStartedAt) / 1000));
    }

    if (sections.has('imap')) {
      // After the rounds, so the forwarder figures above are taken without the IMAP worker and Dovecot running.
      const imapStartedAt = Date.now();
      const imap = await startImapBench(stack, latencyMailboxes);
      const latency = await measureImapLatency(stack.db, imap.latencyMailboxes, imapMails);
      // The drain's comparison: as many mails through the forwarder, on the servers as they are now (the sections
      // before filled Temporal and PostgreSQL with thousands of conversations since the ingest section's rounds).
      const forwarderBeside = await measure(backlogMails, CONCURRENCY, forwardedMail(stack));
      assertNoFailures('beside the drain', 'ingest', forwarderBeside);
      const drain = await measureBacklogDrain(stack.db, imap.backlogMailbox, backlogMails);
      Object.assign(
        figures,
        printImapReport({ latency, drain, forwarderBeside, seconds: (Date.now() - imapStartedAt) / 1000 }, forwarder),
      );
    }

    if (sections.has('workers') || sections.has('cost')) {
      // Before the waiting section, on task queues and processes of its own; the IMAP worker (if any) idles meanwhile.
      const conversations = integerFromEnv('BENCH_CONVERSATIONS', 300, 1);
      const order = sections.has('workers') ? workersOrder(integerFromEnv('BENCH_WORKERS_ROUNDS', 2, 1)) : [1];
      const loadBench = await prepareLoadBench(stack, conversations * order.length + 100);
      const runs = await measureWorkers(stack, loadBench, { conversations, order, concurrency: CONCURRENCY });
      if (sections.has('workers')) Object.assign(figures, printWorkersReport(runs));
      if (sections.has('cost')) {
        const attachments = await measureAttachmentStorage(stack, {
          mails: COST_ATTACHMENT_MAILS,
          attachmentBytes: COST_ATTACHMENT_BYTES,
        });
        const imap = await measureIdleImapSessions(stack, loadBench, {
          mailboxes: integerFromEnv('BENCH_COST_MAILBOXES', 20, 2),
          idleSeconds: COST_IMAP_IDLE_SECONDS,
        });
        const typicalLife = (history as { historyNow?: HistoryCounts }).historyNow;
        Object.assign(
          figures,
          printCostReport({
            runs: runs.filter((run) => run.workers === 1),
            attachments,
            imap,
            typicalLifeEvents: typicalLife?.events,
          }),
        );
      }
    }

    if (sections.has('waiting')) {
      // Its worker processes are its own; the IMAP worker (if any) keeps running in this process meanwhile.
      const waitingStartedAt = Date.now();
      const waiting = await measureWaitingWorkflows(stack, { count: waitingWorkflows, concurrency: WAITING_CONCURRENCY });
      Object.assign(figures, printWaitingReport(waiting, (Date.now() - waitingStartedAt) / 1000));
    }
    Object.assign(figures, printGoals(figures, printTable));
    console.log(JSON.stringify(figures));
  } finally {
    await stack.stop();
  }
  console.log(`whole run (servers, warm-up, rounds, cleanup): ${((Date.now() - startedAt) / 1000).toFixed(1)} s`);
}

/** Every section but those BENCH_SKIP names. */
function sectionsToRun(): Set<Section> {
  const skipped = (process.env.BENCH_SKIP ?? '')
    .split(',')
    .map((name) => name.trim())
    .filter(Boolean);
  const unknown = skipped.filter((name) => !(SECTIONS as readonly string[]).includes(name));
  if (unknown.length > 0)
    throw new Error(`BENCH_SKIP names unknown sections (${unknown.join(', ')}); use ${SECTIONS.join(', ')}`);
  const sections = new Set<Section>(SECTIONS.filter((section) => !skipped.includes(section)));
  if (sections.size === 0) throw new Error('BENCH_SKIP leaves nothing to run');
  return sections;
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

/** Prints the ingest table; returns the figures for the JSON line. */
function reportIngest(rows: Row[], totalRequests: number) {
  const totalRows = WORKLOADS.map((workload) => ({
    round: 'total',
    workload,
    measurement: combine(rows, workload),
  }));
  const allRows = [...rows, ...totalRows];
  const measurementOf = (round: string, workload: Workload) =>
    allRows.find((row) => row.round === round && row.workload === workload)!.measurement;
  const ratioOf = (round: string, over: Workload = 'bare', workload: Workload = 'ingest') =>
    rate(measurementOf(round, workload)) / rate(measurementOf(round, over));
  const roundRatios = roundOrders.map((_, index) => ratioOf(String(index + 1)));
  const codecRatios = roundOrders.map((_, index) => ratioOf(String(index + 1), 'ingestClear'));
  const ingest = measurementOf('total', 'ingest');
  const clear = measurementOf('total', 'ingestClear');
  const bare = measurementOf('total', 'bare');

  console.log(
    `\nMailroom ingest benchmark: N = ${totalRequests} of each in ${ROUNDS} rounds, ${CONCURRENCY} in flight, ${WARM_UP_REQUESTS} of each to warm up`,
  );
  printTable(
    ['round', 'measurement', 'requests', 'seconds', 'per second', 'p50 ms', 'p95 ms'],
    allRows.map(({ round, workload, measurement }) => [round, workloadLabels[workload], ...measurementCells(measurement)]),
  );
  console.log(
    `ratio ingest/bare: ${ratioOf('total').toFixed(3)} (per round: ${roundRatios.map((ratio) => ratio.toFixed(3)).join(', ')})`,
  );
  console.log(
    `payload encryption (AES-256-GCM codec): ingest with it / without it: ${ratioOf('total', 'ingestClear').toFixed(3)} ` +
      `(per round: ${codecRatios.map((ratio) => ratio.toFixed(3)).join(', ')}); p50 ` +
      `${percentile(ingest.latenciesMs, 0.5).toFixed(1)} vs ${percentile(clear.latenciesMs, 0.5).toFixed(1)} ms. ` +
      'The second API differs from the first only by its data converter',
  );
  return {
    n: totalRequests,
    concurrency: CONCURRENCY,
    rounds: ROUNDS,
    mailsPerSecond: round1(rate(ingest)),
    signalWithStartPerSecond: round1(rate(bare)),
    ratio: round3(ratioOf('total')),
    clearPayloadMailsPerSecond: round1(rate(clear)),
    codecRatio: round3(ratioOf('total', 'ingestClear')),
    codecRoundRatios: codecRatios.map(round3),
    roundRatios: roundRatios.map(round3),
    ingestP50Ms: round1(percentile(ingest.latenciesMs, 0.5)),
    ingestP95Ms: round1(percentile(ingest.latenciesMs, 0.95)),
    bareP50Ms: round1(percentile(bare.latenciesMs, 0.5)),
    bareP95Ms: round1(percentile(bare.latenciesMs, 0.95)),
  };
}

const stepLabels: Record<(typeof INGEST_STEPS)[number], string> = {
  store_raw: 'store the raw mail',
  parse_handoff: 'parse: wait for a thread, hand-off both ways',
  parse: 'parse: on the parser thread',
  thread_transaction: "threading transaction (sender's contact included)",
  signal: 'signalWithStart + mark handed over',
};

/** Prints where an ingested mail's time goes; returns the figures for the JSON line. */
function printIngestBreakdown({ mails, measurement, stepsMs, statements, apiCpuMsPerMail, cpu }: IngestBreakdown) {
  const meanMs = measurement.latenciesMs.reduce((sum, ms) => sum + ms, 0) / measurement.latenciesMs.length;
  const stepsTotal = INGEST_STEPS.reduce((sum, step) => sum + stepsMs[step], 0);
  console.log(
    `
Where an ingested mail's time goes: ${mails} more mails through the forwarder, ${CONCURRENCY} in flight ` +
      `(${rate(measurement).toFixed(1)}/s, mean ${meanMs.toFixed(1)} ms a request); API process CPU ${apiCpuMsPerMail.toFixed(1)} ms a mail`,
  );
  printTable(
    ['step (mailroom_ingest_step_seconds)', 'ms per mail', 'share of the request'],
    [
      ...INGEST_STEPS.map((step) => [
        stepLabels[step],
        stepsMs[step].toFixed(2),
        `${((stepsMs[step] / meanMs) * 100).toFixed(0)}%`,
      ]),
      [
        'the rest: HTTP, channel and secret, answer',
        (meanMs - stepsTotal).toFixed(2),
        `${(((meanMs - stepsTotal) / meanMs) * 100).toFixed(0)}%`,
      ],
    ],
    1,
  );
  const statementMs = statements.reduce((sum, statement) => sum + statement.msPerMail, 0);
  const roundTrips = statements.reduce((sum, statement) => sum + statement.perMail, 0);
  console.log(
    `SQL: ${roundTrips.toFixed(1)} round trips a mail, ${statementMs.toFixed(2)} ms a mail on the connection (a step's wall ` +
      'time above also holds its wait for a pooled connection)',
  );
  printTable(
    ['statement', 'per mail', 'mean ms', 'ms per mail'],
    statements.map(({ statement, perMail, meanMs: mean, msPerMail }) => [
      statement,
      perMail.toFixed(2),
      mean.toFixed(2),
      msPerMail.toFixed(2),
    ]),
    1,
  );
  const cpuCell = (ms: number | undefined) => (ms === undefined ? '-' : ms.toFixed(2));
  const total = (cpu: ProcessCpu) => cpu.benchProcess + (cpu.temporal ?? 0) + (cpu.postgres ?? 0);
  console.log(
    `CPU per request, ${mails} of each: the ingest; the ingest's own Temporal call alone (a conversation's signalWithStart ` +
      'with its search attributes, summary and encrypted payloads); a bare signalWithStart. The bench process runs the ' +
      "bench's client and, for the ingest, the API; PostgreSQL is shared with anything else using its cluster",
  );
  const cpuRow = (label: string, of: ProcessCpu) => [
    label,
    cpuCell(of.benchProcess),
    cpuCell(of.temporal),
    cpuCell(of.postgres),
    cpuCell(total(of)),
  ];
  printTable(
    ['workload', 'bench process ms', 'Temporal server ms', 'PostgreSQL ms', 'all ms'],
    [
      cpuRow('ingest (HTTP API)', cpu.ingest),
      cpuRow("the ingest's signalWithStart alone", cpu.conversationSignal),
      cpuRow('bare signalWithStart', cpu.bare),
    ],
    1,
  );
  // On cores the workloads keep busy, rates go as the inverse of CPU per request.
  const ceiling = total(cpu.bare) / total(cpu.conversationSignal);
  console.log(
    `The ceiling of ingest ÷ bare where CPU decides: ${ceiling.toFixed(2)}, if the ingest cost nothing beyond its own ` +
      `signalWithStart (bare's ${total(cpu.bare).toFixed(2)} ms ÷ its ${total(cpu.conversationSignal).toFixed(2)} ms); ` +
      `HTTP, the parse and PostgreSQL take the ingest from there to ${(total(cpu.bare) / total(cpu.ingest)).toFixed(2)}`,
  );
  return {
    breakdownCpuCeilingRatio: round3(ceiling),
    breakdownCpuMsPerMail: cpu,
    breakdownMails: mails,
    breakdownMailsPerSecond: round1(rate(measurement)),
    breakdownStepsMs: Object.fromEntries(INGEST_STEPS.map((step) => [step, round3(stepsMs[step])])),
    breakdownSqlRoundTripsPerMail: round3(roundTrips),
    breakdownSqlMsPerMail: round3(statementMs),
    breakdownApiCpuMsPerMail: round3(apiCpuMsPerMail),
  };
}

/** Prints the webhook deliveries next to the forwarder's rate of the ingest section; returns the figures for the JSON line. */
function printWebhookReport({ mails, posts, seconds, latenciesMs }: WebhookFigures, forwarder: Measurement | undefined) {
  const perSecond = mails / seconds;
  console.log(
    `\nWebhook deliveries: ${mails} mails posted (${CONCURRENCY} in flight), each a new conversation whose message.received ` +
      'a subscriber on loopback gets signed, through the dispatcher and one lane workflow per conversation',
  );
  printTable(
    ['measurement', 'count', 'seconds', 'per second', 'p50 ms', 'p95 ms'],
    [
      [
        'webhook deliveries (first post → last delivery)',
        String(mails),
        seconds.toFixed(2),
        perSecond.toFixed(1),
        percentile(latenciesMs, 0.5).toFixed(1),
        percentile(latenciesMs, 0.95).toFixed(1),
      ],
      ['forwarder posts meanwhile', ...measurementCells(posts)],
      ...(forwarder
        ? [
            [
              'forwarder (ingest total above)',
              String(forwarder.requests),
              forwarder.seconds.toFixed(2),
              rate(forwarder).toFixed(1),
              '-',
              '-',
            ],
          ]
        : []),
    ],
    1,
  );
  console.log(
    'latency: a post answered → its delivery received (the dispatcher looks for committed deliveries every second). ' +
      `ratio deliveries/forwarder: ${forwarder ? (perSecond / rate(forwarder)).toFixed(3) : '- (ingest section skipped)'}`,
  );
  return {
    webhookMails: mails,
    webhookDeliveriesPerSecond: round1(perSecond),
    webhookLatencyP50Ms: round1(percentile(latenciesMs, 0.5)),
    webhookLatencyP95Ms: round1(percentile(latenciesMs, 0.95)),
    webhookPostsPerSecond: round1(rate(posts)),
    ...(forwarder ? { webhookToForwarderRatio: round3(perSecond / rate(forwarder)) } : {}),
  };
}

/** Prints the IMAP table, next to the forwarder's total if the ingest section ran; returns the figures for the JSON line. */
function printImapReport({ latency, drain, forwarderBeside, seconds }: ImapFigures, forwarder: Measurement | undefined) {
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
    forwarderBesideDrainPerSecond: round1(rate(forwarderBeside)),
    drainToForwarderRatio: round3(drainRate / rate(forwarderBeside)),
    ...(forwarder ? { drainToIngestSectionRatio: round3(drainRate / rate(forwarder)) } : {}),
  };
  const percentiles = (values: number[]) =>
    [0.5, 0.95].map((fraction) => percentile(values, fraction).toFixed(1)).concat(Math.max(...values).toFixed(1));

  console.log(
    `\nIMAP on a real Dovecot (IDLE)${forwarder ? ', after the rounds' : ''}: ${latency.mails} mails over ${latency.mailboxes} mailbox${latency.mailboxes === 1 ? '' : 'es'}, ` +
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
      ['forwarder, right before the drain', ...measurementCells(forwarderBeside), '-'],
      ...(forwarder
        ? [
            [
              'forwarder (ingest total above)',
              String(forwarder.requests),
              forwarder.seconds.toFixed(2),
              rate(forwarder).toFixed(1),
              '-',
              '-',
              '-',
            ],
          ]
        : []),
    ],
    1,
  );
  const goal = figures.imapLatencyP95Ms < 2000 ? 'met' : 'MISSED';
  const ingestSection = figures.drainToIngestSectionRatio?.toFixed(3) ?? '- (ingest section skipped)';
  console.log(
    `ratio drain/forwarder right before it: ${figures.drainToForwarderRatio.toFixed(3)} (to the ingest section's rounds: ` +
      `${ingestSection}); latency goal p95 < 2000 ms: ${goal}`,
  );
  console.log(
    "APPEND → stored includes Dovecot's own 500 ms wait before it tells an IDLE session of new mail (NOTIFY_DELAY_MSECS)",
  );
  console.log(
    `drain: from enabling IMAP (workflow start and login; first mail signalled after ${drain.firstMailMs} ms) to the last ` +
      `mail signalled. One session ingests up to 16 mails at once (a sender's one after another); the forwarder had ${CONCURRENCY} requests in flight.\n` +
      'Both start conversation workflows with signalWithStart on a queue no worker polls: neither figure includes running them.',
  );
  console.log(
    `IMAP part (Dovecot, worker and its workflow bundle, warm-up, backlog APPENDs ${drain.appendSeconds.toFixed(1)} s): ` +
      `${seconds.toFixed(1)} s`,
  );
  return figures;
}

/** Prints the SMTP receiver table (forwarder and SMTP, per round and in total); returns the figures for the JSON line. */
function printSmtpReport({ rows, dataEndToSignalledMs }: SmtpFigures, totalRequests: number) {
  const labels: Record<SmtpWorkload, string> = { forwarder: 'forwarder endpoint (HTTP)', smtp: 'SMTP receiver' };
  const total = (workload: SmtpWorkload): Measurement => {
    const measurements = rows.filter((row) => row.workload === workload).map((row) => row.measurement);
    return {
      requests: measurements.reduce((sum, m) => sum + m.requests, 0),
      seconds: measurements.reduce((sum, m) => sum + m.seconds, 0),
      latenciesMs: measurements.flatMap((m) => m.latenciesMs),
      failures: 0,
    };
  };
  const allRows = [
    ...rows,
    ...(['forwarder', 'smtp'] as const).map((workload) => ({ round: 'total', workload, measurement: total(workload) })),
  ];
  const ratioOf = (round: string) => {
    const of = (workload: SmtpWorkload) => allRows.find((row) => row.round === round && row.workload === workload)!.measurement;
    return rate(of('smtp')) / rate(of('forwarder'));
  };
  const rounds = [...new Set(rows.map((row) => row.round))];
  const ratio = ratioOf('total');
  console.log(
    `
SMTP receiver next to the forwarder endpoint: N = ${totalRequests} of each in ${rounds.length} rounds (ABBA), ` +
      `${CONCURRENCY} in flight (SMTP: ${CONCURRENCY} pooled connections), ${WARM_UP_REQUESTS} of each to warm up`,
  );
  printTable(
    ['round', 'measurement', 'mails', 'seconds', 'per second', 'p50 ms', 'p95 ms'],
    allRows.map(({ round, workload, measurement }) => [round, labels[workload], ...measurementCells(measurement)]),
  );
  console.log(
    `ratio SMTP/forwarder: ${ratio.toFixed(3)} (per round: ${rounds.map((round) => ratioOf(round).toFixed(3)).join(', ')}); ` +
      `goal at least ${SMTP_RATIO_GOAL}: ${ratio >= SMTP_RATIO_GOAL ? 'met' : 'MISSED'}`,
  );
  const p50 = percentile(dataEndToSignalledMs, 0.5);
  const p95 = percentile(dataEndToSignalledMs, 0.95);
  console.log(
    `SMTP end of DATA → conversation signalled (signalled_at), ${dataEndToSignalledMs.length} mails: p50 ${p50.toFixed(1)} ms, ` +
      `p95 ${p95.toFixed(1)} ms. Both paths start conversation workflows with signalWithStart on a queue no worker polls.`,
  );
  return {
    smtpMailsPerSecond: round1(rate(total('smtp'))),
    smtpForwarderMailsPerSecond: round1(rate(total('forwarder'))),
    smtpToForwarderRatio: round3(ratio),
    smtpRoundRatios: rounds.map((round) => round3(ratioOf(round))),
    smtpDataEndToSignalledP50Ms: round1(p50),
    smtpDataEndToSignalledP95Ms: round1(p95),
  };
}

/** Prints the big-mail stall table (PostgreSQL and the embedded database); returns the figures for the JSON line. */
function printBigMailStallReport({ rounds, bigMailBytes, backends, bigMailAnswerMs }: BigMailStalls, seconds: number) {
  const mib = (bytes: number) => (bytes / 1024 / 1024).toFixed(1);
  console.log(
    `\nEvent-loop stalls of the API while it takes one big mail (${mib(bigMailBytes)} MiB: a 16 MiB attachment) next to a ` +
      `small ordinary one, ${rounds} round${rounds === 1 ? '' : 's'} of each in ABBA order, one mail at a time, on ` +
      'PostgreSQL and on the embedded database as `npm start` opens it (each in an API process of its own)',
  );
  const labels = { postgres: 'PostgreSQL', embedded: 'embedded (PGlite thread)' } as const;
  const rows = (['postgres', 'embedded'] as const).flatMap((backend) =>
    (['big', 'small'] as const).map((size) => {
      const { maxMs, perMailMs, maxBusyMs, perMailBusyMs, cpuMs } = backends[backend][size];
      return [
        labels[backend],
        size === 'big' ? `big (${mib(bigMailBytes)} MiB)` : 'small',
        maxMs.toFixed(1),
        perMailMs.map((ms) => ms.toFixed(0)).join(', '),
        maxBusyMs.toFixed(1),
        perMailBusyMs.map((ms) => ms.toFixed(0)).join(', '),
        (cpuMs / perMailMs.length).toFixed(0),
        size === 'big' ? bigMailAnswerMs[backend].toFixed(0) : '-',
        size === 'big' ? (maxMs <= STALL_GOAL_MS ? 'met' : 'MISSED') : '-',
      ];
    }),
  );
  printTable(
    [
      'database',
      'mail',
      'max stall ms',
      'each mail ms',
      'of it busy ms',
      'each mail ms',
      'API CPU ms/mail',
      'answered after ms',
      `goal ≤ ${STALL_GOAL_MS} ms`,
    ],
    rows,
    2,
  );
  console.log(
    'A late timer is a stall whatever kept the thread: its own work, a GC, or other processes on a busy machine. ' +
      '"Busy" is the most CPU time the event loop\'s thread itself spent between two firings of the timer: the ' +
      `stall's own part, without the time the machine gave to other work. Big-mail part (two API processes, warm-up, ` +
      `rounds): ${seconds.toFixed(1)} s`,
  );
  const figure = (backend: keyof typeof labels, size: 'big' | 'small') => round1(backends[backend][size].maxMs);
  return {
    stallBigMailBytes: bigMailBytes,
    stallBigMailPostgresMaxMs: figure('postgres', 'big'),
    stallSmallMailPostgresMaxMs: figure('postgres', 'small'),
    stallBigMailEmbeddedMaxMs: figure('embedded', 'big'),
    stallSmallMailEmbeddedMaxMs: figure('embedded', 'small'),
    stallBigMailPostgresBusyMs: round1(backends.postgres.big.maxBusyMs),
    stallBigMailEmbeddedBusyMs: round1(backends.embedded.big.maxBusyMs),
    stallBigMailPostgresAnswerMs: round1(bigMailAnswerMs.postgres),
    stallBigMailEmbeddedAnswerMs: round1(bigMailAnswerMs.embedded),
    stallBigMailGoalMet: backends.postgres.big.maxMs <= STALL_GOAL_MS && backends.embedded.big.maxMs <= STALL_GOAL_MS,
  };
}

/** Prints the event-loop stall table; returns the figures for the JSON line. */
function printStallReport(stalls: StallFigures, seconds: number) {
  const { corpus, ordinary } = stalls.workloads;
  const maxRatio = corpus.maxMs / ordinary.maxMs;
  const p99Ratio = corpus.p99Ms / ordinary.p99Ms;
  const goalMet = corpus.maxMs <= STALL_GOAL_MS;
  console.log(
    `\nEvent-loop stalls of the API (a process of its own; how late a 1 ms timer fires): the adversarial corpus ` +
      `(${stalls.cases} cases, ${corpus.mails / stalls.rounds} mails a round) and as many ordinary mails, one mail at a time, ` +
      `${stalls.rounds} round${stalls.rounds === 1 ? '' : 's'} of each in ABBA order`,
  );
  const row = (label: string, { mails, maxMs, p99Ms, p50Ms, samples, cpuMs }: typeof corpus) => [
    label,
    String(mails),
    maxMs.toFixed(1),
    p99Ms.toFixed(2),
    p50Ms.toFixed(2),
    String(samples),
    (cpuMs / mails).toFixed(1),
  ];
  printTable(
    ['workload', 'mails', 'max stall ms', 'p99 ms', 'p50 ms', 'samples', 'API CPU ms/mail'],
    [row('adversarial corpus', corpus), row('ordinary mail', ordinary)],
    1,
  );
  console.log(
    `ratio corpus/ordinary: max ${maxRatio.toFixed(2)}, p99 ${p99Ratio.toFixed(2)}; goal max stall ≤ ${STALL_GOAL_MS} ms: ` +
      `${goalMet ? 'met' : 'MISSED'}`,
  );
  console.log(
    `longest per corpus mail (the stall may fall just after its answer): ` +
      stalls.worstMails.map((mail) => `${mail.name} ${mail.maxMs.toFixed(1)} ms`).join(', '),
  );
  console.log(
    `cross-check, monitorEventLoopDelay over all rounds and the pauses between them: max ${stalls.builtInMaxMs.toFixed(1)} ms. ` +
      'A late timer is a stall whatever kept the thread from running: its own work, a GC, or other processes on a busy ' +
      `machine (compare the CPU the API spent). Stall part (API process start, warm-up, rounds): ${seconds.toFixed(1)} s`,
  );
  for (const line of stalls.unexpected) console.log(`unexpected answer: ${line}`);
  return {
    stallRounds: stalls.rounds,
    stallCorpusCases: stalls.cases,
    stallCorpusMails: corpus.mails,
    stallCorpusMaxMs: round1(corpus.maxMs),
    stallCorpusP99Ms: round3(corpus.p99Ms),
    stallOrdinaryMails: ordinary.mails,
    stallOrdinaryMaxMs: round1(ordinary.maxMs),
    stallOrdinaryP99Ms: round3(ordinary.p99Ms),
    stallCorpusCpuMsPerMail: round1(corpus.cpuMs / corpus.mails),
    stallOrdinaryCpuMsPerMail: round1(ordinary.cpuMs / ordinary.mails),
    stallMaxRatio: round3(maxRatio),
    stallP99Ratio: round3(p99Ratio),
    stallWorstMail: stalls.worstMails[0]?.name ?? null,
    stallBuiltInMaxMs: round1(stalls.builtInMaxMs),
    stallGoalMs: STALL_GOAL_MS,
    stallGoalMet: goalMet,
    stallUnexpectedAnswers: stalls.unexpected.length,
  };
}

/** The kinds of failed or retried task attempts, for the checks line: " (kind n, ...)", or nothing. */
function failedKinds(checks: Array<LoadSummary['checks']>): string {
  const kinds = new Map<string, number>();
  for (const [kind, times] of checks.flatMap((c) => Object.entries(c.failedTaskKinds))) {
    kinds.set(kind, (kinds.get(kind) ?? 0) + times);
  }
  return kinds.size === 0 ? '' : ` (${[...kinds].map(([kind, times]) => `${kind} ${times}`).join(', ')})`;
}

/** Prints the one-worker and two-worker runs of the same load and their ratio; returns the figures for the JSON line. */
function printWorkersReport(runs: LoadRun[]) {
  const one = summarize(runs.filter((run) => run.workers === 1));
  const two = summarize(runs.filter((run) => run.workers === 2));
  const cores = availableParallelism();
  const machineCpuMs = (summary: LoadSummary) =>
    summary.workerCpuMsPerConversation +
    summary.apiCpuMsPerMail +
    (summary.serverCpuMsPerConversation ?? 0) +
    (summary.postgresCpuMsPerConversation ?? 0);
  const optionalMs = (value: number | undefined) => value?.toFixed(1) ?? '-';
  console.log(
    `\nOne worker process and two on the same task queue, the same load: ${runs[0]!.conversations} mails posted to the ` +
      `forwarder endpoint of a channel with a greeting (${CONCURRENCY} in flight), each a new conversation, until every ` +
      `conversation is greeted (SMTP capture) and queued; ${runs.length} runs in ABBA order, the API in a process of its own`,
  );
  printTable(
    [
      'run',
      'workers',
      'conversations',
      'seconds',
      'per second',
      'worker CPU ms',
      'API CPU ms',
      'server CPU ms',
      'PostgreSQL CPU ms',
      'workflow tasks by process',
      'activities by process',
      'local activities by process',
      'greeted once',
    ],
    runs.map((run, index) => {
      const summary = summarize([run]);
      return [
        String(index + 1),
        String(run.workers),
        String(run.conversations),
        run.seconds.toFixed(1),
        summary.perSecond.toFixed(1),
        summary.workerCpuMsPerConversation.toFixed(1),
        summary.apiCpuMsPerMail.toFixed(1),
        optionalMs(summary.serverCpuMsPerConversation),
        optionalMs(summary.postgresCpuMsPerConversation),
        run.shares.map((share) => share.workflowTasks).join(' / '),
        run.shares.map((share) => share.activities).join(' / '),
        run.shares.map((share) => share.localActivities).join(' / '),
        String(run.checks.greetedOnce),
      ];
    }),
    1,
  );
  const throughputRatio = two.perSecond / one.perSecond;
  const workerCpuRatio = two.workerCpuMsPerConversation / one.workerCpuMsPerConversation;
  const machineCpuRatio = machineCpuMs(two) / machineCpuMs(one);
  console.log(
    `ratio two workers / one: throughput ${throughputRatio.toFixed(2)} (${two.perSecond.toFixed(1)} vs ` +
      `${one.perSecond.toFixed(1)} conversations/s), worker CPU per conversation ${workerCpuRatio.toFixed(2)} ` +
      `(${two.workerCpuMsPerConversation.toFixed(1)} vs ${one.workerCpuMsPerConversation.toFixed(1)} ms), CPU of all ` +
      `processes per conversation ${machineCpuRatio.toFixed(2)}. CPU ms are per conversation (API: per mail).`,
  );
  console.log(
    `This machine has ${cores} cores, which the API, Temporal, PostgreSQL and the bench share with the workers: ` +
      (cores <= 4
        ? 'the ratio shows that two workers share the work correctly, not a speed-up. More workers pay off where the ' +
          'workers have cores of their own (see README, Cost model).'
        : 'the throughput ratio is the speed-up a second worker process gives on this machine, with the servers on the same cores.'),
  );
  const failures = [loadCheckFailure(one), loadCheckFailure(two)].filter(Boolean);
  const checks = [one, two].map((summary) => summary.checks);
  console.log(
    `checks: greeted exactly once ${one.checks.greetedOnce + two.checks.greetedOnce} of ` +
      `${one.conversations + two.conversations}; greetings marked sent ${checks.reduce((sum, c) => sum + c.greetingsSent, 0)}; ` +
      `workflows not running ${checks.reduce((sum, c) => sum + c.notRunning, 0)}; failed or retried task attempts ` +
      `${checks.reduce((sum, c) => sum + c.failedTasks, 0)}${failedKinds(checks)}; worker warnings ${checks.reduce((sum, c) => sum + c.warnings, 0)}` +
      `${checks.flatMap((c) => c.firstWarnings).length > 0 ? ` (first: ${checks.flatMap((c) => c.firstWarnings)[0]})` : ''}; ` +
      `both workers took workflow tasks in every two-worker run: ${two.shares.every((run) => run.every((share) => share.workflowTasks > 0)) ? 'yes' : 'NO'}`,
  );
  if (failures.length > 0) throw new Error(`the workers section's load went wrong: ${failures.join('; ')}`);
  return {
    workersConversationsPerRun: runs[0]!.conversations,
    workersRuns: runs.length,
    workersOnePerSecond: round1(one.perSecond),
    workersTwoPerSecond: round1(two.perSecond),
    workersThroughputRatio: round3(throughputRatio),
    workersOneWorkerCpuMsPerConversation: round1(one.workerCpuMsPerConversation),
    workersTwoWorkerCpuMsPerConversation: round1(two.workerCpuMsPerConversation),
    workersWorkerCpuRatio: round3(workerCpuRatio),
    workersMachineCpuRatio: round3(machineCpuRatio),
    workersTwoShares: two.shares,
    workersCores: cores,
  };
}

interface CostFigures {
  /** The one-worker runs of the load. */
  runs: LoadRun[];
  attachments: AttachmentFigures;
  imap: ImapSessionFigures;
  /** History events of the typical life, when the history section ran. */
  typicalLifeEvents: number | undefined;
}

/** Prints the figures of the README's cost model, per conversation, per 1,000 and per 100 mailboxes; returns them for the JSON line. */
function printCostReport({ runs, attachments, imap, typicalLifeEvents }: CostFigures) {
  const load = summarize(runs);
  const n = load.conversations;
  const tables = sumUsage(runs.map((run) => run.tables));
  const total = totalUsage(tables);
  // The tables were measured over each run's warm-up and load together.
  const tableN = runs.reduce((sum, run) => sum + run.tablesConversations, 0);
  const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(1);
  const per1000 = (value: number, digits = 0) => (value * 1000).toFixed(digits);
  const bytesPerEvent = load.historyBytesMean / load.historyEventsMean;
  console.log(
    `\nCost model figures: the load of the workers section on one worker process (${runs.length} run(s), ${n} conversations, ` +
      'each one mail, greeted and queued); per conversation and per 1,000 conversations',
  );
  const optional = (value: number | undefined, format: (value: number) => string) => (value === undefined ? '-' : format(value));
  printTable(
    ['figure', 'per conversation', 'per 1,000 conversations', 'max'],
    [
      [
        'Temporal history events (historyLength)',
        load.historyEventsMean.toFixed(1),
        per1000(load.historyEventsMean),
        String(load.historyEventsMax),
      ],
      [
        'Temporal history bytes (historySizeBytes)',
        load.historyBytesMean.toFixed(0),
        `${mib(load.historyBytesMean * 1000)} MiB`,
        String(load.historyBytesMax),
      ],
      ['worker CPU ms', load.workerCpuMsPerConversation.toFixed(1), `${load.workerCpuMsPerConversation.toFixed(1)} s`, '-'],
      [
        'worker RSS growth bytes, all waiting (after a GC; noisy at this N)',
        load.rssBytesPerConversation.toFixed(0),
        `${mib(load.rssBytesPerConversation * 1000)} MiB`,
        '-',
      ],
      ['API CPU ms per mail', load.apiCpuMsPerMail.toFixed(1), `${load.apiCpuMsPerMail.toFixed(1)} s`, '-'],
      [
        'Temporal server CPU ms',
        optional(load.serverCpuMsPerConversation, (ms) => ms.toFixed(1)),
        optional(load.serverCpuMsPerConversation, (ms) => `${ms.toFixed(1)} s`),
        '-',
      ],
      [
        'PostgreSQL CPU ms',
        optional(load.postgresCpuMsPerConversation, (ms) => ms.toFixed(1)),
        optional(load.postgresCpuMsPerConversation, (ms) => `${ms.toFixed(1)} s`),
        '-',
      ],
      ['PostgreSQL rows inserted', (total.inserted / tableN).toFixed(1), per1000(total.inserted / tableN), '-'],
      ['PostgreSQL rows updated', (total.updated / tableN).toFixed(1), per1000(total.updated / tableN), '-'],
      [
        'PostgreSQL bytes (tables, indexes, TOAST)',
        (total.bytes / tableN).toFixed(0),
        `${mib((total.bytes / tableN) * 1000)} MiB`,
        '-',
      ],
    ],
    1,
  );
  console.log(
    `a worker process, warmed up and idle: ${mib(load.rssIdleBytes)} MiB RSS. Temporal history: ${bytesPerEvent.toFixed(0)} bytes an event` +
      (typicalLifeEvents === undefined
        ? ''
        : `; a typical life (history section, ${typicalLifeEvents} events) ≈ ${((typicalLifeEvents * bytesPerEvent) / 1024).toFixed(1)} KiB, ` +
          `${mib(typicalLifeEvents * bytesPerEvent * 1000)} MiB per 1,000 conversations (estimated at this load's bytes an event)`),
  );
  console.log(`\nPostgreSQL by table, per mail of the load (pg_stat_user_tables, pg_total_relation_size; before → after)`);
  printTable(
    ['table', 'rows inserted', 'rows updated', 'rows deleted', 'bytes', 'MiB per 1,000'],
    Object.entries(tables)
      .sort(([, a], [, b]) => b.bytes - a.bytes)
      .map(([table, usage]) => [
        table,
        (usage.inserted / tableN).toFixed(2),
        (usage.updated / tableN).toFixed(2),
        (usage.deleted / tableN).toFixed(2),
        (usage.bytes / tableN).toFixed(0),
        mib((usage.bytes / tableN) * 1000),
      ]),
    1,
  );
  const attachmentTotal = attachments.mails * attachments.attachmentBytes;
  const { rawBytes, decodedBytes } = attachments;
  const allAttachmentBytes = rawBytes + decodedBytes;
  console.log(
    `attachments: ${attachments.mails} mails with one ${(attachments.attachmentBytes / 1024).toFixed(0)} KiB attachment each ` +
      `(random bytes; ${(attachments.mailBytes / 1024).toFixed(0)} KiB a mail; ${attachments.storedAttachments} stored) less as ` +
      `many plain ones: PostgreSQL stores ${(rawBytes / attachmentTotal).toFixed(2)} bytes per attachment byte in ` +
      `inbound_messages (the raw mail, base64), ${(decodedBytes / attachmentTotal).toFixed(2)} in attachments (decoded), ` +
      `${(allAttachmentBytes / attachmentTotal).toFixed(2)} in all`,
  );
  const { memory, idleCpu } = imap;
  const sessionBytes = (memory.all.mainThread - memory.half.mainThread) / imap.added;
  const sessionRss = (memory.all.rss - memory.half.rss) / imap.added;
  const sessionCpuMsPerHour = (((idleCpu.all - idleCpu.half) * 1000) / imap.added) * (3600 / imap.idleSeconds);
  console.log(
    `\nIdle IMAP sessions (Dovecot, IDLE) on a fresh worker process: none, then ${imap.mailboxes - imap.added}, then ` +
      `${imap.mailboxes} mailboxes (${imap.sessionsRunning} sessions running at the end); after a GC each`,
  );
  printTable(
    ['sessions', 'RSS MiB', 'main thread heap + external MiB', `worker CPU ms over ${imap.idleSeconds} s idle`],
    (['none', 'half', 'all'] as const).map((step) => [
      step === 'none' ? '0' : step === 'half' ? String(imap.mailboxes - imap.added) : String(imap.mailboxes),
      mib(memory[step].rss),
      mib(memory[step].mainThread),
      (idleCpu[step] * 1000).toFixed(0),
    ]),
    1,
  );
  console.log(
    `a session (the last ${imap.added}): ${(sessionBytes / 1024).toFixed(0)} KiB of the main thread (its IMAP connection ` +
      `and activity), ${(sessionRss / 1024).toFixed(0)} KiB of RSS (noisy: the workflow threads' heaps and the allocator); ` +
      `per 100 mailboxes ${mib(sessionBytes * 100)} MiB (main thread) and ${mib(sessionRss * 100)} MiB (RSS). CPU of an idle ` +
      `session (the last ${imap.added} too; a fresh process's first seconds make the first row's CPU): ` +
      `${sessionCpuMsPerHour.toFixed(0)} ms an hour, ${((sessionCpuMsPerHour * 100) / 1000).toFixed(1)} s an hour per 100 mailboxes`,
  );
  return {
    costConversations: n,
    costHistoryEventsPerConversation: round1(load.historyEventsMean),
    costHistoryBytesPerConversation: Math.round(load.historyBytesMean),
    costHistoryBytesPerEvent: Math.round(bytesPerEvent),
    costWorkerCpuMsPerConversation: round1(load.workerCpuMsPerConversation),
    costWorkerRssBytesPerConversation: Math.round(load.rssBytesPerConversation),
    costWorkerRssIdleMiB: round1(load.rssIdleBytes / 2 ** 20),
    costApiCpuMsPerMail: round1(load.apiCpuMsPerMail),
    costServerCpuMsPerConversation:
      load.serverCpuMsPerConversation === undefined ? null : round1(load.serverCpuMsPerConversation),
    costPostgresCpuMsPerConversation:
      load.postgresCpuMsPerConversation === undefined ? null : round1(load.postgresCpuMsPerConversation),
    costPostgresRowsInsertedPerConversation: round1(total.inserted / tableN),
    costPostgresRowsUpdatedPerConversation: round1(total.updated / tableN),
    costPostgresBytesPerConversation: Math.round(total.bytes / tableN),
    costPostgresBytesByTable: Object.fromEntries(
      Object.entries(tables).map(([table, usage]) => [table, Math.round(usage.bytes / tableN)]),
    ),
    costAttachmentStoredBytesPerByte: round3(allAttachmentBytes / attachmentTotal),
    costAttachmentRawBytesPerByte: round3(rawBytes / attachmentTotal),
    costAttachmentDecodedBytesPerByte: round3(decodedBytes / attachmentTotal),
    costImapSessionBytes: Math.round(sessionBytes),
    costImapSessionRssBytes: Math.round(sessionRss),
    costImapSessionCpuMsPerHour: round1(sessionCpuMsPerHour),
  };
}

const waitingLabels: Record<WaitingFigures['workload'], string> = {
  mailroom: 'Mailroom, hours closed',
  bare: "bare sleep('1 day')",
};

/** Prints the waiting-workflows table and its cross-checks; returns the figures for the JSON line. */
function printWaitingReport(workloads: WaitingFigures[], seconds: number) {
  const mailroom = workloads.find((figures) => figures.workload === 'mailroom')!;
  const bare = workloads.find((figures) => figures.workload === 'bare')!;
  const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(1);
  const delta = (figures: WaitingFigures) => figures.settled.rss - figures.baseline.rss;
  const perWorkflow = (figures: WaitingFigures) => delta(figures) / figures.n;
  // The worker's CPU time from the baseline to all waiting, per workflow.
  const cpuPerWorkflow = (figures: WaitingFigures) =>
    ((figures.allWaiting.cpuSeconds - figures.baseline.cpuSeconds) * 1000) / figures.n;
  const serverCpuPerWorkflow = (figures: WaitingFigures) =>
    figures.serverCpuSeconds === undefined ? undefined : (figures.serverCpuSeconds * 1000) / figures.n;
  const startRatio = mailroom.startSeconds / bare.startSeconds;
  const rssRatio = delta(mailroom) / delta(bare);
  const serverCpuRatio =
    mailroom.serverCpuSeconds === undefined || bare.serverCpuSeconds === undefined
      ? undefined
      : serverCpuPerWorkflow(mailroom)! / serverCpuPerWorkflow(bare)!;
  const cacheNote =
    mailroom.maxCachedWorkflows === bare.maxCachedWorkflows
      ? `maxCachedWorkflows ${mailroom.maxCachedWorkflows}`
      : `maxCachedWorkflows ${mailroom.maxCachedWorkflows} (Mailroom) / ${bare.maxCachedWorkflows} (bare)`;

  console.log(
    `\nWaiting workflows: N = ${mailroom.n} of each, ${WAITING_CONCURRENCY} signalWithStart in flight, each workload on a fresh ` +
      `worker process with the SDK defaults: ${cacheNote} (heap limit ${mib(mailroom.heapSizeLimit)} MiB), ` +
      `${mailroom.maxConcurrentWorkflowTaskExecutions} workflow tasks at a time`,
  );
  printTable(
    [
      'workload',
      'N',
      'start s',
      'per second',
      'RSS idle MiB',
      'all waiting MiB',
      `+${WAITING_IDLE_SECONDS} s MiB`,
      'peak MiB',
      'bytes/waiting',
      'cached',
      'worker CPU ms',
      'server CPU ms',
    ],
    workloads.map((figures) => [
      waitingLabels[figures.workload],
      String(figures.n),
      figures.startSeconds.toFixed(2),
      (figures.n / figures.startSeconds).toFixed(1),
      mib(figures.baseline.rss),
      mib(figures.allWaiting.rss),
      mib(figures.settled.rss),
      mib(figures.settled.maxRss),
      perWorkflow(figures).toFixed(0),
      String(figures.settled.cachedWorkflows),
      cpuPerWorkflow(figures).toFixed(1),
      serverCpuPerWorkflow(figures)?.toFixed(1) ?? '-',
    ]),
    1,
  );
  console.log(
    `ratio Mailroom/bare: start time ${startRatio.toFixed(2)}, RSS above the idle worker ${rssRatio.toFixed(2)} ` +
      `(${mib(delta(mailroom))} vs ${mib(delta(bare))} MiB), worker CPU ${(cpuPerWorkflow(mailroom) / cpuPerWorkflow(bare)).toFixed(2)}` +
      (serverCpuRatio === undefined ? '' : `, server CPU ${serverCpuRatio.toFixed(2)}`),
  );
  console.log(
    `start: from the first signalWithStart to the last workflow starting its timer (the calls themselves took ` +
      `${mailroom.requestSeconds.toFixed(1)} s / ${bare.requestSeconds.toFixed(1)} s). bytes/waiting: RSS after ${WAITING_IDLE_SECONDS} s idle and ` +
      `a GC of the main thread, less the idle worker's, over N; "cached" is the worker's sticky cache then. CPU: of the ` +
      'worker process and of the Temporal dev server, from the baseline to all waiting, per workflow.',
  );
  for (const figures of workloads) {
    if (figures.settled.cachedWorkflows < figures.n) {
      console.log(
        `${figures.workload}: only ${figures.settled.cachedWorkflows} of ${figures.n} stay cached; per cached workflow ` +
          `${(delta(figures) / Math.max(1, figures.settled.cachedWorkflows)).toFixed(0)} bytes`,
      );
    }
    if (figures.settled.warnings > 0) {
      console.log(
        `${figures.workload}: the worker logged ${figures.settled.warnings} warnings/errors, first: ${figures.settled.firstWarnings.join(' | ')}`,
      );
    }
  }
  console.log(
    `\nWhere the time went, a conversation's first minute (its start to its wait): histories of ${mailroom.breakdown.sampled} ` +
      'workflows of each, spread over the start order (queue: scheduled → started, run: started → completed; a local ' +
      'activity runs inside a workflow task: its run from its marker; ms)',
  );
  const spread = (values: number[]) =>
    values.length === 0 ? ['-', '-'] : [percentile(values, 0.5).toFixed(0), percentile(values, 0.95).toFixed(0)];
  printTable(
    ['workload', 'step', 'tasks', 'queue p50', 'queue p95', 'run p50', 'run p95', 'retries'],
    workloads.flatMap(({ workload, breakdown }) => [
      [
        workload,
        'start → timer, per workflow',
        String(breakdown.toTimerMs.length),
        '-',
        '-',
        ...spread(breakdown.toTimerMs),
        '-',
      ],
      ...breakdown.steps.map((step) => [
        workload,
        step.step,
        String(step.runMs.length),
        ...spread(step.queueMs),
        ...spread(step.runMs),
        String(step.failures),
      ]),
    ]),
  );
  const checks = mailroom.mailroom!;
  console.log(
    `Mailroom checks: seeded in ${checks.seedSeconds.toFixed(1)} s; waiting_for_hours in the database ${checks.dbWaiting}, ` +
      `in Temporal's visibility ${checks.visibilityWaiting}; out-of-office notes sent ${checks.outOfOfficeSent}, ` +
      `captured ${checks.outOfOfficeCaptured}. Terminating took ${mailroom.terminateSeconds.toFixed(1)} s / ` +
      `${bare.terminateSeconds.toFixed(1)} s; the whole waiting part ${seconds.toFixed(1)} s.`,
  );
  const workloadFigures = (prefix: string, figures: WaitingFigures) => ({
    [`${prefix}StartSeconds`]: round3(figures.startSeconds),
    [`${prefix}PerSecond`]: round1(figures.n / figures.startSeconds),
    [`${prefix}RssIdleMiB`]: round1(figures.baseline.rss / 2 ** 20),
    [`${prefix}RssAllWaitingMiB`]: round1(figures.allWaiting.rss / 2 ** 20),
    [`${prefix}RssSettledMiB`]: round1(figures.settled.rss / 2 ** 20),
    [`${prefix}RssPeakMiB`]: round1(figures.settled.maxRss / 2 ** 20),
    [`${prefix}BytesPerWaiting`]: Math.round(perWorkflow(figures)),
    [`${prefix}Cached`]: figures.settled.cachedWorkflows,
    [`${prefix}WorkerCpuMsPerWorkflow`]: round1(cpuPerWorkflow(figures)),
    [`${prefix}ServerCpuMsPerWorkflow`]: figures.serverCpuSeconds === undefined ? null : round1(serverCpuPerWorkflow(figures)!),
    [`${prefix}Warnings`]: figures.settled.warnings,
  });
  return {
    waitingN: mailroom.n,
    waitingConcurrency: WAITING_CONCURRENCY,
    waitingMaxCachedWorkflows: mailroom.maxCachedWorkflows,
    ...workloadFigures('waitingMailroom', mailroom),
    ...workloadFigures('waitingBare', bare),
    waitingStartRatio: round3(startRatio),
    waitingRssRatio: round3(rssRatio),
    waitingMailroomDbWaiting: checks.dbWaiting,
    waitingMailroomVisibilityWaiting: checks.visibilityWaiting,
    waitingMailroomOutOfOfficeSent: checks.outOfOfficeSent,
  };
}

/** The first textColumns left-aligned, the figures after them right-aligned, columns as wide as their widest cell. */
/** Prints the history tables of the typical and the longest conversation; returns the figures for the JSON line. */
function printHistoryReport({ typical, longest }: HistoryFigures) {
  const kinds: Array<[keyof HistoryCounts, string]> = [
    ['events', 'history events'],
    ['actions', 'Temporal Cloud actions'],
    ['workflowTasks', 'workflow tasks'],
    ['activities', 'activities'],
    ['localActivities', 'local activities'],
    ['localActivityTasks', 'tasks with local activities'],
    ['timers', 'timers'],
    ['signals', 'signals'],
    ['updates', 'updates'],
    ['searchAttributeUpserts', 'search attribute upserts'],
  ];
  // The goal (issue 14): events and actions at most half of today's, for both lives.
  const goal = (key: keyof HistoryCounts, today: number) => (key === 'events' || key === 'actions' ? `<= ${today / 2}` : '');
  const lives: Array<[string, LifeFigures]> = [
    ['A typical conversation (greeting, assignment, two replies each way, resolution, survey, rating, close)', typical],
    [`The longest of the other workflow tests (${longest.scenario})`, longest],
  ];
  for (const [title, { today, now }] of lives) {
    console.log(`\n${title}`);
    printTable(
      ['', 'today (recorded)', 'now', 'goal', 'today per 1,000', 'now per 1,000', 'now / today'],
      kinds.map(([key, label]) => [
        label,
        String(today[key]),
        String(now[key]),
        goal(key, today[key]),
        String(today[key] * 1000),
        String(now[key] * 1000),
        today[key] === 0 ? '-' : round3(now[key] / today[key]).toFixed(3),
      ]),
      1,
    );
  }
  console.log(
    'today: the histories recorded from the workflow before the leaner history (tests/fixtures/histories/customerConversation); ' +
      "now: the same tests on the current code. Actions by Temporal Cloud's rules (bench/history.ts, countActions).",
  );
  return {
    historyToday: typical.today,
    historyNow: typical.now,
    historyLongestScenario: longest.scenario,
    historyLongestToday: longest.today,
    historyLongestNow: longest.now,
  };
}

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

/** A measurement's cells of a table: requests, seconds, per second, p50 ms, p95 ms. */
function measurementCells(measurement: Measurement): string[] {
  return [
    String(measurement.requests),
    measurement.seconds.toFixed(2),
    rate(measurement).toFixed(1),
    percentile(measurement.latenciesMs, 0.5).toFixed(1),
    percentile(measurement.latenciesMs, 0.95).toFixed(1),
  ];
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
