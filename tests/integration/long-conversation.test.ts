import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { defaultPayloadConverter } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CustomerConversationInput } from '../../src/workflows/conversation.js';
import { conversationWorkflowId } from '../../src/workflows/ids.js';
import { conversationSnapshotQuery, inboundMessageSignal, type InboundMessageInput } from '../../src/workflows/messages.js';
import { callApi, eventually, postMail } from '../support/http.js';
import { decodeEventInputs } from '../support/payloads.js';
import { seedSupportTeam, startTestStack, type TestStack } from '../support/stack.js';

const { WorkflowTaskFailedCause } = temporal.api.enums.v1;
type HistoryEvent = temporal.api.history.v1.IHistoryEvent;

const question = readFileSync(new URL('../fixtures/eml/customer-question.eml', import.meta.url));

// `temporal server start-dev` (CLI 1.5.x, server 1.29) suggests continue-as-new at the server's defaults:
// limit.historyCount.suggestContinueAsNew = 4096 events, limit.historySize.suggestContinueAsNew = 4 MiB.
// Only the event count is within reach here. Every signal is one history event, so more signals than
// this make at least one continue-as-new certain, however the worker batches them.
const SUGGEST_CONTINUE_AS_NEW_EVENTS = 4096;

const FOLLOW_UPS = 3_600;
// Repeated signals, as the ingest sends after a retry: some at once (the first still pending), and many
// about 100 mails later (the first long read, but inside the workflow's dedupe window of 200 ids), so
// that some straddle each continue-as-new.
const REPEAT_AT_ONCE_EVERY = 50;
const REPEAT_LATER_EVERY = 6;
const REPEAT_LATER_BY = 100;
// Mails keep arriving while the workflow works, in bursts of 50 signals (16 at a time), each burst
// read before the next: the server fails a workflow task outright once more than 100 events
// (history.maximumBufferedEventsBatch) pile up while it runs, and the worker then replays the whole
// history and gets every signal since in one activation. An unpaced flood tests that, not this.
const SIGNAL_CONCURRENCY = 16;
const SIGNAL_BATCH = 50;
// A run continues as new at its first workflow task past the threshold: it still reads what is
// pending and takes the rest of the burst in flight.
const RUN_OVERSHOOT = 250;

/** Runs `task` for every item, at most `limit` at a time, in order of the items. */
async function inParallel<T>(items: readonly T[], limit: number, task: (item: T) => Promise<unknown>) {
  let next = 0;
  const lanes = Array.from({ length: limit }, async () => {
    while (next < items.length) await task(items[next++]!);
  });
  await Promise.all(lanes);
}

function customerMail(index: number, conversationId: string, channelId: string) {
  const messageId = `<follow-up-${index}.${randomUUID()}@mail.example.com>`;
  const text = `Another detail, number ${index}, about the missing invoice.`;
  const raw = Buffer.from(
    [
      'From: "Ann Example" <ann@example.com>',
      'To: support@acme.example',
      'Subject: Re: Invoice for März is missing',
      `Message-ID: ${messageId}`,
      '',
      text,
      '',
    ].join('\r\n'),
  );
  return {
    id: randomUUID(),
    channel_id: channelId,
    message_id: messageId,
    raw,
    size_bytes: raw.length,
    status: 'threaded' as const,
    conversation_id: conversationId,
    classification: 'ordinary' as const,
    from_address: 'ann@example.com',
    from_name: 'Ann Example',
    subject: 'Re: Invoice for März is missing',
    text_body: text,
    reply_text: text,
    to_addresses: JSON.stringify(['support@acme.example']),
    signalled_at: new Date(),
  };
}

interface Run {
  runId: string;
  events: HistoryEvent[];
}

describe('a conversation with thousands of messages keeps working', () => {
  let stack: TestStack;
  let team: Awaited<ReturnType<typeof seedSupportTeam>>;

  beforeAll(async () => {
    stack = await startTestStack();
    team = await seedSupportTeam(stack.db, { name: 'Acme Support', emailAddress: 'support@acme.example' });
  });

  afterAll(async () => {
    await stack?.stop();
  });

  it('continues as new under a flood of customer mails, loses none, handles none twice, and still answers and resolves', async () => {
    const [alice] = team.agents;
    const { api, capture, db } = stack;

    // The conversation starts the ordinary way, through the forwarder, and goes to an agent.
    const posted = await postMail(api.url, team.channel, question);
    expect(posted.status).toBe(202);
    const { conversationId } = posted.body;
    const workflowId = conversationWorkflowId(conversationId);
    const handle = stack.temporal.workflow.getHandle(workflowId);
    const firstRunId = (await handle.describe()).runId;
    await eventually(async () => {
      const snapshot = await handle.query(conversationSnapshotQuery);
      return snapshot.stage === 'assigned' && snapshot.assigneeId === alice!.id ? snapshot : undefined;
    });

    // Thousands of further customer mails, stored as the ingest stores them (in bulk here)...
    const followUps = Array.from({ length: FOLLOW_UPS }, (_, index) => customerMail(index, conversationId, team.channel.id));
    for (let start = 0; start < followUps.length; start += 500) {
      await db
        .insertInto('inbound_messages')
        .values(followUps.slice(start, start + 500))
        .execute();
    }
    const followUpIds = followUps.map((mail) => mail.id);

    // ...and signalled, some of them twice.
    const signals: string[] = [];
    followUpIds.forEach((id, index) => {
      signals.push(id);
      if (index % REPEAT_AT_ONCE_EVERY === 0) signals.push(id);
      const earlier = index - REPEAT_LATER_BY;
      if (earlier >= 0 && earlier % REPEAT_LATER_EVERY === 0) signals.push(followUpIds[earlier]!);
    });
    expect(signals.length).toBeGreaterThan(SUGGEST_CONTINUE_AS_NEW_EVENTS);
    // As the ingest signals them: with what it learned about each mail.
    const facts = {
      classification: 'ordinary',
      senderVerdict: 'ordinary',
      asksForPerson: false,
      confirmsResolution: false,
    } as const;
    const signal = (inboundMessageId: string) => handle.signal(inboundMessageSignal, { inboundMessageId, facts });
    const nothingPending = () =>
      eventually(async () => ((await handle.query(conversationSnapshotQuery)).pendingMessages === 0 ? true : undefined), 60_000);
    for (let start = 0; start < signals.length; start += SIGNAL_BATCH) {
      await inParallel(signals.slice(start, start + SIGNAL_BATCH), SIGNAL_CONCURRENCY, signal);
      await nothingPending();
    }
    await eventually(async () => ((await handle.describe()).runId !== firstRunId ? true : undefined), 60_000);

    // The latest mails once more, after the continue-as-new: dropped as repeats.
    await inParallel(followUpIds.slice(-50), SIGNAL_CONCURRENCY, signal);

    // One more mail ends the sequence.
    const lastMail = customerMail(FOLLOW_UPS, conversationId, team.channel.id);
    await db.insertInto('inbound_messages').values(lastMail).execute();
    await signal(lastMail.id);

    // Everything signalled was taken in: nothing lost, nothing pending, and the mail that ended the
    // sequence is the one the workflow keeps as the customer's latest.
    const snapshot = await eventually(async () => {
      const seen = await handle.query(conversationSnapshotQuery);
      return seen.lastCustomerMailId === lastMail.id && seen.pendingMessages === 0 ? seen : undefined;
    }, 60_000);
    // Every customer mail was taken exactly once across all runs: the repeats were dropped, and the mails
    // pending at a continue-as-new were carried over.
    expect(snapshot.mailsTaken).toBe(FOLLOW_UPS + 2);
    const runs = await runsOf(workflowId, firstRunId);

    // At least one continue-as-new, no run failed, and each new run took over the state of the one before.
    expect(runs.length).toBeGreaterThanOrEqual(2);
    for (const run of runs.slice(0, -1)) {
      expect(run.events[run.events.length - 1]!.workflowExecutionContinuedAsNewEventAttributes).toBeTruthy();
    }
    runs.forEach((run, index) => {
      if (index === 0) return;
      const earlierRuns = runs.slice(0, index);
      const started = run.events[0]!.workflowExecutionStartedEventAttributes!;
      const input = defaultPayloadConverter.fromPayload<CustomerConversationInput>(started.input!.payloads![0]! as any);
      const signalledBefore = earlierRuns.flatMap(messagesSignalled);
      expect(input).toMatchObject({ conversationId, state: { stage: 'assigned', assignee: { id: alice!.id } } });
      // What the earlier runs took in came along, and their latest customer mail is one they were signalled.
      expect(input.state!.mailsTaken).toBeGreaterThan(0);
      expect(signalledBefore).toContain(input.state!.lastCustomerMail!.inboundMessageId);
      // Repeats of mails first signalled to an earlier run reached this one and were dropped (every
      // mail was read once, above): the dedupe window came along.
      const repeated = messagesSignalled(run).filter((id) => signalledBefore.includes(id));
      expect(repeated.length).toBeGreaterThan(0);
    });
    // Workflow tasks failed only when a signal arrived as a run was continuing as new (the server then
    // hands the task back with that signal): no non-determinism, no failed workflow code.
    const failedTasks = runs
      .flatMap((run) => run.events)
      .map((event) => event.workflowTaskFailedEventAttributes)
      .filter((failure) => failure && failure.cause !== WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND);
    expect(failedTasks).toEqual([]);
    const description = await handle.describe();
    expect(description.status.name).toBe('RUNNING');
    expect(description.runId).toBe(runs[runs.length - 1]!.runId);
    const listed = await eventually(async () => {
      const statuses: string[] = [];
      for await (const execution of stack.temporal.workflow.list({ query: `WorkflowId = '${workflowId}'` })) {
        statuses.push(execution.status.name);
      }
      return statuses.length === runs.length ? statuses : undefined;
    });
    expect(listed.sort()).toEqual([...Array<string>(runs.length - 1).fill('CONTINUED_AS_NEW'), 'RUNNING']);

    // The history each run keeps stays bounded by the threshold, whatever the number of mails.
    for (const run of runs) expect(run.events.length).toBeLessThan(SUGGEST_CONTINUE_AS_NEW_EVENTS + RUN_OVERSHOOT);
    expect(description.historyLength).toBeLessThan(signals.length);

    // The current run still does its work: an agent's reply is mailed, answering the last mail...
    const reply = await callApi(api.url, alice!.apiKey, 'POST', `/v1/conversations/${conversationId}/replies`, {
      text: 'Hello Ann, thank you for all the details.',
    });
    expect(reply.status).toBe(201);
    const replyMail = await capture.waitFor((mail) => mail.messageId === reply.body.messageId);
    expect(replyMail.envelope.to).toEqual(['ann@example.com']);
    expect(replyMail.inReplyTo).toBe(lastMail.message_id);

    // ...and it resolves.
    const resolved = await callApi(api.url, alice!.apiKey, 'POST', `/v1/conversations/${conversationId}/resolve`);
    expect(resolved).toMatchObject({ status: 200, body: { status: 'resolved' } });
    expect((await handle.query(conversationSnapshotQuery)).stage).toBe('resolved');
    const row = await db.selectFrom('conversations').select('status').where('id', '=', conversationId).executeTakeFirstOrThrow();
    expect(row.status).toBe('resolved');
  });

  /** The runs of the workflow, oldest first, following the continue-as-new chain from the first run. */
  async function runsOf(workflowId: string, firstRunId: string): Promise<Run[]> {
    const runs: Run[] = [];
    let runId: string | null | undefined = firstRunId;
    while (runId) {
      const history = await stack.temporal.workflow.getHandle(workflowId, runId).fetchHistory();
      const events: HistoryEvent[] = history.events ?? [];
      await decodeEventInputs(events); // Temporal keeps them encrypted
      runs.push({ runId, events });
      runId = events[events.length - 1]?.workflowExecutionContinuedAsNewEventAttributes?.newExecutionRunId;
    }
    return runs;
  }
});

/** The inbound message ids the run was signalled, in order, repeats included. */
function messagesSignalled(run: Run): string[] {
  return run.events.flatMap((event) => {
    const signalled = event.workflowExecutionSignaledEventAttributes;
    if (signalled?.signalName !== inboundMessageSignal.name) return [];
    return [defaultPayloadConverter.fromPayload<InboundMessageInput>(signalled.input!.payloads![0]! as any).inboundMessageId];
  });
}
