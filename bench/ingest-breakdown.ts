// Where an ingested mail's time goes: the ingest's own step timer (mailroom_ingest_step_seconds, the histogram an
// operator scrapes from /metrics) read before and after a batch of forwarded mails, next to every SQL statement the
// API sent meanwhile (Kysely's query log on the API's own pool), per mail. The steps' wall time includes waiting for a
// pooled connection; a statement's time is its round trip on the connection.
import type { LogEvent } from 'kysely';
import { ingestStepSeconds, type IngestStep } from '../src/observability/metrics.js';
import { cpuSecondsOf, postgresCpuClock, temporalServerPid } from './processes.js';
import type { BenchStack } from './stack.js';
import { measure, type Measurement, type Request } from './throughput.js';

const STEPS: IngestStep[] = ['store_raw', 'parse_handoff', 'parse', 'thread_transaction', 'signal'];

interface StatementTimes {
  calls: number;
  ms: number;
}

/** Collects the round trip of every SQL statement of a Kysely instance, by statement text (lists of values folded). */
export class SqlStatementLog {
  private statements = new Map<string, StatementTimes>();

  /** Kysely's `log` option. */
  readonly log = (event: LogEvent) => {
    if (event.level !== 'query') return;
    // Keyed by the exact text while the load runs (cheap); folded into statement keys only when taken.
    const times = this.statements.get(event.query.sql) ?? { calls: 0, ms: 0 };
    times.calls++;
    times.ms += event.queryDurationMillis;
    this.statements.set(event.query.sql, times);
  };

  /** What was logged since the last call, by statement key, and a fresh start. */
  take(): Map<string, StatementTimes> {
    const taken = new Map<string, StatementTimes>();
    for (const [text, { calls, ms }] of this.statements) {
      const key = statementKey(text);
      const times = taken.get(key) ?? { calls: 0, ms: 0 };
      taken.set(key, { calls: times.calls + calls, ms: times.ms + ms });
    }
    this.statements = new Map();
    return taken;
  }
}

/** A statement's text as a table shows it: one line, `in ($3, $4, ...)` as `in (…)`, at most 110 characters. */
function statementKey(text: string): string {
  const line = text.replaceAll(/\s+/g, ' ').replaceAll(/\(\$\d+(?:, \$\d+)+\)/g, '(…)');
  return line.length > 110 ? `${line.slice(0, 109)}…` : line;
}

export interface IngestBreakdown {
  mails: number;
  measurement: Measurement;
  /** Mean milliseconds per mail of each step (a step a mail skipped counts as 0 for it). */
  stepsMs: Record<IngestStep, number>;
  /** Per mail: how often each statement ran and its round trips' milliseconds, most time first. */
  statements: Array<{ statement: string; perMail: number; msPerMail: number; meanMs: number }>;
  /** CPU milliseconds of the process that runs the API (and the bench's client) per mail. */
  apiCpuMsPerMail: number;
  /**
   * CPU milliseconds per request of each process: the ingest, the ingest's own signalWithStart alone (search
   * attributes, summary, encrypted payloads), and a bare signalWithStart.
   */
  cpu: { ingest: ProcessCpu; conversationSignal: ProcessCpu; bare: ProcessCpu };
}

/** CPU milliseconds per request: the bench's process (its client, and the API where it runs the API), the servers. */
export interface ProcessCpu {
  benchProcess: number;
  temporal: number | undefined;
  postgres: number | undefined;
}

/** Runs `measure` and says how much CPU each process spent per request meanwhile (servers: undefined without /proc). */
async function measureWithCpu(stack: BenchStack, requests: number, concurrency: number, request: Request) {
  const temporalPid = temporalServerPid(stack.temporalAddress);
  const postgresClock = await postgresCpuClock(stack.db);
  const temporalBefore = temporalPid === undefined ? undefined : cpuSecondsOf(temporalPid);
  const postgresBefore = postgresClock?.();
  const processBefore = process.cpuUsage();
  const measurement = await measure(requests, concurrency, request);
  const processCpu = process.cpuUsage(processBefore);
  const temporalAfter = temporalPid === undefined ? undefined : cpuSecondsOf(temporalPid);
  const postgresAfter = postgresClock?.();
  const perRequest = (before: number | undefined, after: number | undefined) =>
    before === undefined || after === undefined ? undefined : ((after - before) * 1000) / requests;
  const cpu: ProcessCpu = {
    benchProcess: (processCpu.user + processCpu.system) / 1000 / requests,
    temporal: perRequest(temporalBefore, temporalAfter),
    postgres: perRequest(postgresBefore, postgresAfter),
  };
  return { measurement, cpu };
}

async function stepTotals(): Promise<Map<string, { sum: number; count: number }>> {
  const totals = new Map<string, { sum: number; count: number }>();
  for (const value of (await ingestStepSeconds.get()).values) {
    const step = String(value.labels.step);
    const entry = totals.get(step) ?? { sum: 0, count: 0 };
    if (value.metricName === 'mailroom_ingest_step_seconds_sum') entry.sum = value.value;
    if (value.metricName === 'mailroom_ingest_step_seconds_count') entry.count = value.value;
    totals.set(step, entry);
  }
  return totals;
}

/**
 * Posts `mails` mails with `concurrency` in flight and says where their time went; then makes as many of the
 * ingest's signalWithStart calls alone, and as many bare ones, for the CPU each process spends per request on each.
 */
export async function measureIngestBreakdown(
  stack: BenchStack,
  requests: { ingest: Request; conversationSignal: Request; bare: Request },
  { mails, concurrency }: { mails: number; concurrency: number },
): Promise<IngestBreakdown> {
  const before = await stepTotals();
  stack.sqlLog.take();
  const ingest = await measureWithCpu(stack, mails, concurrency, requests.ingest);
  const statements = stack.sqlLog.take();
  const after = await stepTotals();
  const conversationSignal = await measureWithCpu(stack, mails, concurrency, requests.conversationSignal);
  const bare = await measureWithCpu(stack, mails, concurrency, requests.bare);
  const stepsMs = Object.fromEntries(
    STEPS.map((step) => [step, (((after.get(step)?.sum ?? 0) - (before.get(step)?.sum ?? 0)) * 1000) / mails]),
  ) as Record<IngestStep, number>;
  return {
    mails,
    measurement: ingest.measurement,
    stepsMs,
    statements: [...statements.entries()]
      .map(([statement, { calls, ms }]) => ({ statement, perMail: calls / mails, msPerMail: ms / mails, meanMs: ms / calls }))
      .sort((a, b) => b.msPerMail - a.msPerMail),
    apiCpuMsPerMail: ingest.cpu.benchProcess,
    cpu: { ingest: ingest.cpu, conversationSignal: conversationSignal.cpu, bare: bare.cpu },
  };
}

export { STEPS as INGEST_STEPS };
