import { randomUUID } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../scripts/servers/tools.js';
import { createReconcileActivities, type StalledMailPass } from '../../src/activities/reconcile.js';
import { startApiServer, type RunningApi } from '../../src/api/server.js';
import { createIngest } from '../../src/ingest/ingest.js';
import { createLogger } from '../../src/logger.js';
import { conversationWorkflowId, mailReconcilerWorkflowId } from '../../src/workflows/ids.js';
import { callApi, eventually, postMail } from '../support/http.js';
import { customerMail } from '../support/mail.js';
import { historyPayloadValue } from '../support/payloads.js';
import { seedSupportTeam, startTestStack, TEST_SECRET_KEY, type TestStack } from '../support/stack.js';
import { activityRuns } from '../support/activity-runs.js';

type Team = Awaited<ReturnType<typeof seedSupportTeam>>;

/** The stack's database and task queue behind an API whose Temporal is a closed port: every post stores the mail and answers 503. */
async function startApiWithoutTemporal(stack: TestStack): Promise<{ api: RunningApi; temporal: Client; close(): Promise<void> }> {
  const temporal = new Client({ connection: Connection.lazy({ address: `127.0.0.1:${await freePort()}` }) });
  const api = await startApiServer(
    {
      db: stack.db,
      temporal,
      ingest: createIngest({ db: stack.db, temporal, temporalTimeoutMs: 1_000, taskQueue: stack.taskQueue }),
      config: {
        SECRET_KEY: TEST_SECRET_KEY,
        MAX_INBOUND_BYTES: 1024 * 1024,
        PUBLIC_URL: 'http://unused',
        INBOUND_DOMAIN: 'inbound.mailroom.test',
      },
      logger: createLogger('silent'),
    },
    { port: 0, host: '127.0.0.1' },
  );
  return {
    api,
    temporal,
    async close() {
      await api.close();
      await temporal.connection.close();
    },
  };
}

/** Posts a mail from `address` while Temporal is away: 503, and the mail stays threaded but never signalled. */
async function storeWhileTemporalAway(away: RunningApi, team: Team, address: string, messageId: string) {
  const posted = await postMail(away.url, team.channel, customerMail({ messageId, from: `<${address}>` }));
  expect(posted).toMatchObject({ status: 503, body: { type: expect.stringContaining('workflows-unavailable') } });
}

async function inboundRow(stack: TestStack, messageId: string) {
  return stack.db
    .selectFrom('inbound_messages')
    .select(['id', 'status', 'conversation_id', 'signalled_at', 'rejection_reason', 'resume_claimed_until'])
    .where('message_id', '=', `<${messageId}>`)
    .executeTakeFirstOrThrow();
}

/** One pass over the stack's database, in an activity context of its own (with the pass's warnings kept quiet). */
function runPass(stack: TestStack, temporal: Client): Promise<StalledMailPass> {
  const ingest = createIngest({ db: stack.db, temporal, temporalTimeoutMs: 1_000, taskQueue: stack.taskQueue });
  const { resumeStalledMail } = createReconcileActivities({ db: stack.db, ingest });
  return new MockActivityEnvironment(undefined, { logger: new DefaultLogger('ERROR') }).run(resumeStalledMail, { graceMs: 0 });
}

const greetingsTo = (stack: TestStack, address: string) =>
  stack.capture.mails.filter((mail) => mail.envelope.to.includes(address));

/** Waits until the conversation's workflow has taken `signals` inbound-message signals and finished the task after the last. */
async function workflowTookSignals(stack: TestStack, conversationId: string, signals: number) {
  return eventually(async () => {
    const events = (await stack.temporal.workflow.getHandle(conversationWorkflowId(conversationId)).fetchHistory()).events ?? [];
    const signalled = events.flatMap((event, index) =>
      event.workflowExecutionSignaledEventAttributes?.signalName === 'inboundMessage' ? [index] : [],
    );
    const done = events.slice((signalled.at(-1) ?? Infinity) + 1).some((event) => event.workflowTaskCompletedEventAttributes);
    return signalled.length === signals && done ? events : undefined;
  }, 60_000);
}

const greetingsScheduled = (events: Awaited<ReturnType<typeof workflowTookSignals>>) => activityRuns(events, 'sendGreeting');

describe('the mail reconciler', () => {
  let stack: TestStack;
  let team: Team;
  let away: Awaited<ReturnType<typeof startApiWithoutTemporal>>;

  beforeAll(async () => {
    stack = await startTestStack({ reconciler: { intervalMs: 1_000, graceMs: 1_000 } });
    team = await seedSupportTeam(stack.db, {
      name: 'Acme Support',
      emailAddress: 'support@acme.example',
      greeting: { text: 'Thanks for writing!' },
    });
    away = await startApiWithoutTemporal(stack);
  });

  afterAll(async () => {
    await away?.close();
    await stack?.stop();
  });

  it('hands a mail stored while Temporal was away to its new conversation, whose greeting goes out, with no second post', async () => {
    await storeWhileTemporalAway(away.api, team, 'ann@example.com', 'outage-1@example.com');
    // Stored and threaded, but not signalled by the post (503); from here on the reconciler may take it any moment.
    const stored = await inboundRow(stack, 'outage-1@example.com');
    expect(stored.status).toBe('threaded');

    const greeting = await stack.capture.waitFor((mail) => mail.envelope.to.includes('ann@example.com'), 60_000);
    expect(greeting.text).toContain('Thanks for writing!');
    expect((await inboundRow(stack, 'outage-1@example.com')).signalled_at).not.toBeNull();
    const conversation = stack.temporal.workflow.getHandle(conversationWorkflowId(stored.conversation_id!));
    expect((await conversation.describe()).status.name).toBe('RUNNING');

    // The Temporal UI tells what the passes did: each pass's summary says what the one before it did.
    const reconciler = stack.temporal.workflow.getHandle(mailReconcilerWorkflowId(stack.taskQueue));
    const passSummary = (lastTime: string) =>
      `Resume stored mail that was never handed to its conversation (${lastTime} last time)`;
    await eventually(async () => {
      const events = (await reconciler.fetchHistory()).events ?? [];
      const summaries = await Promise.all(
        events.flatMap((event) => {
          const summary = event.activityTaskScheduledEventAttributes && event.userMetadata?.summary;
          return summary ? [historyPayloadValue<string>(summary)] : [];
        }),
      );
      const resumedThenNone = summaries.indexOf(passSummary('resumed 1'));
      return resumedThenNone >= 0 && summaries.indexOf(passSummary('none'), resumedThenNone) > resumedThenNone ? true : undefined;
    });
  });

  it('threads and signals a mail left received (stored, never parsed), and leaves quarantined mail and an unthreaded form submission alone', async () => {
    const longAgo = new Date(Date.now() - 60_000);
    const store = async (
      messageId: string,
      from: string,
      state: { status: 'received' | 'rejected'; via?: 'form'; reason?: string },
    ) => {
      const raw = Buffer.from(customerMail({ messageId, from: `<${from}>` }));
      await stack.db
        .insertInto('inbound_messages')
        .values({
          id: randomUUID(),
          channel_id: team.channel.id,
          message_id: `<${messageId}>`,
          raw,
          size_bytes: raw.length,
          status: state.status,
          rejection_reason: state.reason ?? null,
          received_via: state.via ?? 'forwarder',
          received_at: longAgo,
        })
        .execute();
    };
    await store('quarantined-1@example.com', 'cal@example.com', { status: 'rejected', reason: 'too large: kept for a person' });
    await store('form-1@example.com', 'dot@example.com', { status: 'received', via: 'form' });
    await store('died-before-parse@example.com', 'bea@example.com', { status: 'received' });

    await stack.capture.waitFor((mail) => mail.envelope.to.includes('bea@example.com'), 60_000);
    const resumed = await inboundRow(stack, 'died-before-parse@example.com');
    expect(resumed).toMatchObject({ status: 'threaded', conversation_id: expect.any(String), signalled_at: expect.any(Date) });
    // The pass that took bea's mail saw these as well, and took neither.
    expect(await inboundRow(stack, 'quarantined-1@example.com')).toMatchObject({
      status: 'rejected',
      rejection_reason: 'too large: kept for a person',
      conversation_id: null,
      resume_claimed_until: null,
    });
    expect(await inboundRow(stack, 'form-1@example.com')).toMatchObject({ status: 'received', resume_claimed_until: null });
  });
});

describe('resuming stalled mail by hand', () => {
  let stack: TestStack;
  let team: Team;
  let away: Awaited<ReturnType<typeof startApiWithoutTemporal>>;

  beforeAll(async () => {
    stack = await startTestStack(); // no reconciler: nothing resumes the mail but the test
    team = await seedSupportTeam(stack.db, {
      name: 'Acme Support',
      emailAddress: 'support@acme.example',
      greeting: { text: 'Thanks for writing!' },
    });
    away = await startApiWithoutTemporal(stack);
  });

  afterAll(async () => {
    await away?.close();
    await stack?.stop();
  });

  it('reprocess finishes a mail that never reached its conversation: 503 while Temporal is away, then 200 and the workflow has it', async () => {
    await storeWhileTemporalAway(away.api, team, 'eve@example.com', 'reprocess-1@example.com');
    const stored = await inboundRow(stack, 'reprocess-1@example.com');
    const path = `/v1/inbound-messages/${stored.id}/reprocess`;

    const stillAway = await callApi(away.api.url, team.admin.apiKey, 'POST', path);
    expect(stillAway).toMatchObject({ status: 503, body: { type: expect.stringContaining('workflows-unavailable') } });

    const reprocessed = await callApi(stack.api.url, team.admin.apiKey, 'POST', path);
    expect(reprocessed).toMatchObject({
      status: 200,
      body: { conversationId: stored.conversation_id, inboundMessageId: stored.id },
    });
    await stack.capture.waitFor((mail) => mail.envelope.to.includes('eve@example.com'), 60_000);
    expect(greetingsScheduled(await workflowTookSignals(stack, stored.conversation_id!, 1))).toBe(1);
    expect((await inboundRow(stack, 'reprocess-1@example.com')).signalled_at).not.toBeNull();

    // Delivered now: nothing left to reprocess.
    expect(await callApi(stack.api.url, team.admin.apiKey, 'POST', path)).toMatchObject({
      status: 409,
      body: { type: expect.stringContaining('not-quarantined') },
    });
  });

  it('two passes at once take different mails, and a mail handed over twice still gets one greeting', async () => {
    const customers = ['fay@example.com', 'gus@example.com', 'hal@example.com'];
    for (const [index, address] of customers.entries())
      await storeWhileTemporalAway(away.api, team, address, `twice-${index}@example.com`);
    const pass = () => runPass(stack, stack.temporal);

    const [first, second] = await Promise.all([pass(), pass()]);
    expect(first.found + second.found).toBe(3); // no mail counted by both
    expect(first.resumed + second.resumed).toBe(3);
    expect(await pass()).toMatchObject({ found: 0 });
    for (const address of customers) await stack.capture.waitFor((mail) => mail.envelope.to.includes(address), 60_000);

    // A pass that signalled but died before it noted so: the next one hands the mail over again.
    const again = await inboundRow(stack, 'twice-0@example.com');
    await stack.db
      .updateTable('inbound_messages')
      .set({ signalled_at: null, resume_claimed_until: null })
      .where('id', '=', again.id)
      .execute();
    expect(await pass()).toMatchObject({ found: 1, resumed: 1 });
    expect(greetingsScheduled(await workflowTookSignals(stack, again.conversation_id!, 2))).toBe(1);
    for (const address of customers) expect(greetingsTo(stack, address)).toHaveLength(1);
  });

  it('stops a pass early while Temporal is still away, and gives its mail back to the next pass', async () => {
    await storeWhileTemporalAway(away.api, team, 'ida@example.com', 'still-away-1@example.com');

    expect(await runPass(stack, away.temporal)).toEqual({
      found: 1,
      resumed: 0,
      quarantined: 0,
      failed: 0,
      stoppedEarly: 'Temporal did not answer',
    });
    expect(await inboundRow(stack, 'still-away-1@example.com')).toMatchObject({ signalled_at: null, resume_claimed_until: null });
    // Operators see it: threaded, not handed over yet.
    const listed = async () =>
      (await callApi(stack.api.url, team.admin.apiKey, 'GET', '/v1/inbound-messages?status=threaded&limit=200')).body.data.find(
        (mail: { messageId: string }) => mail.messageId === '<still-away-1@example.com>',
      );
    expect(await listed()).toMatchObject({ status: 'threaded', signalledAt: null });
    expect(await runPass(stack, stack.temporal)).toMatchObject({ found: 1, resumed: 1 });
    await stack.capture.waitFor((mail) => mail.envelope.to.includes('ida@example.com'), 60_000);
    expect((await listed()).signalledAt).toEqual(expect.any(String));
  });
});
