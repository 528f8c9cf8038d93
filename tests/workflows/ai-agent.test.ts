import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { AiAnswer } from '../../src/ai/index.js';
import { nextOpening } from '../../src/domain/business-hours.js';
import { agentReplyUpdate } from '../../src/workflows/messages.js';
import { ALICE, BOB, MIA, nextLocalTime, officeHours, useWorkflowHarness, type Call } from '../support/workflow-harness.js';

const FRIDAY = 5;
const MINUTE = 60_000;
// Server time runs on in real time while the workflow and its activities take their turns (tens of ms).
const PROMPTLY = 10_000;

const sure = (text = 'Reset it under Settings › Password.'): AiAnswer => ({ text, confidence: 0.9, sourceArticleIds: ['kb-1'] });
const unsure: AiAnswer = { text: 'Maybe try turning it off and on?', confidence: 0.3, sourceArticleIds: [] };

describe('conversationWorkflow with an AI agent (time skipping)', () => {
  const t = useWorkflowHarness({ beforeAll, afterAll, beforeEach });

  beforeEach(() => {
    t.world.route = {
      rule: null,
      handler: { kind: 'ai', aiAgent: MIA, answersOutsideBusinessHours: true },
      priority: 'normal',
      insideBusinessHours: true,
    };
  });

  const order = (...calls: Call[]) => calls.map((call) => t.calls.indexOf(call));

  /** The handover: escalation recorded with the reason, then the note to the customer alongside the queue assigning a person. */
  async function expectEscalatedToPeople(handle: Parameters<typeof t.snapshot>[0], reason: RegExp) {
    await t.waitForStage(handle, 'assigned');
    const [escalation] = t.callsOf('recordEscalation');
    const [note] = await t.waitForCalls('sendHandoverNote');
    const [assignment] = t.callsOf('assignFromQueue');
    expect(escalation!.input).toMatchObject({ aiAgentId: MIA.id, reason: expect.stringMatching(reason) });
    expect(note!.input).toMatchObject({ aiAgentId: MIA.id });
    expect(assignment).toBeDefined();
    // The note never holds the assignment back (the mail server may be away): both follow the escalation.
    const [escalated, noted, assigned] = order(escalation!, note!, assignment!);
    expect(noted).toBeGreaterThan(escalated!);
    expect(assigned).toBeGreaterThan(escalated!);
    expect(t.callsOf('recordEscalation')).toHaveLength(1);
    expect(await t.snapshot(handle)).toMatchObject({ stage: 'assigned', assigneeId: ALICE.id, aiAgentId: null });
  }

  it('sends an answer whose confidence reaches the threshold and keeps the conversation with the AI agent', async () => {
    await t.withWorker(async (taskQueue) => {
      t.world.aiAnswers = [sure()];
      const handle = await t.startConversation(taskQueue);
      const [reply] = await t.waitForCalls('sendAiReply');
      expect(reply!.input).toMatchObject({ aiAgentId: MIA.id, text: sure().text });
      expect(await t.snapshot(handle)).toMatchObject({ stage: 'ai', aiAgentId: MIA.id, assigneeId: null });
      expect(t.callsOf('recordEscalation')).toHaveLength(0);
      expect(t.callsOf('assignFromQueue')).toHaveLength(0);
    });
  });

  it('escalates to people when the customer asks for a person after an AI answer', async () => {
    await t.withWorker(async (taskQueue) => {
      t.world.aiAnswers = [sure()];
      const handle = await t.startConversation(taskQueue);
      await t.waitForCalls('sendAiReply');
      await t.mailArrives(handle, 'm2-person');
      await expectEscalatedToPeople(handle, /the customer asked for a person/);
      expect(t.callsOf('answerWithAi')).toHaveLength(1);
    });
  });

  it('escalates to people without sending an answer whose confidence is below the threshold', async () => {
    await t.withWorker(async (taskQueue) => {
      t.world.aiAnswers = [unsure];
      const handle = await t.startConversation(taskQueue);
      await expectEscalatedToPeople(handle, /confidence 0\.30 is below the channel's threshold 0\.6/);
      expect(t.callsOf('sendAiReply')).toHaveLength(0);
    });
  });

  it('escalates to people when the channel’s maximum of AI turns is reached without a resolution', async () => {
    await t.withWorker(async (taskQueue) => {
      t.world.context.aiMaxTurns = 2;
      t.world.aiAnswers = [sure('first'), sure('second'), sure('never sent')];
      const handle = await t.startConversation(taskQueue);
      await t.waitForCalls('sendAiReply');
      await t.mailArrives(handle, 'm2');
      await t.waitForCalls('sendAiReply', 2);
      await t.mailArrives(handle, 'm3');
      await expectEscalatedToPeople(handle, /no resolution after 2 AI answers \(the channel allows 2\)/);
      expect(t.callsOf('sendAiReply').map((call) => call.input.text)).toEqual(['first', 'second']);
      expect(t.callsOf('answerWithAi')).toHaveLength(2);
    });
  });

  it('escalates to people when the AI provider still fails after its three attempts', async () => {
    await t.withWorker(async (taskQueue) => {
      t.world.aiAnswers = [new Error('provider down'), new Error('provider down'), new Error('provider down'), sure()];
      const handle = await t.startConversation(taskQueue);
      await t.env.sleep(MINUTE); // skips the retry intervals (2 s, 4 s)
      await expectEscalatedToPeople(handle, /^the AI provider failed: .*provider down/);
      expect(t.callsOf('answerWithAi')).toHaveLength(3);
      expect(t.callsOf('sendAiReply')).toHaveLength(0);
    });
  });

  it('after an escalation outside business hours, keeps the conversation for people and assigns it at the opening', async () => {
    await t.withWorker(async (taskQueue) => {
      const hours = officeHours();
      t.world.hours = hours;
      t.world.route = { ...t.world.route, insideBusinessHours: false };
      t.world.aiAnswers = [sure()];
      await t.sleepUntil(nextLocalTime(await t.env.currentTimeMs(), hours.timeZone, FRIDAY, '18:00'));
      const opening = nextOpening(hours, new Date(await t.env.currentTimeMs()))!;

      const handle = await t.startConversation(taskQueue);
      await t.waitForCalls('sendAiReply');
      await t.mailArrives(handle, 'm2-person');
      await t.waitForStage(handle, 'waiting_for_hours');
      expect(await t.waitForCalls('sendHandoverNote')).toHaveLength(1);
      expect(await t.waitForCalls('sendOutOfOffice')).toHaveLength(1);

      await t.sleepUntil(opening.getTime() + MINUTE);
      await expectEscalatedToPeople(handle, /the customer asked for a person/);
      expect(t.callsOf('assignFromQueue')[0]!.at).toBeGreaterThanOrEqual(opening.getTime());
    });
  });

  it('escalates before any AI answer when the first mail asks for a person', async () => {
    await t.withWorker(async (taskQueue) => {
      t.world.aiAnswers = [sure()];
      const handle = await t.startConversation(taskQueue, 'm1-person');
      await expectEscalatedToPeople(handle, /the customer asked for a person/);
      expect(t.callsOf('answerWithAi')).toHaveLength(0);
      expect(t.callsOf('sendAiReply')).toHaveLength(0);
    });
  });

  it('is resolved by the AI agent when the customer confirms the answer, and the CSAT survey names the AI agent', async () => {
    await t.withWorker(async (taskQueue) => {
      t.world.aiAnswers = [sure()];
      const handle = await t.startConversation(taskQueue);
      await t.waitForCalls('sendAiReply');
      await t.mailArrives(handle, 'm2-thanks');
      await t.waitForStage(handle, 'resolved');
      const resolvedBy = { kind: 'ai_agent', id: MIA.id };
      expect(t.callsOf('markResolved').map((call) => call.input.resolvedBy)).toEqual([resolvedBy]);
      expect(t.callsOf('recordEscalation')).toHaveLength(0);
      expect(t.callsOf('assignFromQueue')).toHaveLength(0);

      await t.env.sleep(t.world.context.csatDelaySeconds * 1000);
      await t.waitForStage(handle, 'csat');
      expect(t.callsOf('sendCsatSurvey')[0]!.input.resolvedBy).toEqual(resolvedBy);
    });
  });

  it('does not answer outside business hours when the AI agent keeps them: it answers once they open', async () => {
    await t.withWorker(async (taskQueue) => {
      const hours = officeHours();
      t.world.hours = hours;
      t.world.route = {
        rule: null,
        handler: { kind: 'ai', aiAgent: MIA, answersOutsideBusinessHours: false },
        priority: 'normal',
        insideBusinessHours: false,
      };
      t.world.aiAnswers = [sure()];
      await t.sleepUntil(nextLocalTime(await t.env.currentTimeMs(), hours.timeZone, FRIDAY, '18:00'));
      const opening = nextOpening(hours, new Date(await t.env.currentTimeMs()))!;

      const handle = await t.startConversation(taskQueue);
      await t.waitForStage(handle, 'waiting_for_hours');
      await t.sleepUntil(opening.getTime() - MINUTE);
      expect(t.callsOf('answerWithAi')).toHaveLength(0);

      await t.env.sleep(2 * MINUTE);
      const [reply] = await t.waitForCalls('sendAiReply');
      expect(reply!.input).toMatchObject({ aiAgentId: MIA.id, text: sure().text });
      const [answer] = t.callsOf('answerWithAi');
      expect(answer!.at).toBeGreaterThanOrEqual(opening.getTime());
      expect(answer!.at).toBeLessThan(opening.getTime() + PROMPTLY);
      expect(await t.snapshot(handle)).toMatchObject({ stage: 'ai', aiAgentId: MIA.id });
      expect(t.callsOf('assignFromQueue')).toHaveLength(0);
    });
  });

  it('does not send the AI draft when an agent replied while the AI agent was still drafting, and gives it to that agent', async () => {
    await t.withWorker(async (taskQueue) => {
      let finishDraft!: (answer: AiAnswer) => void;
      t.world.aiAnswers = [new Promise((resolve) => (finishDraft = resolve))];
      const handle = await t.startConversation(taskQueue);
      try {
        await t.waitForCalls('answerWithAi');
        await handle.executeUpdate(agentReplyUpdate, { args: [{ author: BOB, text: 'Let me take this one.' }] });
      } finally {
        finishDraft(sure()); // the provider answers only now, after the agent's reply went out
      }
      await t.waitForStage(handle, 'assigned');
      expect(await t.snapshot(handle)).toMatchObject({ stage: 'assigned', assigneeId: BOB.id, aiAgentId: null });
      expect(t.callsOf('assignManually')[0]!.input).toMatchObject({ assigneeId: BOB.id, byId: BOB.id });
      expect(t.callsOf('sendAiReply')).toHaveLength(0);
    });
  });

  it('hands the conversation to an agent who replies while the AI agent has it', async () => {
    await t.withWorker(async (taskQueue) => {
      t.world.aiAnswers = [sure()];
      const handle = await t.startConversation(taskQueue);
      await t.waitForCalls('sendAiReply');
      await handle.executeUpdate(agentReplyUpdate, { args: [{ author: BOB, text: 'Let me take this one.' }] });
      await t.waitForStage(handle, 'assigned');
      expect(t.callsOf('writeAgentReply')[0]!.input).toMatchObject({ authorId: BOB.id });
      expect(t.callsOf('assignManually')[0]!.input).toMatchObject({ assigneeId: BOB.id, byId: BOB.id });
      expect(await t.snapshot(handle)).toMatchObject({ stage: 'assigned', assigneeId: BOB.id, aiAgentId: null });
      expect(t.callsOf('recordEscalation')).toHaveLength(0);
      expect(t.callsOf('assignFromQueue')).toHaveLength(0);
    });
  });
});
