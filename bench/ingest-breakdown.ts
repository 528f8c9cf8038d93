// Where an ingested mail's time goes: the ingest's own step timer (mailroom_ingest_step_seconds, the histogram an
// operator scrapes from /metrics) read before and after a batch of forwarded mails, next to every SQL statement the
// API sent meanwhile (Kysely's query log on the API's own pool), per mail. The steps' wall time includes waiting for a
// pooled connection; a statement's time is its round trip on the connection.
import type { LogEvent } from 'kysely';
import { ingestStepSeconds, type IngestStep } from '../src/observability/metrics.js';
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
    const key = statementKey(event.query.sql);
    const times = this.statements.get(key) ?? { calls: 0, ms: 0 };
    times.calls++;
    times.ms += event.queryDurationMillis;
    this.statements.set(key, times);
  };

  /** What was logged since the last call, and a fresh start. */
  take(): Map<string, StatementTimes> {
    const taken = this.statements;
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

/** Posts `mails` mails with `concurrency` in flight and says where their time went. */
export async function measureIngestBreakdown(
  request: Request,
  sqlLog: SqlStatementLog,
  { mails, concurrency }: { mails: number; concurrency: number },
): Promise<IngestBreakdown> {
  const before = await stepTotals();
  sqlLog.take();
  const cpuBefore = process.cpuUsage();
  const measurement = await measure(mails, concurrency, request);
  const cpu = process.cpuUsage(cpuBefore);
  const statements = sqlLog.take();
  const after = await stepTotals();
  const stepsMs = Object.fromEntries(
    STEPS.map((step) => [step, (((after.get(step)?.sum ?? 0) - (before.get(step)?.sum ?? 0)) * 1000) / mails]),
  ) as Record<IngestStep, number>;
  return {
    mails,
    measurement,
    stepsMs,
    statements: [...statements.entries()]
      .map(([statement, { calls, ms }]) => ({ statement, perMail: calls / mails, msPerMail: ms / mails, meanMs: ms / calls }))
      .sort((a, b) => b.msPerMail - a.msPerMail),
    apiCpuMsPerMail: (cpu.user + cpu.system) / 1000 / mails,
  };
}

export { STEPS as INGEST_STEPS };
