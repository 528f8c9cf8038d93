import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, DefaultLogger, Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Activities } from '../../src/activities/index.js';
import type { ConversationContext } from '../../src/activities/conversation.js';
import { WORKFLOWS_PATH } from '../../src/worker.js';
import { conversationWorkflow } from '../../src/workflows/conversation.js';
import { conversationWorkflowId } from '../../src/workflows/ids.js';
import { quietTemporalRuntime } from '../support/stack.js';
import { createTimeSkippingEnvironment } from '../support/time-skipping.js';
import {
  conversationSnapshotQuery,
  csatRatingSignal,
  inboundMessageSignal,
  resolveUpdate,
} from '../../src/workflows/messages.js';

const HOUR = 3600 * 1000;
const CSAT_DELAY_SECONDS = 3 * 3600;
const LINK_VALIDITY_MS = 7 * 24 * HOUR;

/** What the stub activities saw, with the (skipped) test-server time of each call. */
interface Call {
  name: keyof Activities;
  at: number;
  input: any;
}

describe('conversationWorkflow after resolution (time skipping)', () => {
  let env: TestWorkflowEnvironment;
  let bundle: WorkflowBundleWithSourceMap;
  let calls: Call[];
  let conversationCount = 0;

  beforeAll(async () => {
    quietTemporalRuntime();
    env = await createTimeSkippingEnvironment();
    bundle = await bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, logger: new DefaultLogger('WARN') });
  });

  afterAll(async () => {
    await env?.teardown();
  });

  beforeEach(() => {
    calls = [];
  });

  function stubActivities(overrides: Partial<ConversationContext> = {}): Partial<Activities> {
    const record = async (name: keyof Activities, input: unknown) => {
      calls.push({ name, at: await env.currentTimeMs(), input });
    };
    const context: ConversationContext = {
      conversationId: 'c',
      channelId: 'ch',
      status: 'open',
      assignee: null,
      greetingEnabled: false,
      greetingSent: false,
      csatEnabled: true,
      csatDelaySeconds: CSAT_DELAY_SECONDS,
      heardFromPerson: true,
      automaticMailBlocked: null,
      ...overrides,
    };
    return {
      loadConversation: async (input) => (
        await record('loadConversation', input),
        { ...context, conversationId: input.conversationId }
      ),
      // Ids starting with "auto" stand for out-of-office replies.
      classifyInboundMessages: async ({ inboundMessageIds }) =>
        inboundMessageIds.map((id) => (id.startsWith('auto') ? 'auto_reply' : 'ordinary')),
      recordAutomaticMailSuppressed: (input) => record('recordAutomaticMailSuppressed', input),
      assignRoundRobin: async (input) => (await record('assignRoundRobin', input), { id: 'agent-1', name: 'Alice Agent' }),
      markResolved: (input) => record('markResolved', input),
      markReopened: (input) => record('markReopened', input),
      markClosed: (input) => record('markClosed', input),
      recordCsatRating: (input) => record('recordCsatRating', input),
      sendCsatSurvey: async (input) => {
        await record('sendCsatSurvey', input);
        return { expiresAt: new Date((await env.currentTimeMs()) + LINK_VALIDITY_MS).toISOString() };
      },
    };
  }

  async function withWorker(
    run: (taskQueue: string) => Promise<void>,
    context: Partial<ConversationContext> = {},
  ): Promise<void> {
    const taskQueue = `csat-${++conversationCount}`;
    const worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue,
      workflowBundle: bundle,
      activities: stubActivities(context),
    });
    try {
      await worker.runUntil(run(taskQueue));
    } finally {
      // A workflow left waiting without its worker would hold the shared test clock still for the next test.
      const handle = env.client.workflow.getHandle(conversationWorkflowId(`conversation-${conversationCount}`));
      await handle.terminate('test finished').catch(() => undefined);
    }
  }

  async function startResolvedConversation(taskQueue: string) {
    const conversationId = `conversation-${conversationCount}`;
    const handle = await env.client.workflow.signalWithStart(conversationWorkflow, {
      workflowId: conversationWorkflowId(conversationId),
      taskQueue,
      args: [{ conversationId }],
      signal: inboundMessageSignal,
      signalArgs: [{ inboundMessageId: 'm1' }],
    });
    await waitForStage(handle, 'assigned');
    await handle.executeUpdate(resolveUpdate, { args: [{ resolvedBy: { id: 'agent-1', name: 'Alice Agent' } }] });
    return handle;
  }

  async function waitForStage(
    handle: { query: (q: typeof conversationSnapshotQuery) => Promise<{ stage: string }> },
    stage: string,
  ) {
    for (let attempt = 0; attempt < 200; attempt++) {
      if ((await handle.query(conversationSnapshotQuery)).stage === stage) return;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`the conversation never reached stage ${stage}`);
  }

  const callsOf = (name: keyof Activities) => calls.filter((call) => call.name === name);

  it('sends the survey exactly the configured delay after resolution, not a minute earlier', async () => {
    await withWorker(async (taskQueue) => {
      const handle = await startResolvedConversation(taskQueue);
      const resolvedAt = callsOf('markResolved')[0]!.at;

      await env.sleep(CSAT_DELAY_SECONDS * 1000 - 60_000);
      expect(callsOf('sendCsatSurvey')).toHaveLength(0);

      await env.sleep(120_000);
      await waitForStage(handle, 'csat');
      const [survey] = callsOf('sendCsatSurvey');
      expect(survey!.at - resolvedAt).toBeGreaterThanOrEqual(CSAT_DELAY_SECONDS * 1000);
      expect(survey!.at - resolvedAt).toBeLessThan(CSAT_DELAY_SECONDS * 1000 + 60_000);
    });
  });

  it('records the rating, accepts a changed one, and closes when the link expires', async () => {
    await withWorker(async (taskQueue) => {
      const handle = await startResolvedConversation(taskQueue);
      await env.sleep(CSAT_DELAY_SECONDS * 1000);
      await waitForStage(handle, 'csat');
      const surveyId = callsOf('sendCsatSurvey')[0]!.input.surveyId as string;

      await handle.signal(csatRatingSignal, { surveyId, rating: 2, comment: null });
      await handle.signal(csatRatingSignal, { surveyId: 'from-an-older-resolution', rating: 1, comment: null });
      await env.sleep(24 * HOUR);
      await handle.signal(csatRatingSignal, { surveyId, rating: 4, comment: 'better after a night' });

      const outcome = await handle.result();
      expect(outcome).toEqual({ conversationId: expect.any(String), stage: 'closed' });
      expect(callsOf('recordCsatRating').map((call) => call.input.rating)).toEqual([2, 4]);
      const closedAt = callsOf('markClosed')[0]!.at;
      expect(closedAt - callsOf('sendCsatSurvey')[0]!.at).toBeGreaterThanOrEqual(LINK_VALIDITY_MS);
    });
  });

  it('cancels the survey when the customer writes again during the delay, and reopens to the same agent', async () => {
    await withWorker(async (taskQueue) => {
      const handle = await startResolvedConversation(taskQueue);
      await env.sleep(HOUR);
      await handle.signal(inboundMessageSignal, { inboundMessageId: 'm2' });
      await waitForStage(handle, 'assigned');
      expect(callsOf('markReopened')).toHaveLength(1);
      expect((await handle.query(conversationSnapshotQuery)).assigneeId).toBe('agent-1');

      await env.sleep(CSAT_DELAY_SECONDS * 1000 * 2);
      expect(callsOf('sendCsatSurvey')).toHaveLength(0);
    });
  });

  it('is not reopened by an out-of-office reply during the delay, and still sends the survey', async () => {
    await withWorker(async (taskQueue) => {
      const handle = await startResolvedConversation(taskQueue);
      await env.sleep(HOUR);
      await handle.signal(inboundMessageSignal, { inboundMessageId: 'auto-vacation' });
      await env.sleep(CSAT_DELAY_SECONDS * 1000);
      await waitForStage(handle, 'csat');
      expect(callsOf('markReopened')).toHaveLength(0);
      expect(callsOf('sendCsatSurvey')).toHaveLength(1);
    });
  });

  it('sends no survey where loop safety forbids automatic mail, and says why on the timeline', async () => {
    await withWorker(
      async (taskQueue) => {
        const handle = await startResolvedConversation(taskQueue);
        await env.sleep(CSAT_DELAY_SECONDS * 1000);
        expect(await handle.result()).toEqual({ conversationId: expect.any(String), stage: 'resolved' });
        expect(callsOf('sendCsatSurvey')).toHaveLength(0);
        expect(callsOf('recordAutomaticMailSuppressed')[0]!.input).toMatchObject({
          kind: 'csat_survey',
          reason: 'the recipient is a no-reply address',
        });
      },
      { automaticMailBlocked: 'the recipient is a no-reply address' },
    );
  });
});
