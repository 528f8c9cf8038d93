// Many open conversations waiting on a durable timer, on one worker process, next to as many bare workflows that only
// sleep: how long until all of them wait, and what that costs the worker in memory (RSS) and CPU.
//
// Mailroom: a channel with business hours switched on and closed for the next 60 days (greeting and CSAT off), N
// conversations seeded in bulk (a contact, the conversation, one inbound mail each), then one signalWithStart per
// conversation as the ingest sends it. Each workflow triages, routes to people, checks the hours, sends the
// out-of-office note and waits on the timer "Until business hours open". The note goes out by SMTP into an SmtpCapture
// in this process: smtp-server holds each new connection 100 ms before its greeting (early-talker check) and the
// transport opens one connection per mail, so that adds ~0.1 s of latency to each conversation, but no CPU to speak of.
// Bare: bench/workflows/bare-timer.ts, signalWithStart and `await sleep('1 day')`, on a worker with no activities.
// Each workload gets a fresh worker process (bench/waiting-worker.ts) with the SDK's default options; its baseline RSS is
// taken once it polls, before anything starts. "Waiting" is the moment the worker starts the workflow's first timer
// (bench/workflows/timer-probe.ts, bundled into both); for Mailroom the database and the visibility store confirm it.
// Besides RSS: the CPU time of the worker process and of the Temporal dev server (from /proc, Linux only), and, from
// the histories of a sample, how long each kind of task queued and ran. All workflows are terminated before the next
// workload starts (and the in-memory dev server goes with the stack if the run fails).
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { bundleWorkflowCode, DefaultLogger } from '@temporalio/worker';
import { sql } from 'kysely';
import type { Db } from '../src/db/connection.js';
import { createChannel } from '../src/db/seed.js';
import { businessHoursSchema, WEEKDAYS } from '../src/domain/business-hours.js';
import { SmtpCapture } from '../src/mail/smtp-capture.js';
import { workflowBundleOptions, workflowBundleOptionsOf } from '../src/worker.js';
import { customerConversation } from '../src/workflows/conversation.js';
import { conversationWorkflowId } from '../src/workflows/ids.js';
import { inboundMessageSignal } from '../src/workflows/messages.js';
import { ChannelIdAttribute, StageAttribute, StatusAttribute } from '../src/workflows/search-attributes.js';
import { forkBenchProcess } from './child-process.js';
import type { BenchStack } from './stack.js';
import { fixtureMail, measure, type Request } from './throughput.js';
import type { WorkerReport, WorkerRequest, WorkerSample } from './waiting-worker.js';
import { bareTimerWorkflow, bareWakeSignal } from './workflows/bare-timer.js';
import { cpuSecondsOf, temporalServerPid } from './processes.js';

export type WaitingWorkload = 'mailroom' | 'bare';

export interface WaitingFigures {
  workload: WaitingWorkload;
  n: number;
  /** From the first signalWithStart to the last workflow waiting on its timer. */
  startSeconds: number;
  /** From the first signalWithStart to the last one answered. */
  requestSeconds: number;
  /** The worker's defaults, as it reported them. */
  maxCachedWorkflows: number;
  maxConcurrentWorkflowTaskExecutions: number;
  heapSizeLimit: number;
  /** Idle worker, before the first start (after a GC). */
  baseline: WorkerSample;
  /** The moment the last one started waiting. */
  allWaiting: WorkerSample;
  /** After WAITING_IDLE_SECONDS more and a GC. */
  settled: WorkerSample;
  /** CPU seconds the Temporal dev server spent from the baseline to all waiting; undefined where /proc is missing. */
  serverCpuSeconds: number | undefined;
  /** Seconds to terminate them all afterwards. */
  terminateSeconds: number;
  /** Where the time went, from the histories of a sample of them. */
  breakdown: HistoryBreakdown;
  /** Mailroom only: the seeding, and the cross-checks once all wait. */
  mailroom?: {
    seedSeconds: number;
    /** conversations.stage = 'waiting_for_hours' (set by checkBusinessHours). */
    dbWaiting: number;
    /** Out-of-office notes marked sent in the outbox, and received by the SMTP capture. */
    outOfOfficeSent: number;
    outOfOfficeCaptured: number;
    /** Running workflows with MailroomStage = waiting_for_hours in Temporal's visibility store. */
    visibilityWaiting: number;
  };
}

export interface HistoryBreakdown {
  sampled: number;
  /** Per workflow: from its first history event (the start) to its timer. */
  toTimerMs: number[];
  steps: StepTiming[];
}

/** One kind of task over the sampled histories: queue = scheduled → started, run = started → completed. */
export interface StepTiming {
  step: string;
  queueMs: number[];
  runMs: number[];
  /** Failed or timed-out attempts (activities: the attempts before the one that completed). */
  failures: number;
}

export interface WaitingOptions {
  count: number;
  concurrency: number;
}

/** How long the worker idles once all wait, before the settled sample. */
export const WAITING_IDLE_SECONDS = 10;
/** The benchmark gives up when no further workflow started waiting for this long. */
const STALL_TIMEOUT_MS = 180_000;
const SAMPLE_INTERVAL_MS = 250;
const SEED_BATCH = 1000;
/** Histories read for the breakdown, spread evenly over the start order. */
const HISTORY_SAMPLE = 50;
const DAY_MS = 86_400_000;

const cpuProfileDirectory = process.env.BENCH_WORKER_CPU_PROFILE;
const WORKER_SCRIPT = fileURLToPath(new URL('./waiting-worker.ts', import.meta.url));
const BARE_WORKFLOWS_PATH = fileURLToPath(new URL('./workflows/bare-timer.ts', import.meta.url));
const TIMER_PROBE_PATH = fileURLToPath(new URL('./workflows/timer-probe.ts', import.meta.url));

/** Mailroom first, then bare, each on a fresh worker process; everything it starts is added to the stack's stop(). */
export async function measureWaitingWorkflows(stack: BenchStack, options: WaitingOptions): Promise<WaitingFigures[]> {
  const bundleDir = mkdtempSync(join(tmpdir(), 'mailroom-bench-waiting-'));
  stack.addStop(async () => rmSync(bundleDir, { recursive: true, force: true }));
  const bundles = {
    mailroom: await writeBundle(bundleDir, 'mailroom', workflowBundleOptions),
    bare: await writeBundle(bundleDir, 'bare', workflowBundleOptionsOf(BARE_WORKFLOWS_PATH)),
  };
  const capture = new SmtpCapture();
  const smtp = await capture.listen();
  stack.addStop(() => capture.close());
  const databaseUrl = await databaseUrlOf(stack.db);

  const runTag = randomUUID().slice(0, 8);
  const channelId = await createClosedChannel(stack, runTag);
  const seedStartedAt = Date.now();
  const conversations = await seedConversations(stack.db, stack.accountId, channelId, options.count, runTag);
  const seedSeconds = (Date.now() - seedStartedAt) / 1000;

  const mailroomQueue = `bench-waiting-mailroom-${runTag}`;
  const mailroom = await measureWorkload(stack, options, {
    workload: 'mailroom',
    env: {
      BENCH_WORKFLOW_BUNDLE: bundles.mailroom,
      TEMPORAL_TASK_QUEUE: mailroomQueue,
      DATABASE_URL: databaseUrl,
      SMTP_URL: smtp.url,
    },
    workflowIds: conversations.map(({ conversationId }) => conversationWorkflowId(conversationId)),
    start: (index) => {
      const { conversationId, inboundMessageId } = conversations[index]!;
      // As the ingest starts it (src/ingest/ingest.ts), on the worker's queue.
      return stack.temporal.workflow.signalWithStart(customerConversation, {
        workflowId: conversationWorkflowId(conversationId),
        taskQueue: mailroomQueue,
        args: [{ conversationId }],
        signal: inboundMessageSignal,
        signalArgs: [
          {
            inboundMessageId,
            facts: { classification: 'ordinary', senderVerdict: 'ordinary', asksForPerson: false, confirmsResolution: false },
          },
        ],
        staticSummary: "Email conversation on channel 'Bench waiting': Invoice for März is missing",
        staticDetails: `Conversation ${conversationId}, channel ${channelId}`,
        typedSearchAttributes: [
          { key: ChannelIdAttribute, value: channelId },
          { key: StatusAttribute, value: 'open' },
          { key: StageAttribute, value: 'triage' },
        ],
      });
    },
    checks: async () => {
      const counted = await stack.db
        .selectFrom('conversations')
        .select((eb) => eb.fn.countAll<string>().as('n'))
        .where('channel_id', '=', channelId)
        .where('stage', '=', 'waiting_for_hours')
        .executeTakeFirstOrThrow();
      const sent = await stack.db
        .selectFrom('outbound_messages as o')
        .innerJoin('conversations as c', 'c.id', 'o.conversation_id')
        .select((eb) => eb.fn.countAll<string>().as('n'))
        .where('c.channel_id', '=', channelId)
        .where('o.kind', '=', 'out_of_office')
        .where('o.sent_at', 'is not', null)
        .executeTakeFirstOrThrow();
      const { count: visibilityWaiting } = await stack.temporal.workflow.count(
        `TaskQueue = '${mailroomQueue}' AND ExecutionStatus = 'Running' AND ${StageAttribute.name} = 'waiting_for_hours'`,
      );
      return {
        seedSeconds,
        dbWaiting: Number(counted.n),
        outOfOfficeSent: Number(sent.n),
        outOfOfficeCaptured: capture.mails.at(-1)?.id ?? 0,
        visibilityWaiting,
      };
    },
  });

  const bareQueue = `bench-waiting-bare-${runTag}`;
  const bareIds = Array.from({ length: options.count }, (_, index) => `bench-waiting-bare-${runTag}-${index}`);
  const bare = await measureWorkload(stack, options, {
    workload: 'bare',
    env: { BENCH_WORKFLOW_BUNDLE: bundles.bare, TEMPORAL_TASK_QUEUE: bareQueue },
    workflowIds: bareIds,
    start: (index) =>
      stack.temporal.workflow.signalWithStart(bareTimerWorkflow, {
        workflowId: bareIds[index]!,
        taskQueue: bareQueue,
        args: [],
        signal: bareWakeSignal,
        signalArgs: [],
      }),
  });
  return [mailroom, bare];
}

interface Workload {
  workload: WaitingWorkload;
  env: Record<string, string>;
  workflowIds: string[];
  /** Starts the index-th workflow. */
  start(index: number): Promise<unknown>;
  checks?(): Promise<NonNullable<WaitingFigures['mailroom']>>;
}

async function measureWorkload(
  stack: BenchStack,
  { count, concurrency }: WaitingOptions,
  spec: Workload,
): Promise<WaitingFigures> {
  const serverPid = temporalServerPid(stack.temporalAddress);
  const serverCpu = () => (serverPid === undefined ? undefined : cpuSecondsOf(serverPid));
  const worker = await startWorker(stack, spec.workload, { TEMPORAL_ADDRESS: stack.temporalAddress, ...spec.env });
  try {
    await sleep(2000); // pollers up, start-up garbage collectable
    const baseline = await worker.sample(true);
    const serverCpuAtBaseline = serverCpu();

    let next = 0;
    const request: Request = async () => {
      await spec.start(next++);
    };
    const startedAt = Date.now();
    const starting = measure(count, concurrency, request);
    const allWaiting = await worker.untilWaiting(count, starting);
    const serverCpuAllWaiting = serverCpu();
    const requests = await starting;
    if (requests.failures > 0) {
      throw new Error(`${spec.workload}: ${requests.failures} of ${count} starts failed; first: ${requests.firstFailure}`);
    }
    const startSeconds = (allWaiting.lastWaitingAt - startedAt) / 1000;

    await sleep(WAITING_IDLE_SECONDS * 1000);
    const settled = await worker.sample(true);
    const mailroom = await spec.checks?.();
    await worker.stop();
    const breakdown = await historyBreakdown(stack, spec.workflowIds, HISTORY_SAMPLE);

    const terminateStartedAt = Date.now();
    await terminateAll(stack, spec.workflowIds, concurrency);
    return {
      workload: spec.workload,
      n: count,
      startSeconds,
      requestSeconds: requests.seconds,
      serverCpuSeconds:
        serverCpuAtBaseline !== undefined && serverCpuAllWaiting !== undefined
          ? serverCpuAllWaiting - serverCpuAtBaseline
          : undefined,
      ...worker.defaults,
      baseline,
      allWaiting,
      settled,
      terminateSeconds: (Date.now() - terminateStartedAt) / 1000,
      breakdown,
      ...(mailroom ? { mailroom } : {}),
    };
  } finally {
    await worker.stop();
  }
}

interface WorkerProcess {
  defaults: { maxCachedWorkflows: number; maxConcurrentWorkflowTaskExecutions: number; heapSizeLimit: number };
  sample(gc: boolean): Promise<WorkerSample>;
  /** Samples until `count` workflows wait; the peak RSS is in the last sample. Fails early if `starting` fails. */
  untilWaiting(count: number, starting: Promise<unknown>): Promise<WorkerSample>;
  /** Shuts the worker down and waits for the process to exit; safe to call twice. */
  stop(): Promise<void>;
}

async function startWorker(stack: BenchStack, workload: WaitingWorkload, env: Record<string, string>): Promise<WorkerProcess> {
  let failure: string | undefined;
  const gone = () => new Error(`the ${workload} worker exited: ${failure ?? 'see its output above'}`);
  const pending = new Map<number, { resolve(sample: WorkerSample): void; reject(error: Error): void }>();
  const { child, exited, stop } = forkBenchProcess(stack, WORKER_SCRIPT, {
    // BENCH_WORKER_CPU_PROFILE=<directory>: each worker process writes its CPU profile there when it exits.
    execArgv: ['--expose-gc', ...(cpuProfileDirectory ? ['--cpu-prof', `--cpu-prof-dir=${cpuProfileDirectory}`] : [])],
    env: { ...process.env, ...env, BENCH_WORKER_KIND: workload },
    stopMessage: { type: 'stop' } satisfies WorkerRequest,
    onExit: () => {
      for (const { reject } of pending.values()) reject(gone());
      pending.clear();
    },
  });
  let nextId = 1;
  const ready = new Promise<WorkerProcess['defaults']>((resolve, reject) => {
    child.on('message', (report: WorkerReport) => {
      if (report.type === 'ready') {
        const { type: _type, ...defaults } = report;
        resolve(defaults);
      } else if (report.type === 'failed') failure = report.message;
      else if (report.type === 'sample') {
        const { type: _type, id, ...sample } = report;
        pending.get(id)?.resolve(sample);
        pending.delete(id);
      }
    });
    void exited.then(() => reject(gone()));
  });

  const defaults = await ready;

  const sample = (gc: boolean) =>
    new Promise<WorkerSample>((resolve, reject) => {
      if (!child.connected) return reject(gone());
      const id = nextId++;
      pending.set(id, { resolve, reject });
      child.send({ type: 'sample', id, gc } satisfies WorkerRequest);
    });

  return {
    defaults,
    sample,
    stop,
    async untilWaiting(count, starting) {
      let startFailure: unknown;
      starting.catch((error: unknown) => (startFailure = error));
      let last = await sample(false);
      let progressAt = Date.now();
      while (last.waiting < count) {
        if (startFailure) throw startFailure;
        await sleep(SAMPLE_INTERVAL_MS);
        const current = await sample(false);
        if (current.waiting > last.waiting) progressAt = Date.now();
        last = current;
        if (Date.now() - progressAt > STALL_TIMEOUT_MS) {
          throw new Error(
            `${workload}: only ${last.waiting} of ${count} workflows wait, none more for ${STALL_TIMEOUT_MS / 1000} s; ` +
              `worker warnings: ${last.warnings} (${last.firstWarnings.join(' | ') || 'none'})`,
          );
        }
      }
      return last;
    },
  };
}

/** The workflow bundle with the timer probe, written to a file for the worker process's `workflowBundle.codePath`. */
async function writeBundle(dir: string, name: string, options: typeof workflowBundleOptions): Promise<string> {
  const { code } = await bundleWorkflowCode({
    ...options,
    workflowInterceptorModules: [TIMER_PROBE_PATH],
    logger: new DefaultLogger('WARN'),
  });
  const path = join(dir, `${name}.js`);
  writeFileSync(path, code);
  return path;
}

/**
 * The URL of the stack's database, for the worker process: the stack made it on DATABASE_URL's server if that is set,
 * otherwise on the private cluster (trust auth, loopback), exactly as bench/stack.ts does.
 */
async function databaseUrlOf(db: Db): Promise<string> {
  const { rows } = await sql<{ database: string; user: string; port: string }>`
    select current_database() as database, current_user as "user", current_setting('port') as port`.execute(db);
  const { database, user, port } = rows[0]!;
  const url = new URL(process.env.DATABASE_URL ?? `postgres://${user}@127.0.0.1:${port}/`);
  url.pathname = `/${database}`;
  return url.toString();
}

/** Business hours on, every day 00:00–24:00 UTC, but the next 60 dates closed: a conversation now waits ~60 days. */
async function createClosedChannel(stack: BenchStack, runTag: string): Promise<string> {
  const channel = await createChannel(stack.db, {
    accountId: stack.accountId,
    name: 'Bench waiting',
    emailAddress: `waiting-${runTag}@acme.example`,
  });
  const today = Date.now();
  const hours = businessHoursSchema.parse({
    timeZone: 'UTC',
    weekly: Object.fromEntries(WEEKDAYS.map((day) => [day, [{ start: '00:00', end: '24:00' }]])),
    closedDates: Array.from({ length: 60 }, (_, days) => new Date(today + days * DAY_MS).toISOString().slice(0, 10)),
  });
  await stack.db
    .updateTable('channels')
    .set({ business_hours_enabled: true, business_hours: JSON.stringify(hours) })
    .where('id', '=', channel.id)
    .execute();
  return channel.id;
}

const FIXTURE_BODY = fixtureMail.slice(fixtureMail.indexOf('\n\n') + 2);

/** A contact, an open conversation in triage and its one threaded inbound mail each, as the ingest leaves them. */
async function seedConversations(
  db: Db,
  accountId: string,
  channelId: string,
  count: number,
  runTag: string,
): Promise<Array<{ conversationId: string; inboundMessageId: string }>> {
  const seeded: Array<{ conversationId: string; inboundMessageId: string }> = [];
  const channel = await db.selectFrom('channels').select('email_address').where('id', '=', channelId).executeTakeFirstOrThrow();
  for (let from = 0; from < count; from += SEED_BATCH) {
    const batch = Array.from({ length: Math.min(SEED_BATCH, count - from) }, (_, offset) => {
      const index = from + offset;
      const address = `customer-${runTag}-${index}@example.com`;
      const messageId = `<bench-waiting-${runTag}-${index}@mail.example.com>`;
      const raw = Buffer.from(
        fixtureMail
          .replace(/^Message-ID: .*$/m, `Message-ID: ${messageId}`)
          .replace(/^From: .*$/m, `From: "Customer ${index}" <${address}>`),
        'latin1',
      );
      return {
        contactId: randomUUID(),
        conversationId: randomUUID(),
        inboundMessageId: randomUUID(),
        address,
        name: `Customer ${index}`,
        messageId,
        raw,
      };
    });
    await db.transaction().execute(async (trx) => {
      await trx
        .insertInto('contacts')
        .values(batch.map((row) => ({ id: row.contactId, account_id: accountId, email: row.address, name: row.name })))
        .execute();
      await trx
        .insertInto('conversations')
        .values(
          batch.map((row) => ({
            id: row.conversationId,
            account_id: accountId,
            channel_id: channelId,
            contact_id: row.contactId,
            subject: 'Invoice for März is missing',
            status: 'open' as const,
            stage: 'triage' as const,
            updated_at: new Date(),
          })),
        )
        .execute();
      await trx
        .insertInto('inbound_messages')
        .values(
          batch.map((row) => ({
            id: row.inboundMessageId,
            channel_id: channelId,
            message_id: row.messageId,
            raw: row.raw,
            size_bytes: row.raw.length,
            status: 'threaded' as const,
            conversation_id: row.conversationId,
            classification: 'ordinary' as const,
            from_address: row.address,
            from_name: row.name,
            subject: 'Invoice for März is missing',
            text_body: FIXTURE_BODY,
            reply_text: FIXTURE_BODY,
            to_addresses: JSON.stringify([channel.email_address]),
            received_via: 'forwarder' as const,
          })),
        )
        .execute();
    });
    seeded.push(...batch.map(({ conversationId, inboundMessageId }) => ({ conversationId, inboundMessageId })));
  }
  return seeded;
}

/**
 * Reads the histories of `sampleSize` workflows spread over the start order: how long each waited for a worker and ran,
 * per activity type and for the first workflow task (the normal queue) apart from the later ones (the sticky queue).
 */
async function historyBreakdown(stack: BenchStack, workflowIds: string[], sampleSize: number): Promise<HistoryBreakdown> {
  const stride = Math.max(1, Math.floor(workflowIds.length / sampleSize));
  const sample = workflowIds.filter((_, index) => index % stride === 0).slice(0, sampleSize);
  const steps = new Map<string, StepTiming>();
  const stepOf = (name: string) => {
    let step = steps.get(name);
    if (!step) steps.set(name, (step = { step: name, queueMs: [], runMs: [], failures: 0 }));
    return step;
  };
  const toTimerMs: number[] = [];
  for (const workflowId of sample) {
    const events = (await stack.temporal.workflow.getHandle(workflowId).fetchHistory()).events ?? [];
    const startedAt = tsToMs(events[0]?.eventTime);
    // Scheduled and started events by id: when, and which step they belong to.
    const seen = new Map<number, { at: number; step: StepTiming }>();
    let workflowTasks = 0;
    let timerSeen = false;
    let taskStartedAt = startedAt;
    for (const event of events) {
      const at = tsToMs(event.eventTime);
      const id = Number(event.eventId);
      const queued = (scheduledId: unknown) => {
        const scheduled = seen.get(Number(scheduledId));
        if (!scheduled) return;
        scheduled.step.queueMs.push(at - scheduled.at);
        seen.set(id, { at, step: scheduled.step });
      };
      const ran = (startedId: unknown) => {
        const started = seen.get(Number(startedId));
        if (started) started.step.runMs.push(at - started.at);
      };
      const failed = (scheduledId: unknown) => {
        const scheduled = seen.get(Number(scheduledId));
        if (scheduled) scheduled.step.failures++;
      };
      if (event.workflowTaskScheduledEventAttributes) {
        seen.set(id, { at, step: stepOf(workflowTasks++ === 0 ? 'first workflow task' : 'later workflow tasks') });
      } else if (event.workflowTaskStartedEventAttributes) {
        taskStartedAt = at;
        queued(event.workflowTaskStartedEventAttributes.scheduledEventId);
      } else if (event.workflowTaskCompletedEventAttributes) {
        ran(event.workflowTaskCompletedEventAttributes.startedEventId);
      } else if (event.workflowTaskFailedEventAttributes) {
        failed(event.workflowTaskFailedEventAttributes.scheduledEventId);
      } else if (event.workflowTaskTimedOutEventAttributes) {
        failed(event.workflowTaskTimedOutEventAttributes.scheduledEventId);
      } else if (event.activityTaskScheduledEventAttributes) {
        seen.set(id, { at, step: stepOf(`activity ${event.activityTaskScheduledEventAttributes.activityType?.name}`) });
      } else if (event.activityTaskStartedEventAttributes) {
        // Retries leave no events of their own: the started event counts the attempts.
        const { scheduledEventId, attempt } = event.activityTaskStartedEventAttributes;
        queued(scheduledEventId);
        const scheduled = seen.get(Number(scheduledEventId));
        if (scheduled && attempt) scheduled.step.failures += attempt - 1;
      } else if (event.activityTaskCompletedEventAttributes) {
        ran(event.activityTaskCompletedEventAttributes.startedEventId);
      } else if (event.activityTaskFailedEventAttributes) {
        failed(event.activityTaskFailedEventAttributes.scheduledEventId);
      } else if (event.activityTaskTimedOutEventAttributes) {
        failed(event.activityTaskTimedOutEventAttributes.scheduledEventId);
      } else if (event.markerRecordedEventAttributes?.markerName === 'core_local_activity') {
        // A local activity runs inside the workflow task; its marker's completion time is the task's start (the
        // server's clock) plus how long it ran, so that difference is its run time. It has no queue of the server's.
        const marker = localActivityMarker(event.markerRecordedEventAttributes.details?.data?.payloads?.[0]?.data);
        if (marker) {
          const step = stepOf(`local activity ${marker.activity_type}`);
          step.runMs.push(tsToMs(marker.complete_time) - taskStartedAt);
          step.failures += Math.max(0, (marker.attempt ?? 1) - 1);
        }
      } else if (event.timerStartedEventAttributes && !timerSeen) {
        timerSeen = true;
        toTimerMs.push(at - startedAt);
      }
    }
  }
  return { sampled: sample.length, toTimerMs, steps: [...steps.values()] };
}

/** What the worker writes into a local activity's marker (plain JSON, never through the payload codec). */
interface LocalActivityMarker {
  activity_type: string;
  attempt?: number;
  complete_time: { seconds: number; nanos: number };
  original_schedule_time: { seconds: number; nanos: number };
}

function localActivityMarker(data: Uint8Array | null | undefined): LocalActivityMarker | undefined {
  if (!data) return undefined;
  try {
    return JSON.parse(Buffer.from(data).toString('utf8')) as LocalActivityMarker;
  } catch {
    return undefined;
  }
}

/** A history event's time in ms since the epoch; the seconds come as a Long. */
function tsToMs(
  timestamp: { seconds?: number | { toNumber(): number } | null; nanos?: number | null } | null | undefined,
): number {
  const seconds = timestamp?.seconds ?? 0;
  return (typeof seconds === 'number' ? seconds : seconds.toNumber()) * 1000 + (timestamp?.nanos ?? 0) / 1e6;
}

/** Terminates every workflow by id, `concurrency` at a time; one that is already gone is fine. */
async function terminateAll(stack: BenchStack, workflowIds: string[], concurrency: number): Promise<void> {
  let next = 0;
  const result = await measure(workflowIds.length, concurrency, async () => {
    const workflowId = workflowIds[next++]!;
    try {
      await stack.temporal.workflow.getHandle(workflowId).terminate('benchmark finished');
    } catch (error) {
      if ((error as Error).name !== 'WorkflowNotFoundError') throw error;
    }
  });
  if (result.failures > 0) {
    console.error(`bench: ${result.failures} of ${workflowIds.length} workflows could not be terminated: ${result.firstFailure}`);
  }
}
