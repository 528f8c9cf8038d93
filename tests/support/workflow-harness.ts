import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, DefaultLogger, Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import type { WorkflowHandle } from '@temporalio/client';
import { DateTime } from 'luxon';
import type { AiAnswer } from '../../src/ai/index.js';
import type { Activities } from '../../src/activities/index.js';
import type { ConversationContext } from '../../src/activities/conversation.js';
import type { CustomerMessageFacts } from '../../src/domain/conversation.js';
import type { RoutingDecision } from '../../src/activities/routing.js';
import { addBusinessTime, describeInstant, isOpenAt, nextOpening, type BusinessHours } from '../../src/domain/business-hours.js';
import { raisePriority, type Priority } from '../../src/domain/routing-rules.js';
import { workflowBundleOptions } from '../../src/worker.js';
import { customerConversation } from '../../src/workflows/conversation.js';
import { conversationWorkflowId } from '../../src/workflows/ids.js';
import {
  conversationSnapshotQuery,
  inboundMessageSignal,
  type Actor,
  type ConversationSnapshot,
} from '../../src/workflows/messages.js';
import { historyPayloadValue } from './payloads.js';
import { quietTemporalRuntime, TEST_DATA_CONVERTER } from './stack.js';
import { createTimeSkippingEnvironment } from './time-skipping.js';

// Workflow tests on the time-skipping server with stub activities over a small in-memory world.
// The stubs compute business hours and SLA deadlines with the real domain functions, at the
// server's (skipped) time, so a test can wait through a weekend or a DST night in milliseconds.

export const HOUR = 3600 * 1000;
export const ALICE: Actor = { id: 'agent-alice', name: 'Alice Agent' };
export const BOB: Actor = { id: 'agent-bob', name: 'Bob Agent' };
export const MIA: Actor = { id: 'ai-mia', name: 'Mia' };

/** What the stub activities saw, with the (skipped) server time of each call. */
export interface Call {
  name: keyof Activities;
  at: number;
  input: any;
}

/** The state the stub activities answer from; tests change it between steps. */
export interface StubWorld {
  context: ConversationContext;
  route: RoutingDecision;
  /** The channel's business hours when switched on. */
  hours: BusinessHours | null;
  slaSeconds: number | null;
  /**
   * Answers the AI agent gives, in order; an Error makes that call fail (every retry takes the next entry);
   * a promise is a provider still drafting until the test settles it.
   */
  aiAnswers: Array<AiAnswer | Error | Promise<AiAnswer>>;
  /** Who the queue gives the conversation to (null: nobody has capacity). */
  nextAgent: Actor | null;
  /** Who an SLA breach offers it to. */
  offerTo: Actor | null;
  priority: Priority;
  /**
   * How the mail server answers a send's first try (a local activity): 'slow' fails it as a timeout would, 'refuses'
   * refuses the mail for good (DeliveryFailed). The activity after it always sends.
   */
  firstTry?: 'slow' | 'refuses';
  /** How the customer rated the survey by the time the conversation closes (the API stores ratings). */
  csatRating?: number;
}

/**
 * Customer mails are named by what they say: `auto-…` is an auto-reply, `…-person` asks for a
 * person, `…-thanks` confirms the answer; anything else is an ordinary question.
 */
export function factsOf(inboundMessageId: string): CustomerMessageFacts {
  const auto = inboundMessageId.startsWith('auto');
  return {
    inboundMessageId,
    classification: auto ? 'auto_reply' : 'ordinary',
    asksForPerson: !auto && inboundMessageId.endsWith('-person'),
    confirmsResolution: !auto && inboundMessageId.endsWith('-thanks'),
  };
}

/** Monday to Friday 09:00–17:00 in Berlin, no holidays. */
export function officeHours(): BusinessHours {
  const day = [{ start: '09:00', end: '17:00' }];
  return {
    timeZone: 'Europe/Berlin',
    weekly: { monday: day, tuesday: day, wednesday: day, thursday: day, friday: day },
    closedDates: [],
  };
}

/** The first instant after `from` that reads `time` ('HH:mm') on `weekday` (1 = Monday … 7 = Sunday) in `timeZone`. */
export function nextLocalTime(from: number, timeZone: string, weekday: number, time: string): Date {
  const [hour, minute] = time.split(':').map(Number);
  const at = (day: DateTime) => day.set({ hour, minute, second: 0, millisecond: 0 });
  let candidate = at(DateTime.fromMillis(from, { zone: timeZone }));
  while (candidate.weekday !== weekday || candidate.toMillis() <= from) candidate = at(candidate.plus({ days: 1 }));
  return candidate.toJSDate();
}

export function defaultWorld(): StubWorld {
  return {
    context: {
      conversationId: 'c',
      channelId: 'ch',
      status: 'open',
      assignee: null,
      greetingEnabled: false,
      greetingSent: false,
      outOfOfficeSent: false,
      csatEnabled: true,
      csatDelaySeconds: 3 * 3600,
      heardFromPerson: true,
      automaticMailBlocked: null,
      aiConfidenceThreshold: 0.6,
      aiMaxTurns: 3,
      closeAfterSeconds: 3 * 24 * 3600,
    },
    route: { rule: null, handler: { kind: 'humans' }, priority: 'normal', insideBusinessHours: true },
    hours: null,
    slaSeconds: null,
    aiAnswers: [],
    nextAgent: ALICE,
    offerTo: BOB,
    priority: 'normal',
  };
}

export interface WorkflowHarness {
  env: TestWorkflowEnvironment;
  world: StubWorld;
  calls: Call[];
  callsOf(name: keyof Activities): Call[];
  /** Runs a worker with the stub activities for the test's body; terminates what it leaves waiting. */
  withWorker(run: (taskQueue: string) => Promise<void>): Promise<void>;
  /** Starts a conversation workflow with its first customer mail. */
  startConversation(taskQueue: string, firstMessageId?: string): Promise<WorkflowHandle<typeof customerConversation>>;
  /** A customer mail arrives as ingest signals it: with its facts, named by `factsOf`. */
  mailArrives(handle: WorkflowHandle, inboundMessageId: string): Promise<void>;
  waitForStage(handle: WorkflowHandle, stage: string): Promise<void>;
  /** Waits until the stub activities saw at least `count` calls of `name`; returns those calls. */
  waitForCalls(name: keyof Activities, count?: number): Promise<Call[]>;
  snapshot(handle: WorkflowHandle): Promise<ConversationSnapshot>;
  /** Skips the server's clock forward to `at` (no-op when it is already past). */
  sleepUntil(at: Date | number): Promise<void>;
  /** The summaries of the timers the workflow started, as the Temporal UI shows them. */
  timerSummaries(handle: WorkflowHandle): Promise<string[]>;
}

/** Call in a describe block: one time-skipping server and one workflow bundle per test file. */
export function useWorkflowHarness(hooks: {
  beforeAll: (fn: () => Promise<void>, timeout?: number) => void;
  afterAll: (fn: () => Promise<void>) => void;
  beforeEach: (fn: () => void) => void;
}): WorkflowHarness {
  let bundle: WorkflowBundleWithSourceMap;
  let runs = 0;
  const harness = {
    world: defaultWorld(),
    calls: [] as Call[],
  } as WorkflowHarness;

  hooks.beforeAll(async () => {
    await quietTemporalRuntime();
    harness.env = await createTimeSkippingEnvironment();
    bundle = await bundleWorkflowCode({ ...workflowBundleOptions, logger: new DefaultLogger('WARN') });
  });
  hooks.afterAll(async () => {
    await harness.env?.teardown();
  });
  hooks.beforeEach(() => {
    harness.world = defaultWorld();
    harness.calls = [];
  });

  const now = () => harness.env.currentTimeMs();
  /** Records the call; returns its server time, so a stub computes at the time the test sees. */
  const record = async (name: keyof Activities, input: unknown): Promise<number> => {
    const at = await now();
    harness.calls.push({ name, at, input });
    return at;
  };

  let activitiesRunning = 0;
  /** Counts the stub activities in progress: a test's workflow is terminated only when none is. */
  function counted(stubs: Partial<Activities>): Partial<Activities> {
    const wrap =
      (stub: (...args: any[]) => Promise<unknown>) =>
      async (...args: any[]) => {
        activitiesRunning++;
        try {
          return await stub(...args);
        } finally {
          activitiesRunning--;
        }
      };
    return Object.fromEntries(Object.entries(stubs).map(([name, stub]) => [name, wrap(stub as any)])) as Partial<Activities>;
  }

  /** Until no stub activity has run for a moment (the workflow task after the last one included), at most 10 s. */
  async function settle() {
    let quietSince = Date.now();
    for (const deadline = Date.now() + 10_000; Date.now() < deadline;) {
      if (activitiesRunning > 0) quietSince = Date.now();
      else if (Date.now() - quietSince >= 200) return;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }

  function stubActivities(): Partial<Activities> {
    const world = () => harness.world;
    const sent = (input: { outboxId: string }) => ({ outboundMessageId: input.outboxId, messageId: `<${input.outboxId}@test>` });
    /** A send's first try, as the world's mail server answers it; nothing is recorded as sent when it fails. */
    const firstTry = () => {
      if (!Context.current().info.isLocal || !world().firstTry) return;
      if (world().firstTry === 'refuses') throw ApplicationFailure.nonRetryable('550 mailbox unavailable', 'DeliveryFailed');
      throw new Error('the mail server did not answer in time');
    };
    return {
      loadConversation: async (input) => (
        await record('loadConversation', input),
        { ...world().context, conversationId: input.conversationId }
      ),
      readCustomerMessages: async (input) => (await record('readCustomerMessages', input), input.inboundMessageIds.map(factsOf)),
      recordStage: async (input) => {
        await record('recordStage', input);
      },
      recordAutomaticMailSuppressed: async (input) => {
        await record('recordAutomaticMailSuppressed', input);
      },
      recordEscalation: async (input) => {
        await record('recordEscalation', input);
      },
      routeConversation: async (input) => {
        const at = new Date(await record('routeConversation', input));
        const { route, hours } = world();
        // As the activity does: never inside business hours while the channel's hours are closed.
        return { ...route, insideBusinessHours: route.insideBusinessHours && (!hours || isOpenAt(hours, at)) };
      },
      triageConversation: async (input) => {
        const stubs = stubActivities();
        const context = await stubs.loadConversation!(input);
        if (context.status !== 'open' || context.assignee) return { context, route: null };
        const fromPerson = input.fromPerson ?? context.heardFromPerson;
        return { context, route: await stubs.routeNewConversation!({ conversationId: input.conversationId, fromPerson }) };
      },
      routeNewConversation: async (input) => {
        const stubs = stubActivities();
        const route = await stubs.routeConversation!(input);
        const slaChecked = !(route.handler.kind === 'ai' && input.fromPerson);
        const sla = slaChecked ? await stubs.startSlaClock!(input) : null;
        return { ...route, sla, slaChecked, hours: await stubs.checkBusinessHours!(input) };
      },
      checkBusinessHours: async (input) => {
        const hours = world().hours;
        const at = new Date(await record('checkBusinessHours', input));
        const opensAt = hours ? nextOpening(hours, at) : at;
        if (!hours || !opensAt || opensAt.getTime() <= at.getTime()) return { open: true, opensAt: null, opensAtText: null };
        return { open: false, opensAt: opensAt.toISOString(), opensAtText: describeInstant(hours, opensAt) };
      },
      startSlaClock: async (input) => {
        const start = new Date(await record('startSlaClock', input));
        const { hours, slaSeconds } = world();
        if (!slaSeconds) return null;
        const dueAt = hours ? addBusinessTime(hours, start, slaSeconds * 1000)! : new Date(start.getTime() + slaSeconds * 1000);
        return { dueAt: dueAt.toISOString(), dueAtText: hours ? describeInstant(hours, dueAt) : dueAt.toISOString() };
      },
      markSlaBreached: async (input) => {
        await record('markSlaBreached', input);
        world().priority = raisePriority(world().priority);
        return { priority: world().priority };
      },
      offerToNextAgent: async (input) => (await record('offerToNextAgent', input), { assignee: world().offerTo }),
      assignFromQueue: async (input) => (
        await record('assignFromQueue', input),
        { assignee: world().nextAgent, othersAssigned: [] }
      ),
      assignManually: async (input) => {
        await record('assignManually', input);
        return [ALICE, BOB].find((agent) => agent.id === input.assigneeId) ?? { id: input.assigneeId, name: input.assigneeId };
      },
      unassign: async (input) => {
        await record('unassign', input);
      },
      takeBackConversations: async (input) => (await record('takeBackConversations', input), []),
      markResolved: async (input) => (await record('markResolved', input), { othersAssigned: [] }),
      markReopened: async (input) => {
        await record('markReopened', input);
      },
      markClosed: async (input) => (await record('markClosed', input), { csatRating: world().csatRating ?? null }),
      recordCsatRating: async (input) => {
        await record('recordCsatRating', input);
      },
      answerWithAi: async (input) => {
        await record('answerWithAi', input);
        const next = world().aiAnswers.shift();
        if (!next) throw new Error('the test gave the AI agent no answer for this turn');
        if (next instanceof Error) throw next;
        return next;
      },
      sendGreeting: async (input) => (firstTry(), await record('sendGreeting', input), sent(input)),
      writeAgentReply: async (input) => (await record('writeAgentReply', input), sent(input)),
      deliverOutbox: async (input) => (firstTry(), await record('deliverOutbox', input), null),
      releaseScheduledReply: async (input) => (await record('releaseScheduledReply', input), true),
      cancelScheduledReply: async (input) => {
        await record('cancelScheduledReply', input);
      },
      sendAiReply: async (input) => (await record('sendAiReply', input), sent(input)),
      sendHandoverNote: async (input) => (await record('sendHandoverNote', input), sent(input)),
      sendOutOfOffice: async (input) => {
        await record('sendOutOfOffice', input);
        world().context.outOfOfficeSent = true;
        return sent(input);
      },
      sendCsatSurvey: async (input) => {
        await record('sendCsatSurvey', input);
        return { expiresAt: new Date((await now()) + 7 * 24 * HOUR).toISOString() };
      },
    };
  }

  harness.callsOf = (name) => harness.calls.filter((call) => call.name === name);

  harness.withWorker = async (run) => {
    const taskQueue = `workflow-test-${++runs}`;
    const worker = await Worker.create({
      connection: harness.env.nativeConnection,
      taskQueue,
      workflowBundle: bundle,
      dataConverter: TEST_DATA_CONVERTER,
      activities: counted(stubActivities()),
    });
    const handle = harness.env.client.workflow.getHandle(conversationWorkflowId(`conversation-${taskQueue}`));
    await worker.runUntil(async () => {
      try {
        await run(taskQueue);
      } finally {
        // A workflow left waiting without its worker would hold the shared test clock still for the next
        // test, and so does one terminated with an activity or workflow task in flight (until that task's
        // timeout, in real time): let the worker finish what it runs, then terminate while it still polls.
        await settle();
        await (await import('./history-recorder.js')).recordWorkflowHistory(harness.env.client, handle.workflowId);
        await handle.terminate('test finished').catch(() => undefined);
      }
    });
  };

  harness.startConversation = (taskQueue, firstMessageId = 'm1') => {
    const conversationId = `conversation-${taskQueue}`;
    const { inboundMessageId, ...facts } = factsOf(firstMessageId);
    return harness.env.client.workflow.signalWithStart(customerConversation, {
      workflowId: conversationWorkflowId(conversationId),
      taskQueue,
      args: [{ conversationId }],
      signal: inboundMessageSignal,
      signalArgs: [{ inboundMessageId, facts }],
    });
  };

  harness.mailArrives = async (handle, id) => {
    const { inboundMessageId, ...facts } = factsOf(id);
    await handle.signal(inboundMessageSignal, { inboundMessageId, facts });
  };

  harness.waitForStage = async (handle, stage) => {
    let seen = '';
    for (let attempt = 0; attempt < 400; attempt++) {
      seen = (await handle.query(conversationSnapshotQuery)).stage;
      if (seen === stage) return;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    throw new Error(`the conversation never reached stage ${stage} (it is in ${seen})`);
  };

  harness.waitForCalls = async (name, count = 1) => {
    for (let attempt = 0; attempt < 400; attempt++) {
      const calls = harness.callsOf(name);
      if (calls.length >= count) return calls;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    throw new Error(`${name} was called ${harness.callsOf(name).length} times, not ${count}`);
  };

  harness.snapshot = (handle) => handle.query(conversationSnapshotQuery);

  harness.sleepUntil = async (at) => {
    const ms = new Date(at).getTime() - (await now());
    if (ms > 0) await harness.env.sleep(ms);
  };

  harness.timerSummaries = async (handle) => {
    const history = await handle.fetchHistory();
    return Promise.all(
      (history.events ?? [])
        .filter((event) => event.timerStartedEventAttributes)
        .map(async (event) => {
          const summary = event.userMetadata?.summary;
          return summary ? String(await historyPayloadValue(summary)) : '';
        }),
    );
  };

  return harness;
}
