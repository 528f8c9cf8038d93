import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Connection } from '@temporalio/client';
import { temporal as temporalProto } from '@temporalio/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTemporalDevServer, type TemporalDevServer } from '../../scripts/servers/temporal-dev-server.js';
import { LOOPBACK_NETWORKS } from '../../src/config.js';
import { SmtpCapture } from '../../src/mail/smtp-capture.js';
import { conversationWorkflowId } from '../../src/workflows/ids.js';
import { conversationSnapshotQuery, type ConversationSnapshot } from '../../src/workflows/messages.js';
import { createTestDatabase } from '../support/database.js';
import { callApi, eventually } from '../support/http.js';
import { startMailroomProcess, type MailroomProcess } from '../support/mailroom-process.js';
import { failureMessage } from '../support/payloads.js';
import { seedSupportTeam, TEST_DATA_CONVERTER, TEST_SECRET_KEY } from '../support/stack.js';
import {
  bareMessageId,
  describeUnsettled,
  figuresOf,
  formatFigures,
  outcomes,
  postCustomerMails,
  ROUTED_STAGES,
  settled,
  type Figures,
  type PostedMail,
  type Workload,
} from './workload.js';

// Issue 10: running conversations survive crashes and outages. The production entry points (`npm run api`,
// `npm run worker`) run as processes of their own on PostgreSQL, a Temporal dev server of this file's own (it is
// stopped and started again, which must not disturb the files sharing the global one) and an SMTP capture.
// Correctness is asserted; delays are measured and printed, never asserted (the machine is shared and noisy).
// `npm run chaos` runs the issue's figures (300 mails with kills); `npm test` the same scenarios, smaller.

function fromEnv(name: string, fallback: number): number {
  const value = Number(process.env[name] ?? fallback);
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a positive integer`);
  return value;
}

/** Mails posted while the worker is being killed, and without kills for comparison. */
const MAILS = fromEnv('CHAOS_MAILS', 100);
const BASELINE_MAILS = fromEnv('CHAOS_BASELINE_MAILS', MAILS);
/** SIGKILLs of the worker at least; the loop goes on while mail is still being posted. */
const KILLS = fromEnv('CHAOS_KILLS', 4);
const SCALE_OUT_MAILS = fromEnv('CHAOS_SCALE_OUT_MAILS', 40);
const TEMPORAL_AWAY_MAILS = fromEnv('CHAOS_TEMPORAL_AWAY_MAILS', 40);
const CONCURRENCY = 10;
/** Mail n is posted n × this after the first: 300 mails take 75 s, about as long as ten kills take. */
const POST_INTERVAL_MS = fromEnv('CHAOS_POST_INTERVAL_MS', 250);
/** A worker lives this long (after it logged that it started) before it is killed. */
const WORKER_LIFE_MS = [3_000, 6_000] as const;
/** How long Temporal stays away. */
const TEMPORAL_OUTAGE_MS = fromEnv('CHAOS_TEMPORAL_OUTAGE_MS', 15_000);
/** Every conversation greeted and routed within this, however slow the machine: far beyond what it takes. */
const SETTLE_TIMEOUT_MS = 10 * 60_000;
/** The mail reconciler finishes mail stored while Temporal was away within about a minute of its return. */
const RECONCILED_WITHIN_MS = 2 * 60_000;

type Team = Awaited<ReturnType<typeof seedSupportTeam>>;

/** A detail of a marker event, as the SDK writes it in clear: a local activity's (`data`) or a patch's (`patch-data`). */
function markerDetail(event: temporalProto.api.history.v1.IHistoryEvent, key: 'data' | 'patch-data') {
  const data = event.markerRecordedEventAttributes?.details?.[key]?.payloads?.[0]?.data;
  return data ? (JSON.parse(Buffer.from(data).toString()) as Record<string, unknown>) : undefined;
}

/** Runs `work` over the items with at most `limit` at once. */
async function mapLimit<T, R>(items: T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const lane = async () => {
    for (let index = next++; index < items.length; index = next++) results[index] = await work(items[index]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  return results;
}

describe('chaos: conversations survive crashes and outages of the production processes', () => {
  let dataDir: string;
  let temporalServer: TemporalDevServer;
  let temporalPort: number;
  let temporal: Client;
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  const capture = new SmtpCapture(100_000); // keeps every mail of the file
  let env: NodeJS.ProcessEnv;
  const processes: MailroomProcess[] = [];
  /** Closed after the processes have stopped: an SMTP server waits for the connections their pools keep open. */
  const smtpServers: SmtpCapture[] = [capture];
  let api: MailroomProcess;
  let apiUrl: string;
  /** The worker that runs between the scenarios; the kill scenario replaces it. */
  let worker: MailroomProcess;
  const report: string[] = [];
  const figures: Array<{ run: string; note?: string } & Figures> = [];

  const temporalDbFile = () => join(dataDir, 'temporal.db');

  function start(script: 'src/api/server.ts' | 'src/worker.ts'): MailroomProcess {
    const child = startMailroomProcess(script, env);
    processes.push(child);
    return child;
  }

  async function startApi(): Promise<{ process: MailroomProcess; url: string }> {
    const api = start('src/api/server.ts');
    return { process: api, url: String((await api.waitForLog('API listening')).url) };
  }

  async function startWorker(): Promise<MailroomProcess> {
    const started = start('src/worker.ts');
    await started.waitForLog('worker started');
    return started;
  }

  /** A channel with a greeting and two agents; its flood limits raised: hundreds of customers write at once here. */
  async function seedChannel(name: string): Promise<Team> {
    const team = await seedSupportTeam(database.db, {
      name,
      emailAddress: `support-${randomUUID().slice(0, 8)}@acme.example`,
      greeting: { text: `Thanks for writing to ${name}, we will answer soon.` },
    });
    await database.db
      .updateTable('channels')
      .set({ automatic_mail_limit_per_domain_per_hour: 100_000, automatic_mail_limit_per_channel_per_hour: 100_000 })
      .where('id', '=', team.channel.id)
      .execute();
    return team;
  }

  function workload(team: Team, name: string, count: number, apiUrls = [apiUrl]): Workload {
    return {
      tag: `${name}-${randomUUID().slice(0, 6)}`,
      count,
      concurrency: CONCURRENCY,
      intervalMs: POST_INTERVAL_MS,
      apiUrls,
      channel: team.channel,
    };
  }

  /**
   * What the kills cut off, read from the conversations' histories: workflow tasks that timed out (a worker died
   * holding them, or its sticky queue went unserved) and activities that needed a further attempt.
   */
  async function cutOffWork(conversationIds: string[]) {
    const cut = { workflowTasks: 0, activities: 0, conversations: 0, byConversation: new Map<string, string[]>() };
    await mapLimit(conversationIds, 5, async (conversationId) => {
      const events = (await temporal.workflow.getHandle(conversationWorkflowId(conversationId)).fetchHistory()).events ?? [];
      const activityTypes = new Map(
        events.flatMap((event) =>
          event.activityTaskScheduledEventAttributes
            ? [[String(event.eventId), event.activityTaskScheduledEventAttributes.activityType?.name]]
            : [],
        ),
      );
      const what = (
        await Promise.all(
          events.map(async (event) => {
            if (event.workflowTaskTimedOutEventAttributes) return ['a workflow task timed out'];
            const started = event.activityTaskStartedEventAttributes;
            if ((started?.attempt ?? 1) <= 1) return [];
            const type = activityTypes.get(String(started!.scheduledEventId));
            const failure = started!.lastFailure ? await failureMessage(started!.lastFailure) : 'no failure recorded';
            return [`${type} took ${started!.attempt} attempts (${failure})`];
          }),
        )
      ).flat();
      cut.workflowTasks += what.filter((line) => line.startsWith('a workflow task')).length;
      cut.activities += what.filter((line) => !line.startsWith('a workflow task')).length;
      if (what.length > 0) {
        cut.conversations += 1;
        cut.byConversation.set(conversationId, what);
      }
    });
    return cut;
  }

  /**
   * Where a conversation's workflow stands (one that did not settle, or greeted twice): its pending activities and
   * task, every event of its history (activities by type, local activities by their markers, failures by message) and
   * its outbox rows' leases.
   */
  async function whereRunStands(conversationId: string): Promise<string> {
    const handle = temporal.workflow.getHandle(conversationWorkflowId(conversationId));
    const { raw, status } = await handle.describe();
    const activities = await Promise.all(
      (raw.pendingActivities ?? []).map(
        async (activity) =>
          `${activity.activityType?.name} attempt ${activity.attempt} (${activity.lastFailure ? await failureMessage(activity.lastFailure) : 'no failure'})`,
      ),
    );
    const events = (await handle.fetchHistory()).events ?? [];
    const history = await Promise.all(events.map(describeEvent));
    const task = raw.pendingWorkflowTask ? `, workflow task attempt ${raw.pendingWorkflowTask.attempt}` : '';
    const outbox = await database.db
      .selectFrom('outbound_messages')
      .select(['kind', 'delivery_status', 'claim_token', 'claimed_until', 'mime', 'created_at'])
      .where('conversation_id', '=', conversationId)
      .execute();
    const rows = outbox.map(
      (row) =>
        `${row.kind} ${row.delivery_status} written ${row.created_at.toISOString()}, ` +
        `${row.claim_token ? `leased until ${row.claimed_until?.toISOString()}` : 'no lease'}, ${row.mime ? 'composed' : 'not composed'}`,
    );
    return [
      `  ${conversationId}: ${status.name}${task}; pending activities: ${activities.join('; ') || 'none'}`,
      `    outbox: ${rows.join('; ') || 'none'}`,
      ...history.map((line) => `    ${line}`),
    ].join('\n');
  }

  /** One history event as a line: its time and type, and what it was about. */
  async function describeEvent(event: temporalProto.api.history.v1.IHistoryEvent): Promise<string> {
    const type = String(temporalProto.api.enums.v1.EventType[event.eventType ?? 0]).replace('EVENT_TYPE_', '');
    const at = new Date(Number(event.eventTime?.seconds ?? 0) * 1000 + Math.round((event.eventTime?.nanos ?? 0) / 1e6));
    const marker = event.markerRecordedEventAttributes;
    const localActivity = markerDetail(event, 'data');
    const patch = markerDetail(event, 'patch-data');
    const failure =
      marker?.failure ?? event.workflowTaskFailedEventAttributes?.failure ?? event.activityTaskFailedEventAttributes?.failure;
    const about = [
      event.activityTaskScheduledEventAttributes?.activityType?.name,
      localActivity && `${String(localActivity.activity_type)} attempt ${String(localActivity.attempt)}`,
      patch && `patch ${String(patch.id)}`,
      event.workflowTaskStartedEventAttributes?.identity,
      failure && `failed: ${await failureMessage(failure)}${failure.cause ? ` (${await failureMessage(failure.cause)})` : ''}`,
    ].filter(Boolean);
    return `${event.eventId} ${at.toISOString().slice(11, 23)} ${type}${about.length ? ` (${about.join(', ')})` : ''}`;
  }

  async function snapshotOf(conversationId: string): Promise<ConversationSnapshot> {
    return temporal.workflow.getHandle(conversationWorkflowId(conversationId)).query(conversationSnapshotQuery);
  }

  /**
   * Whether the conversation's greeting went out in a further attempt, after one was cut off (a worker died in it): its
   * local first try ran again with a workflow task that timed out or failed before the try was recorded, or the send
   * activity needed an attempt after the first. Waits for the send to be over: an attempt is in the history once done.
   */
  async function greetingSendRetried(conversationId: string): Promise<boolean> {
    return eventually(async () => {
      const events = (await temporal.workflow.getHandle(conversationWorkflowId(conversationId)).fetchHistory()).events ?? [];
      const firstTry = events.findIndex((event) => markerDetail(event, 'data')?.activity_type === 'sendGreeting');
      const scheduled = events.find((event) => event.activityTaskScheduledEventAttributes?.activityType?.name === 'sendGreeting');
      const of = (attributes?: { scheduledEventId?: unknown } | null) =>
        attributes && String(attributes.scheduledEventId) === String(scheduled?.eventId);
      const activityDone = events.some((event) => of(event.activityTaskCompletedEventAttributes));
      if (scheduled ? !activityDone : firstTry === -1) return undefined;
      const taskCutOff = events
        .slice(0, firstTry)
        .some((event) => event.workflowTaskTimedOutEventAttributes || event.workflowTaskFailedEventAttributes);
      return (
        taskCutOff ||
        events.some(
          (event) => of(event.activityTaskStartedEventAttributes) && event.activityTaskStartedEventAttributes!.attempt! > 1,
        )
      );
    }, 60_000);
  }

  /**
   * Waits until every conversation is greeted (its greeting at the capture) and routed, in the database and in
   * its workflow, then checks that nothing was done twice. Returns each greeting's delay from the post's answer, by
   * conversation, and how many greetings reached their customer twice under their one Message-ID: only a send that a
   * kill cut off after the server took the mail and before the outbox recorded it may do that (`killed`), as SMTP
   * offers nothing to make a send idempotent; everything else is sent exactly once.
   */
  async function expectEachGreetedAndRoutedOnce(
    team: Team,
    posted: PostedMail[],
    { killed = false } = {},
  ): Promise<{ delays: Map<string, number>; resent: string[] }> {
    const conversationIds = posted.map((mail) => mail.conversationId!);
    expect(new Set(conversationIds).size, 'one conversation per customer').toBe(posted.length);
    const { count } = await database.db
      .selectFrom('conversations')
      .select((eb) => eb.fn.countAll<string>().as('count'))
      .where('channel_id', '=', team.channel.id)
      .executeTakeFirstOrThrow();
    expect(Number(count)).toBe(posted.length);

    let last: Awaited<ReturnType<typeof outcomes>> = [];
    await eventually(
      async () => {
        last = await outcomes(database.db, capture, conversationIds);
        return last.length === posted.length && last.every(settled) ? true : undefined;
      },
      SETTLE_TIMEOUT_MS,
      2_000,
    ).catch(async () => {
      const stuck = await Promise.all(
        last
          .filter((outcome) => !settled(outcome))
          .slice(0, 5)
          .map((outcome) => whereRunStands(outcome.conversationId)),
      );
      throw new Error(`not every conversation was greeted and routed:\n${describeUnsettled(last)}\n${stuck.join('\n')}`);
    });

    // Exactly one greeting reached each customer, and it is the one the outbox holds.
    const resent: string[] = [];
    const greetedTwice: typeof last = [];
    for (const outcome of last.filter((each) => each.greetingsCaptured.length !== 1)) {
      const oneMessageId = new Set(outcome.greetingsCaptured.map((mail) => mail.messageId)).size === 1;
      if (killed && oneMessageId && outcome.greetingsCaptured.length === 2 && (await greetingSendRetried(outcome.conversationId)))
        resent.push(outcome.conversationId);
      else greetedTwice.push(outcome);
    }
    expect(
      await Promise.all(
        greetedTwice.map(async (outcome) => ({
          conversationId: outcome.conversationId,
          copies: outcome.greetingsCaptured.map((mail) => ({ messageId: mail.messageId, at: mail.receivedAt })),
          run: await whereRunStands(outcome.conversationId),
        })),
      ),
      'one greeting per conversation',
    ).toEqual([]);

    // No purpose (a conversation's greeting, handover, ...) reached the customer under two Message-IDs, and
    // nothing reached a customer that the outbox does not hold.
    const customers = new Set(posted.map((mail) => mail.customer));
    const received = capture.mails.filter((mail) => mail.envelope.to.some((to) => customers.has(to.toLowerCase())));
    const rows = await database.db
      .selectFrom('outbound_messages')
      .select(['conversation_id', 'kind', 'message_id'])
      .where('conversation_id', 'in', conversationIds)
      .execute();
    const purposeOf = new Map(rows.map((row) => [bareMessageId(row.message_id), `${row.conversation_id} ${row.kind}`]));
    expect(
      received.filter((mail) => !purposeOf.has(bareMessageId(mail.messageId))).map((mail) => mail.messageId),
      'mail the outbox does not hold',
    ).toEqual([]);
    const messageIdsByPurpose = new Map<string, Set<string>>();
    for (const mail of received) {
      const purpose = purposeOf.get(bareMessageId(mail.messageId))!;
      messageIdsByPurpose.set(purpose, (messageIdsByPurpose.get(purpose) ?? new Set()).add(bareMessageId(mail.messageId)));
    }
    expect(
      [...messageIdsByPurpose].filter(([, ids]) => ids.size > 1).map(([purpose, ids]) => `${purpose}: ${[...ids].join(', ')}`),
      'one Message-ID per purpose',
    ).toEqual([]);

    // Nothing on the timeline happened twice: one customer message, one greeting sent, one routing, one assignment.
    const events = await database.db
      .selectFrom('conversation_events')
      .select(['conversation_id', 'type'])
      .where('conversation_id', 'in', conversationIds)
      .execute();
    const times = new Map<string, number>();
    for (const event of events)
      times.set(`${event.conversation_id} ${event.type}`, (times.get(`${event.conversation_id} ${event.type}`) ?? 0) + 1);
    expect(
      [...times].filter(([, n]) => n > 1).map(([what, n]) => `${what} ×${n}`),
      'timeline events recorded twice',
    ).toEqual([]);
    for (const outcome of last) {
      const has = (type: string) => times.get(`${outcome.conversationId} ${type}`) === 1;
      expect(has('customer_message') && has('greeting_sent') && (has('assigned') || has('queued')), outcome.conversationId).toBe(
        true,
      );
    }

    // The workflows agree with the database: routed, having taken the one mail.
    const stageOf = new Map(last.map((outcome) => [outcome.conversationId, outcome.stage]));
    let disagreeing: string[] = [];
    await eventually(
      async () => {
        const snapshots = await mapLimit(conversationIds, 10, snapshotOf);
        disagreeing = snapshots
          .filter((s) => s.stage !== stageOf.get(s.conversationId) || !ROUTED_STAGES.includes(s.stage) || s.mailsTaken !== 1)
          .map(
            (s) => `${s.conversationId}: workflow ${s.stage} (${s.mailsTaken} mails), database ${stageOf.get(s.conversationId)}`,
          );
        return disagreeing.length === 0 ? true : undefined;
      },
      120_000,
      2_000,
    ).catch(() => {
      throw new Error(`workflows disagree with the database:\n${disagreeing.slice(0, 20).join('\n')}`);
    });

    const answeredAt = new Map(posted.map((mail) => [mail.conversationId!, mail.answeredAt]));
    const delays = new Map(
      last.map((outcome) => [
        outcome.conversationId,
        outcome.greetingsCaptured[0]!.receivedAt.getTime() - answeredAt.get(outcome.conversationId)!,
      ]),
    );
    return { delays, resent };
  }

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'mailroom-chaos-'));
    // Of its own, in a file: stopped and started again on the same port, its workflows survive.
    temporalServer = await startTemporalDevServer({ dbFile: temporalDbFile() });
    temporalPort = Number(temporalServer.address.split(':').at(-1));
    // The processes derive their key from SECRET_KEY: this client reads what they write.
    temporal = new Client({
      connection: await Connection.connect({ address: temporalServer.address }),
      dataConverter: TEST_DATA_CONVERTER,
    });
    database = await createTestDatabase();
    const smtp = await capture.listen();
    env = {
      ...process.env,
      DATABASE_URL: database.url,
      TEMPORAL_ADDRESS: temporalServer.address,
      TEMPORAL_TASK_QUEUE: `mailroom-chaos-${randomUUID()}`,
      SMTP_URL: smtp.url,
      SECRET_KEY: TEST_SECRET_KEY,
      HOST: '127.0.0.1',
      PORT: '0',
      LOG_LEVEL: 'info',
      SHUTDOWN_GRACE_SECONDS: '5',
      RATE_LIMIT_INBOUND_PER_MINUTE: '0',
      RATE_LIMIT_API_KEY_PER_MINUTE: '0',
      // The refusing channel's own SMTP server runs on loopback.
      ALLOWED_PRIVATE_NETWORKS: LOOPBACK_NETWORKS.join(','),
    };
    [{ process: api, url: apiUrl }, worker] = await Promise.all([startApi(), startWorker()]);
  });

  afterAll(async () => {
    if (report.length > 0) console.log(`\nChaos figures\n${report.join('\n')}\n`);
    await Promise.all(processes.map((child) => child.stop(15_000)));
    await temporal?.connection.close();
    await temporalServer?.stop();
    await Promise.all(smtpServers.map((server) => server.close()));
    await database?.drop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it(`greets and routes ${BASELINE_MAILS} conversations once each, the worker left alone (the baseline)`, async () => {
    const team = await seedChannel('Baseline');
    const posted = await postCustomerMails(workload(team, 'baseline', BASELINE_MAILS));
    expect(posted.filter((mail) => mail.status !== 202)).toEqual([]);
    const { delays } = await expectEachGreetedAndRoutedOnce(team, posted);
    figures.push({ run: 'no kills', ...figuresOf([...delays.values()]) });
  });

  it(`greets and routes ${MAILS} conversations once each while the worker process is SIGKILLed every few seconds`, async () => {
    const team = await seedChannel('Killed workers');
    const lives: Array<{ pid: number; startMs: number; lifeMs: number }> = [];
    let posting = true;
    const postingDone = postCustomerMails(workload(team, 'kills', MAILS)).finally(() => (posting = false));

    // The worker that runs dies 3–6 s after it started working; the next one is started at once.
    let victim = worker;
    let spawnedAt = Date.now();
    while (lives.length < KILLS || posting) {
      await victim.waitForLog('worker started');
      const startMs = Date.now() - spawnedAt;
      const lifeMs = WORKER_LIFE_MS[0] + Math.random() * (WORKER_LIFE_MS[1] - WORKER_LIFE_MS[0]);
      await sleep(lifeMs);
      victim.child.kill('SIGKILL');
      expect(await victim.exited).toEqual({ code: null, signal: 'SIGKILL' });
      lives.push({ pid: victim.child.pid!, startMs, lifeMs });
      spawnedAt = Date.now();
      victim = start('src/worker.ts');
    }
    worker = victim;
    await worker.waitForLog('worker started');

    const posted = await postingDone;
    expect(posted.filter((mail) => mail.status !== 202)).toEqual([]);
    const { delays, resent } = await expectEachGreetedAndRoutedOnce(team, posted, { killed: true });
    const cut = await cutOffWork(posted.map((mail) => mail.conversationId!));
    const meanStart = lives.slice(1).reduce((sum, life) => sum + life.startMs, 0) / Math.max(1, lives.length - 1);
    figures.push({
      run: `${lives.length} SIGKILLs of the worker`,
      ...figuresOf([...delays.values()]),
      note:
        `a new worker took ${(meanStart / 1000).toFixed(1)} s to start on average; the kills cut off ${cut.workflowTasks} ` +
        `workflow tasks and ${cut.activities} activities in ${cut.conversations} conversations; ` +
        `${resent.length} greetings resent under their Message-ID${resent.length ? ` (${resent.join(', ')})` : ''}`,
    });
    const [slowest] = [...delays].reduce((slower, entry) => (entry[1] > slower[1] ? entry : slower));
    report.push(
      formatFigures(figures),
      `(posted at one mail every ${POST_INTERVAL_MS} ms, at most ${CONCURRENCY} in flight; the slowest greeting, ` +
        `conversation ${slowest}: ${cut.byConversation.get(slowest)?.join('; ') ?? 'nothing of its own cut off'})`,
    );
    console.log(`\n${formatFigures(figures)}\n`);
  });

  it('marks a greeting the server refuses for good failed, shows it, and routes the conversation anyway', async () => {
    const team = await seedChannel('Refusing');
    // The channel's own SMTP server says the customer's mailbox does not exist.
    const refusing = new SmtpCapture();
    smtpServers.push(refusing);
    const { port } = await refusing.listen();
    refusing.refuse({ at: 'rcpt', code: 550, message: '5.1.1 Recipient address rejected: User unknown' });
    await database.db
      .updateTable('channels')
      .set({ smtp_host: '127.0.0.1', smtp_port: port, smtp_secure: false })
      .where('id', '=', team.channel.id)
      .execute();
    const [mail] = await postCustomerMails(workload(team, 'refused', 1));
    expect(mail!.status).toBe(202);
    const conversationId = mail!.conversationId!;

    const [alice] = team.agents;
    const conversation = await eventually(
      async () => {
        const { body } = await callApi(apiUrl, alice!.apiKey, 'GET', `/v1/conversations/${conversationId}`);
        const greeting = body.messages.find((message: { kind: string }) => message.kind === 'greeting');
        return greeting?.deliveryStatus === 'failed' && ROUTED_STAGES.includes(body.stage) ? { body, greeting } : undefined;
      },
      120_000,
      500,
    );
    expect(conversation.greeting.deliveryError).toMatch(/550 .*User unknown/);
    const failed = conversation.body.timeline.filter((event: { type: string }) => event.type === 'delivery_failed');
    expect(failed).toEqual([
      expect.objectContaining({
        data: expect.objectContaining({ outboundMessageId: conversation.greeting.id, kind: 'greeting' }),
      }),
    ]);
    const row = await database.db
      .selectFrom('outbound_messages')
      .select(['delivery_status', 'delivery_error', 'sent_at'])
      .where('id', '=', conversation.greeting.id)
      .executeTakeFirstOrThrow();
    expect(row).toMatchObject({ delivery_status: 'failed', delivery_error: expect.stringMatching(/550/), sent_at: null });
    expect((await snapshotOf(conversationId)).stage).toBe(conversation.body.stage);
    // Refused once, and never tried again.
    expect(refusing.refused).toBe(1);
    expect(capture.mails.filter((captured) => captured.envelope.to.includes(mail!.customer))).toEqual([]);
  });

  it(`does everything once with two API and two worker processes on one Temporal and one PostgreSQL (${SCALE_OUT_MAILS} mails)`, async () => {
    const team = await seedChannel('Scaled out');
    const [second, secondWorker] = await Promise.all([startApi(), startWorker()]);
    try {
      const posted = await postCustomerMails(workload(team, 'scale-out', SCALE_OUT_MAILS, [apiUrl, second.url]));
      expect(posted.filter((mail) => mail.status !== 202)).toEqual([]);
      expect(new Set(posted.map((mail) => mail.apiUrl)).size).toBe(2);
      const { delays } = await expectEachGreetedAndRoutedOnce(team, posted);
      report.push(formatFigures([{ run: '2 APIs and 2 workers', ...figuresOf([...delays.values()]) }]));

      // Both workers did the work: their identities (pid@host) are on the histories' tasks.
      const identities = new Set<string>();
      await mapLimit(posted, 5, async (mail) => {
        const { events } = await temporal.workflow.getHandle(conversationWorkflowId(mail.conversationId!)).fetchHistory();
        for (const event of events ?? []) {
          const identity =
            event.activityTaskStartedEventAttributes?.identity ?? event.workflowTaskStartedEventAttributes?.identity;
          if (identity) identities.add(identity.split('@')[0]!);
        }
      });
      expect([...identities].sort()).toEqual([String(worker.child.pid), String(secondWorker.child.pid)].sort());
    } finally {
      await Promise.all([second.process.stop(15_000), secondWorker.stop(15_000)]);
    }
  });

  it(`hands every mail posted while Temporal was away to its conversation after the restart, 202 and 503 alike (${TEMPORAL_AWAY_MAILS} mails)`, async () => {
    const team = await seedChannel('Temporal away');
    const posting = postCustomerMails({ ...workload(team, 'temporal-away', TEMPORAL_AWAY_MAILS), intervalMs: 500 });
    await sleep(5_000);
    await temporalServer.stop();
    const stoppedAt = Date.now();
    await sleep(TEMPORAL_OUTAGE_MS);
    // The same server again: the same port and the same database file.
    temporalServer = await startTemporalDevServer({ port: temporalPort, dbFile: temporalDbFile() });
    const restartedAt = Date.now();
    const posted = await posting;
    // The processes rode the outage out.
    expect(worker.child.exitCode).toBeNull();
    expect(api.child.exitCode).toBeNull();

    // The forwarder does not post again: a 503 means the mail is stored, and the reconciler finishes it.
    expect(posted.filter((mail) => mail.status !== 202 && mail.status !== 503)).toEqual([]);
    const unavailable = posted.filter((mail) => mail.status === 503);
    expect(unavailable.length, 'some mail arrived while Temporal was away').toBeGreaterThan(0);
    expect(unavailable.map((mail) => JSON.parse(mail.answer).type)).toEqual(
      unavailable.map(() => expect.stringContaining('workflows-unavailable')),
    );
    const rows = await database.db
      .selectFrom('inbound_messages')
      .select(['id', 'message_id', 'conversation_id', 'status', 'signalled_at'])
      .where(
        'message_id',
        'in',
        posted.map((mail) => `<${mail.messageId}>`),
      )
      .execute();
    expect(rows).toHaveLength(posted.length);
    expect(rows.filter((row) => row.status !== 'threaded' || !row.conversation_id)).toEqual([]);
    expect(
      posted.filter(
        (mail) =>
          mail.status === 202 &&
          rows.find((row) => row.message_id === `<${mail.messageId}>`)!.conversation_id !== mail.conversationId,
      ),
    ).toEqual([]);

    // Every mail reaches its conversation's workflow: taken in, and the one mail it took.
    let missing: string[] = [];
    await eventually(
      async () => {
        const snapshots = await mapLimit(rows, 10, async (row) => ({
          row,
          snapshot: await snapshotOf(row.conversation_id!).catch(() => undefined),
        }));
        missing = snapshots
          .filter(({ row, snapshot }) => snapshot?.lastCustomerMailId !== row.id || snapshot.mailsTaken !== 1)
          .map(
            ({ row, snapshot }) =>
              `${row.conversation_id} (mail ${row.id}): ${snapshot ? JSON.stringify(snapshot) : 'no workflow answers'}`,
          );
        return missing.length === 0 ? true : undefined;
      },
      Math.max(1_000, restartedAt + RECONCILED_WITHIN_MS - Date.now()),
      1_000,
    ).catch(() => {
      throw new Error(
        `${missing.length} mails did not reach their workflow within two minutes of the restart:\n${missing.slice(0, 20).join('\n')}`,
      );
    });
    const recoveredAt = Date.now();

    const withConversations = posted.map((mail) => ({
      ...mail,
      conversationId: rows.find((row) => row.message_id === `<${mail.messageId}>`)!.conversation_id!,
    }));
    const { delays } = await expectEachGreetedAndRoutedOnce(team, withConversations);
    const greetings = figuresOf([...delays.values()]);
    const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
    report.push(
      `Temporal away for ${seconds(restartedAt - stoppedAt)} (${unavailable.length} of ${posted.length} posts answered 503): ` +
        `every mail in its workflow ${seconds(recoveredAt - restartedAt)} after the restart; ` +
        `greetings p50 ${seconds(greetings.p50)}, max ${seconds(greetings.max)} after the answer to the post`,
    );
  });
});
