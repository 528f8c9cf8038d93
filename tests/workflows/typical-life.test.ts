import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { agentReplyUpdate, resolveUpdate } from '../../src/workflows/messages.js';
import { ALICE, HOUR, useWorkflowHarness } from '../support/workflow-harness.js';

// The life most conversations live, start to end. Its recorded history (tests/fixtures/histories) is what
// `npm run bench` counts as the history events and actions of a typical conversation.

const CSAT_DELAY_MS = 3 * HOUR;
const QUIET_PERIOD_MS = 3 * 24 * HOUR;

describe('a typical conversation (time skipping)', () => {
  const t = useWorkflowHarness({ beforeAll, afterAll, beforeEach });

  it('greets, is assigned, has two replies each way, is resolved, surveyed, rated and closed', async () => {
    await t.withWorker(async (taskQueue) => {
      t.world.context.greetingEnabled = true;
      const handle = await t.startConversation(taskQueue);
      await t.waitForStage(handle, 'assigned');

      await handle.executeUpdate(agentReplyUpdate, { args: [{ author: ALICE, text: 'Hello, we are on it.' }] });
      await t.mailArrives(handle, 'm2');
      await handle.executeUpdate(agentReplyUpdate, { args: [{ author: ALICE, text: 'Here is the invoice.' }] });
      await t.mailArrives(handle, 'm3');
      await handle.executeUpdate(resolveUpdate, { args: [{ resolvedBy: ALICE }] });

      await t.env.sleep(CSAT_DELAY_MS);
      await t.waitForStage(handle, 'csat');
      t.world.csatRating = 5; // rated on the survey page: the API stores it, the run need not wake up
      await t.env.sleep(QUIET_PERIOD_MS);
      expect(await handle.result()).toEqual({ conversationId: expect.any(String), stage: 'closed' });

      expect(t.callsOf('sendGreeting')).toHaveLength(1);
      expect(t.callsOf('writeAgentReply')).toHaveLength(2);
      expect(t.callsOf('deliverOutbox')).toHaveLength(2);
      expect(t.callsOf('markResolved')).toHaveLength(1);
      expect(t.callsOf('markClosed')).toHaveLength(1);
      // The queue's assignment, the resolution, the survey and the close each record the stage they lead to: no stage
      // takes a local activity of its own.
      expect(t.callsOf('recordStage')).toEqual([]);
      for (const step of ['assignFromQueue', 'markResolved', 'sendCsatSurvey', 'markClosed'] as const) {
        expect(t.callsOf(step).map((call) => call.input.recordsStage)).toEqual([true]);
      }
      // The customer's mails came with their facts: nothing was read back.
      expect(t.callsOf('readCustomerMessages')).toHaveLength(0);
    });
  });
});
