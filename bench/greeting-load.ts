// The load of the workers and cost sections: N mails posted to the forwarder endpoint of a channel with a greeting, each
// from a sender of its own (so each a new conversation), until every conversation has reached its first wait: its
// greeting captured by the bench's SMTP capture and its stage recorded as queued. The API and each worker run in
// processes of their own (bench/load-api.ts, bench/load-worker.ts), on a task queue of the run's own, so their CPU time
// and RSS are theirs alone; with two workers both poll that queue, as two worker processes of a deployment do.
// Checked, so that a faster run is never a wrong one: every conversation greeted exactly once, no workflow failed, and,
// with two workers, both did work (Temporal records the identity, pid@host, of the worker that took each task).
// Measured: wall time to all waiting, CPU time of the workers, the API, the Temporal dev server and PostgreSQL, the
// workers' RSS, each workflow's history (events and bytes, as describe() reports them) and PostgreSQL's rows and bytes
// by table (bench/pg-usage.ts).
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { bundleWorkflowCode, DefaultLogger } from '@temporalio/worker';
import { createChannel } from '../src/db/seed.js';
import { SmtpCapture } from '../src/mail/smtp-capture.js';
import { workflowBundleOptions } from '../src/worker.js';
import { conversationWorkflowId } from '../src/workflows/ids.js';
import { forkBenchProcess } from './child-process.js';
import type { LoadApiReport, LoadApiRequest } from './load-api.js';
import type { LoadWorkerReport, LoadWorkerRequest, LoadWorkerSample } from './load-worker.js';
import { databaseUsage, usageDelta, type DatabaseUsage } from './pg-usage.js';
import { cpuSecondsOf, postgresCpuClock, temporalServerPid } from './processes.js';
import type { BenchStack } from './stack.js';
import { fixtureMail, measure, type Measurement } from './throughput.js';

const WORKER_SCRIPT = fileURLToPath(new URL('./load-worker.ts', import.meta.url));
const API_SCRIPT = fileURLToPath(new URL('./load-api.ts', import.meta.url));
/** The benchmark gives up when no further conversation reached its first wait for this long. */
const STALL_TIMEOUT_MS = 180_000;
const POLL_INTERVAL_MS = 250;
/** After all wait: time for a greeting sent twice to arrive, before the greetings are counted. */
const SETTLE_MS = 3_000;
/** Histories read and workflows described (and terminated) at once. */
const HISTORY_CONCURRENCY = 8;
/** Conversations of each run before the measured ones, on a channel of their own. */
const WARM_UP_CONVERSATIONS = 20;
const GREETING = 'Thank you for writing to us. We answer within one business day.';

export interface LoadOptions {
  conversations: number;
  workers: number;
  /** Mails posted at once. */
  concurrency: number;
}

/** One worker process's share of the run. */
export interface WorkerShare {
  pid: number;
  cpuSeconds: number;
  rssBaseline: number;
  rssSettled: number;
  /** Workflow tasks and activity attempts it took, local activities it ran (inside its workflow tasks). */
  workflowTasks: number;
  activities: number;
  localActivities: number;
  warnings: number;
  firstWarnings: string[];
}

export interface LoadRun {
  workers: number;
  conversations: number;
  /** From the first post to the last conversation at its first wait. */
  seconds: number;
  /** From the first post to the last answered (202). */
  postSeconds: number;
  shares: WorkerShare[];
  apiCpuSeconds: number;
  /** Undefined where /proc does not show the server (another machine, not Linux). */
  serverCpuSeconds: number | undefined;
  postgresCpuSeconds: number | undefined;
  /** Per conversation, from describe(): historyLength and historySizeBytes once all wait. */
  historyEvents: number[];
  historyBytes: number[];
  /** Rows and bytes by table, from before the warm-up's first post to after the processes stopped. */
  tables: DatabaseUsage;
  /** The conversations those are of: the warm-up's and the load's. */
  tablesConversations: number;
  checks: {
    /** Conversations by greetings captured: exactly one is the only right answer. */
    greetedOnce: number;
    greetedMoreThanOnce: number;
    notGreeted: number;
    /** Greetings in the outbox marked sent. */
    greetingsSent: number;
    /** Workflows of the run not running any more (failed, terminated, completed: none should be). */
    notRunning: number;
    /** Failed or timed-out workflow tasks and activity attempts, from the histories, and by kind. */
    failedTasks: number;
    failedTaskKinds: Record<string, number>;
  };
}

/** What the runs of one benchmark share: the workflow bundle (built once) and the SMTP capture. */
export interface LoadBench {
  bundlePath: string;
  capture: SmtpCapture;
  smtpUrl: string;
}

export async function prepareLoadBench(stack: BenchStack, capacity: number): Promise<LoadBench> {
  const dir = mkdtempSync(join(tmpdir(), 'mailroom-bench-load-'));
  stack.addStop(async () => rmSync(dir, { recursive: true, force: true }));
  const { code } = await bundleWorkflowCode({ ...workflowBundleOptions, logger: new DefaultLogger('WARN') });
  const bundlePath = join(dir, 'workflows.js');
  writeFileSync(bundlePath, code);
  // Keeps every greeting of every run: they are counted per conversation.
  const capture = new SmtpCapture(capacity);
  const smtp = await capture.listen();
  stack.addStop(() => capture.close());
  return { bundlePath, capture, smtpUrl: smtp.url };
}

/** The environment of a load worker process on `taskQueue` (bench/load-worker.ts reads it). */
export function loadWorkerEnv(stack: BenchStack, bench: LoadBench, taskQueue: string): NodeJS.ProcessEnv {
  return {
    ...process.env,
    DATABASE_URL: stack.databaseUrl,
    TEMPORAL_ADDRESS: stack.temporalAddress,
    TEMPORAL_TASK_QUEUE: taskQueue,
    SMTP_URL: bench.smtpUrl,
    BENCH_WORKFLOW_BUNDLE: bench.bundlePath,
  };
}

export async function runGreetingLoad(stack: BenchStack, bench: LoadBench, options: LoadOptions): Promise<LoadRun> {
  const runTag = randomUUID().slice(0, 8);
  const taskQueue = `bench-load-${runTag}`;
  const env = loadWorkerEnv(stack, bench, taskQueue);
  const api = await startLoadApi(stack, env);
  const workers = await Promise.all(Array.from({ length: options.workers }, () => startLoadWorker(stack, env)));
  const serverPid = temporalServerPid(stack.temporalAddress);
  const serverCpu = () => (serverPid === undefined ? undefined : cpuSecondsOf(serverPid));
  const postgresCpu = (await postgresCpuClock(stack.db)) ?? (() => undefined);
  let warmUpChannelId: string | undefined;
  let channelId: string | undefined;
  try {
    await sleep(2000); // pollers up
    // Before the warm-up: a backend's row counters reach the statistics up to seconds late, so the tables are measured
    // over the warm-up and the load together (the same load), the processes stopped.
    const tablesBefore = await databaseUsage(stack.db);
    // A few conversations first, on a channel of their own: the figures leave out the processes' first-use costs.
    warmUpChannelId = (
      await runConversations(stack, bench, api.url, workers, `${runTag}-warm-up`, WARM_UP_CONVERSATIONS, options)
    ).channelId;
    const baseline = await Promise.all(workers.map((worker) => worker.sample(true)));
    const cpuBefore = { api: await api.cpuSeconds(), server: serverCpu(), postgres: postgresCpu() };
    const firstCaptured = bench.capture.mails.at(-1)?.id ?? 0;

    const startedAt = Date.now();
    const load = await runConversations(stack, bench, api.url, workers, runTag, options.conversations, options);
    const seconds = (Date.now() - startedAt) / 1000;
    channelId = load.channelId;
    const { recipients, posted } = load;
    const allWaiting = await Promise.all(workers.map((worker) => worker.sample(false)));
    const cpuAfter = { api: await api.cpuSeconds(), server: serverCpu(), postgres: postgresCpu() };

    await sleep(SETTLE_MS);
    const settled = await Promise.all(workers.map((worker) => worker.sample(true)));
    const greetings = greetingsPerRecipient(bench.capture, firstCaptured, recipients);
    const rows = await stack.db
      .selectFrom('conversations as c')
      .leftJoin('outbound_messages as o', (join) =>
        join.onRef('o.conversation_id', '=', 'c.id').on('o.kind', '=', 'greeting').on('o.sent_at', 'is not', null),
      )
      .select(['c.id', 'o.id as greeting'])
      .where('c.channel_id', '=', channelId)
      .execute();
    const loadIds = [...new Set(rows.map((row) => row.id))];
    const { count: notRunning } = await stack.temporal.workflow.count(
      `TaskQueue = '${taskQueue}' AND ExecutionStatus != 'Running'`,
    );

    await Promise.all([api.stop(), ...workers.map((worker) => worker.stop())]);
    await sleep(1500); // the backends of the stopped processes have flushed their statistics
    const tables = usageDelta(tablesBefore, await databaseUsage(stack.db));

    const histories = await readHistories(stack, loadIds);
    const shares = workers.map((worker, index): WorkerShare => {
      const work = histories.byIdentity.get(worker.pid) ?? { workflowTasks: 0, activities: 0, localActivities: 0 };
      return {
        pid: worker.pid,
        cpuSeconds: allWaiting[index]!.cpuSeconds - baseline[index]!.cpuSeconds,
        rssBaseline: baseline[index]!.rss,
        rssSettled: settled[index]!.rss,
        ...work,
        warnings: settled[index]!.warnings,
        firstWarnings: settled[index]!.firstWarnings,
      };
    });
    const difference = (after: number | undefined, before: number | undefined) =>
      after === undefined || before === undefined ? undefined : after - before;
    return {
      workers: options.workers,
      conversations: options.conversations,
      seconds,
      postSeconds: posted.seconds,
      shares,
      apiCpuSeconds: cpuAfter.api - cpuBefore.api,
      serverCpuSeconds: difference(cpuAfter.server, cpuBefore.server),
      postgresCpuSeconds: difference(cpuAfter.postgres, cpuBefore.postgres),
      historyEvents: histories.events,
      historyBytes: histories.bytes,
      tables,
      tablesConversations: WARM_UP_CONVERSATIONS + options.conversations,
      checks: {
        greetedOnce: [...recipients].filter((address) => greetings.get(address) === 1).length,
        greetedMoreThanOnce: [...recipients].filter((address) => (greetings.get(address) ?? 0) > 1).length,
        notGreeted: [...recipients].filter((address) => !greetings.has(address)).length,
        greetingsSent: rows.filter((row) => row.greeting !== null).length,
        notRunning,
        failedTasks: histories.failedTasks,
        failedTaskKinds: histories.failedTaskKinds,
      },
    };
  } finally {
    await Promise.all([api.stop(), ...workers.map((worker) => worker.stop())]);
    const channelIds = [warmUpChannelId, channelId].filter((id) => id !== undefined);
    if (channelIds.length > 0) {
      const started = await stack.db.selectFrom('conversations').select('id').where('channel_id', 'in', channelIds).execute();
      await terminateAll(
        stack,
        started.map((row) => row.id),
      );
    }
  }
}

/**
 * Posts `count` mails to a new channel with a greeting, each from a sender of its own, and waits until every
 * conversation is greeted and queued.
 */
async function runConversations(
  stack: BenchStack,
  bench: LoadBench,
  apiUrl: string,
  workers: LoadWorker[],
  runTag: string,
  count: number,
  { concurrency }: LoadOptions,
): Promise<{ channelId: string; recipients: Set<string>; posted: Measurement }> {
  const channel = await createGreetingChannel(stack, runTag);
  const firstCaptured = bench.capture.mails.at(-1)?.id ?? 0;
  const recipients = new Set<string>();
  let next = 0;
  const url = `${apiUrl}/v1/channels/${channel.id}/inbound`;
  const headers = { authorization: `Bearer ${channel.forwarderSecret}`, 'content-type': 'message/rfc822' };
  const posting = measure(count, concurrency, async () => {
    const index = next++;
    const address = `customer-${runTag}-${index}@example.com`;
    recipients.add(address);
    const raw = fixtureMail
      .replace(/^Message-ID: .*$/m, `Message-ID: <bench-load-${runTag}-${index}@mail.example.com>`)
      .replace(/^From: .*$/m, `From: "Customer ${index}" <${address}>`);
    const response = await fetch(url, { method: 'POST', headers, body: Buffer.from(raw, 'latin1') });
    const body = await response.text();
    if (response.status !== 202) throw new Error(`HTTP ${response.status}: ${body}`);
  });
  await untilAllWait(stack, bench.capture, channel.id, firstCaptured, count, posting, workers);
  const posted = await posting;
  if (posted.failures > 0) throw new Error(`${posted.failures} of ${posted.requests} posts failed: ${posted.firstFailure}`);
  return { channelId: channel.id, recipients, posted };
}

/** A channel with a greeting; the flood limits lifted, since every customer of the load writes from example.com. */
async function createGreetingChannel(stack: BenchStack, runTag: string) {
  const channel = await createChannel(stack.db, {
    accountId: stack.accountId,
    name: `Bench load ${runTag}`,
    emailAddress: `load-${runTag}@acme.example`,
    greeting: { text: GREETING },
  });
  await stack.db
    .updateTable('channels')
    .set({ automatic_mail_limit_per_domain_per_hour: 1_000_000, automatic_mail_limit_per_channel_per_hour: 1_000_000 })
    .where('id', '=', channel.id)
    .execute();
  return channel;
}

/** Captured mails after `afterId` (this run's), counted per recipient among the run's senders. */
function greetingsPerRecipient(capture: SmtpCapture, afterId: number, recipients: Set<string>): Map<string, number> {
  const counts = new Map<string, number>();
  for (const mail of capture.mails) {
    if (mail.id <= afterId) continue;
    for (const to of mail.envelope.to) {
      if (recipients.has(to)) counts.set(to, (counts.get(to) ?? 0) + 1);
    }
  }
  return counts;
}

/** Until every conversation is greeted and queued; fails when the posts fail or nothing moves for STALL_TIMEOUT_MS. */
async function untilAllWait(
  stack: BenchStack,
  capture: SmtpCapture,
  channelId: string,
  afterId: number,
  count: number,
  posting: Promise<unknown>,
  workers: LoadWorker[],
): Promise<void> {
  let postFailure: unknown;
  posting.catch((error: unknown) => (postFailure = error));
  let progress = -1;
  let progressAt = Date.now();
  for (;;) {
    if (postFailure) throw postFailure;
    const greeted = capture.mails.filter((mail) => mail.id > afterId).length;
    const queued = await stack.db
      .selectFrom('conversations')
      .select((eb) => eb.fn.countAll<string>().as('n'))
      .where('channel_id', '=', channelId)
      .where('stage', '=', 'queued')
      .executeTakeFirstOrThrow();
    const waiting = Math.min(greeted, Number(queued.n));
    if (greeted >= count && Number(queued.n) >= count) return;
    if (waiting > progress) {
      progress = waiting;
      progressAt = Date.now();
    } else if (Date.now() - progressAt > STALL_TIMEOUT_MS) {
      const samples = await Promise.all(workers.map((worker) => worker.sample(false)));
      throw new Error(
        `only ${greeted} of ${count} greeted and ${queued.n} queued, no progress for ${STALL_TIMEOUT_MS / 1000} s; ` +
          `worker warnings: ${samples.map((sample) => sample.firstWarnings.join(' | ') || 'none').join('; ')}`,
      );
    }
    await sleep(POLL_INTERVAL_MS);
  }
}

interface Histories {
  events: number[];
  bytes: number[];
  failedTasks: number;
  failedTaskKinds: Record<string, number>;
  /** Work per worker process, by the pid in the identity Temporal recorded. */
  byIdentity: Map<number, { workflowTasks: number; activities: number; localActivities: number }>;
}

/** Describes each conversation's workflow (history length and bytes) and reads its history: who did what, what failed. */
async function readHistories(stack: BenchStack, conversationIds: string[]): Promise<Histories> {
  const result: Histories = { events: [], bytes: [], failedTasks: 0, failedTaskKinds: {}, byIdentity: new Map() };
  const failed = (kind: string, times = 1) => {
    if (times <= 0) return;
    result.failedTasks += times;
    result.failedTaskKinds[kind] = (result.failedTaskKinds[kind] ?? 0) + times;
  };
  const shareOf = (identity: string | null | undefined) => {
    const pid = Number(identity?.slice(0, identity.indexOf('@')));
    let share = result.byIdentity.get(pid);
    if (!share) result.byIdentity.set(pid, (share = { workflowTasks: 0, activities: 0, localActivities: 0 }));
    return share;
  };
  let next = 0;
  const read = await measure(conversationIds.length, HISTORY_CONCURRENCY, async () => {
    const handle = stack.temporal.workflow.getHandle(conversationWorkflowId(conversationIds[next++]!));
    const description = await handle.describe();
    result.events.push(description.historyLength);
    result.bytes.push(description.historySize ?? Number.NaN);
    const activityTypes = new Map<number, string>();
    // A local activity's marker follows the completion of the workflow task that ran it, which names the worker.
    let completedBy: string | null | undefined;
    for (const event of (await handle.fetchHistory()).events ?? []) {
      if (event.workflowTaskStartedEventAttributes) {
        shareOf(event.workflowTaskStartedEventAttributes.identity).workflowTasks++;
      } else if (event.workflowTaskCompletedEventAttributes) {
        completedBy = event.workflowTaskCompletedEventAttributes.identity;
      } else if (event.markerRecordedEventAttributes?.markerName === 'core_local_activity') {
        shareOf(completedBy).localActivities++;
      } else if (event.activityTaskScheduledEventAttributes) {
        activityTypes.set(Number(event.eventId), event.activityTaskScheduledEventAttributes.activityType?.name ?? '');
      } else if (event.activityTaskStartedEventAttributes) {
        const { identity, scheduledEventId, attempt } = event.activityTaskStartedEventAttributes;
        shareOf(identity).activities++;
        // Retries leave no events of their own: the attempt that started last says how many went before.
        failed(`${activityTypes.get(Number(scheduledEventId))} retried`, (attempt ?? 1) - 1);
      } else if (event.workflowTaskFailedEventAttributes) {
        failed(`workflow task failed (${event.workflowTaskFailedEventAttributes.cause ?? 'no cause'})`);
      } else if (event.workflowTaskTimedOutEventAttributes) {
        failed('workflow task timed out');
      } else if (event.activityTaskFailedEventAttributes || event.activityTaskTimedOutEventAttributes) {
        failed('activity failed or timed out');
      }
    }
  });
  if (read.failures > 0) throw new Error(`${read.failures} workflows could not be read: ${read.firstFailure}`);
  return result;
}

/** Terminates the run's workflows, so the next run and section start on a quiet server; one already gone is fine. */
async function terminateAll(stack: BenchStack, conversationIds: string[]): Promise<void> {
  let next = 0;
  const result = await measure(conversationIds.length, HISTORY_CONCURRENCY, async () => {
    try {
      await stack.temporal.workflow.getHandle(conversationWorkflowId(conversationIds[next++]!)).terminate('benchmark finished');
    } catch (error) {
      if ((error as Error).name !== 'WorkflowNotFoundError') throw error;
    }
  });
  if (result.failures > 0) console.error(`bench: ${result.failures} workflows could not be terminated: ${result.firstFailure}`);
}

export interface LoadWorker {
  pid: number;
  sample(gc: boolean): Promise<LoadWorkerSample>;
  /** Shuts the worker down and waits for the process to exit; safe to call twice. */
  stop(): Promise<void>;
}

/** A worker process (bench/load-worker.ts) polling env.TEMPORAL_TASK_QUEUE; stopped with the stack at the latest. */
export async function startLoadWorker(stack: BenchStack, env: NodeJS.ProcessEnv): Promise<LoadWorker> {
  const child = ipcChild<LoadWorkerRequest, LoadWorkerReport>(stack, WORKER_SCRIPT, env, ['--expose-gc']);
  const ready = await child.ready;
  if (ready.type !== 'ready' || !('pid' in ready)) throw new Error('the load worker did not say its pid');
  return {
    pid: ready.pid,
    sample: async (gc) => {
      const {
        type: _type,
        id: _id,
        ...sample
      } = (await child.ask({ type: 'sample', gc })) as LoadWorkerReport & {
        type: 'sample';
      };
      return sample;
    },
    stop: child.stop,
  };
}

interface LoadApi {
  url: string;
  cpuSeconds(): Promise<number>;
  stop(): Promise<void>;
}

async function startLoadApi(stack: BenchStack, env: NodeJS.ProcessEnv): Promise<LoadApi> {
  const child = ipcChild<LoadApiRequest, LoadApiReport>(stack, API_SCRIPT, env, []);
  const ready = await child.ready;
  if (ready.type !== 'ready' || !('url' in ready)) throw new Error('the load API did not say its URL');
  return {
    url: ready.url,
    cpuSeconds: async () => ((await child.ask({ type: 'cpu' })) as LoadApiReport & { type: 'cpu' }).cpuSeconds,
    stop: child.stop,
  };
}

type Asked<Request> = Request extends { id: number } ? Omit<Request, 'id'> : never;

/**
 * A bench process that says `ready` (or `failed`) first and answers each request carrying an id with a report of the
 * same id; `{ type: 'stop' }` ends it.
 */
function ipcChild<Request extends { type: string }, Report extends { type: string }>(
  stack: BenchStack,
  script: string,
  env: NodeJS.ProcessEnv,
  execArgv: string[],
) {
  let failure: string | undefined;
  const pending = new Map<number, { resolve(report: Report): void; reject(error: Error): void }>();
  const gone = () => new Error(`${script} exited: ${failure ?? 'see its output above'}`);
  const { child, exited, stop } = forkBenchProcess(stack, script, {
    execArgv,
    env,
    stopMessage: { type: 'stop' },
    onExit: () => {
      for (const { reject } of pending.values()) reject(gone());
      pending.clear();
    },
  });
  const ready = new Promise<Report>((resolve, reject) => {
    child.on('message', (report: Report & { id?: number; message?: string }) => {
      if (report.type === 'ready') resolve(report);
      else if (report.type === 'failed') failure = report.message;
      else if (report.id !== undefined) {
        pending.get(report.id)?.resolve(report);
        pending.delete(report.id);
      }
    });
    void exited.then(() => reject(gone()));
  });
  let nextId = 1;
  const ask = (request: Asked<Request>) =>
    new Promise<Report>((resolve, reject) => {
      if (!child.connected) return reject(gone());
      const id = nextId++;
      pending.set(id, { resolve, reject });
      child.send({ ...request, id });
    });
  return { ready, ask, stop };
}
