import { DateTime } from 'luxon';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { customerConversation, initialState } from '../../src/workflows/conversation.js';
import { conversationWorkflowId } from '../../src/workflows/ids.js';
import { agentReplyUpdate, cancelReplyUpdate } from '../../src/workflows/messages.js';
import { ALICE, BOB, nextLocalTime, useWorkflowHarness } from '../support/workflow-harness.js';

const FRIDAY = 5;
const MONDAY = 1;
const MINUTE = 60_000;
// Server time runs on in real time while the workflow and its activities take their turns (tens of ms).
const PROMPTLY = 10_000;

describe('undo send and send later in the conversation workflow (time skipping)', () => {
  const t = useWorkflowHarness({ beforeAll, afterAll, beforeEach });

  /** An assigned conversation on Friday evening in Berlin, and the next Monday 09:00 there. */
  async function fridayEvening(taskQueue: string) {
    await t.sleepUntil(nextLocalTime(await t.env.currentTimeMs(), 'Europe/Berlin', FRIDAY, '18:00'));
    const monday = nextLocalTime(await t.env.currentTimeMs(), 'Europe/Berlin', MONDAY, '09:00');
    expect(DateTime.fromJSDate(monday, { zone: 'Europe/Berlin' }).toFormat('cccc HH:mm')).toBe('Monday 09:00');
    const handle = await t.startConversation(taskQueue);
    await t.waitForStage(handle, 'assigned');
    return { handle, monday };
  }

  it('sends a reply scheduled for Monday 09:00 Europe/Berlin then, and not before', async () => {
    await t.withWorker(async (taskQueue) => {
      const { handle, monday } = await fridayEvening(taskQueue);

      const written = await handle.executeUpdate(agentReplyUpdate, {
        args: [{ author: ALICE, text: 'We will call you on Monday.', sendAt: monday.getTime() }],
      });
      expect(written.scheduledFor).toBe(monday.toISOString());
      const [write] = await t.waitForCalls('writeAgentReply');
      expect(write!.input.scheduledFor).toBe(monday.toISOString());
      await vi.waitFor(async () =>
        expect(await t.timerSummaries(handle)).toContain(
          `Sending the reply of Alice Agent at ${monday.toISOString()} unless undone or the customer writes first`,
        ),
      );

      await t.sleepUntil(monday.getTime() - MINUTE);
      expect(t.callsOf('deliverOutbox')).toHaveLength(0);

      await t.env.sleep(2 * MINUTE);
      const [delivery] = await t.waitForCalls('deliverOutbox');
      expect(delivery!.input.outboxId).toBe(written.outboundMessageId);
      expect(delivery!.at).toBeGreaterThanOrEqual(monday.getTime());
      expect(delivery!.at).toBeLessThan(monday.getTime() + PROMPTLY);
      expect(t.callsOf('releaseScheduledReply').map((call) => call.input.outboxId)).toEqual([written.outboundMessageId]);
      expect(t.callsOf('cancelScheduledReply')).toHaveLength(0);
    });
  });

  it('sends nothing when the customer writes before the scheduled moment, and the cancellation says why', async () => {
    await t.withWorker(async (taskQueue) => {
      const { handle, monday } = await fridayEvening(taskQueue);
      const written = await handle.executeUpdate(agentReplyUpdate, {
        args: [{ author: ALICE, text: 'We will call you on Monday.', sendAt: monday.getTime() }],
      });

      await t.sleepUntil(monday.getTime() - 12 * 3600 * 1000); // Sunday night the customer writes again
      await t.mailArrives(handle, 'm2');
      const [cancel] = await t.waitForCalls('cancelScheduledReply');
      expect(cancel!.input).toMatchObject({ outboxId: written.outboundMessageId, reason: 'customer_wrote' });
      expect(cancel!.input.by).toBeUndefined();

      await t.sleepUntil(monday.getTime() + 10 * MINUTE);
      await expect(
        handle.executeUpdate(cancelReplyUpdate, { args: [{ outboxId: written.outboundMessageId, by: ALICE }] }),
      ).rejects.toMatchObject({ cause: { type: 'ReplyNotHeld', message: expect.stringMatching(/no longer waits/) } });
      expect(t.callsOf('deliverOutbox')).toHaveLength(0);
      expect(t.callsOf('releaseScheduledReply')).toHaveLength(0);
    });
  });

  it('waits out the undo grace period as a timer the Temporal UI names, and an undo within it sends nothing', async () => {
    await t.withWorker(async (taskQueue) => {
      const handle = await t.startConversation(taskQueue);
      await t.waitForStage(handle, 'assigned');

      const undone = await handle.executeUpdate(agentReplyUpdate, {
        args: [{ author: ALICE, text: 'Oops, wrong customer.', undoSeconds: 10 }],
      });
      await vi.waitFor(async () =>
        expect(await t.timerSummaries(handle)).toContain('Sending the reply of Alice Agent in 10 s unless undone'),
      );
      // Another agent may undo it too; the timeline says who.
      expect(await handle.executeUpdate(cancelReplyUpdate, { args: [{ outboxId: undone.outboundMessageId, by: BOB }] })).toEqual({
        status: 'cancelled',
      });
      expect(t.callsOf('cancelScheduledReply').map((call) => call.input)).toEqual([
        expect.objectContaining({ outboxId: undone.outboundMessageId, reason: 'undone', by: BOB }),
      ]);

      // A reply a customer mail does not cancel (undo send only), and that goes out after its grace period.
      const kept = await handle.executeUpdate(agentReplyUpdate, {
        args: [{ author: ALICE, text: 'Your parcel is on its way.', undoSeconds: 10 }],
      });
      await t.mailArrives(handle, 'm2');
      await t.env.sleep(MINUTE);
      const [delivery] = await t.waitForCalls('deliverOutbox');
      expect(delivery!.input.outboxId).toBe(kept.outboundMessageId);
      expect(t.callsOf('deliverOutbox')).toHaveLength(1);
      await expect(
        handle.executeUpdate(cancelReplyUpdate, { args: [{ outboxId: kept.outboundMessageId, by: ALICE }] }),
      ).rejects.toMatchObject({ cause: { type: 'ReplyNotHeld', message: expect.stringMatching(/no longer waits/) } });
    });
  });

  it('keeps the replies a run held back when it continues as new: the next run sends them at their moment', async () => {
    await t.withWorker(async (taskQueue) => {
      const conversationId = `conversation-${taskQueue}`;
      const sendAt = (await t.env.currentTimeMs()) + 2 * 3600 * 1000;
      // The state a run hands over with continue-as-new while a reply waits.
      const handle = await t.env.client.workflow.start(customerConversation, {
        workflowId: conversationWorkflowId(conversationId),
        taskQueue,
        args: [
          {
            conversationId,
            state: {
              ...initialState(conversationId),
              stage: 'assigned',
              known: true,
              assignee: ALICE,
              details: 'Assigned to Alice Agent; open until resolved',
              scheduledReplies: [{ outboxId: 'held-reply', author: ALICE, sendAt, cancelsOnCustomerMail: true }],
            },
          },
        ],
      });
      await vi.waitFor(async () =>
        expect(await t.timerSummaries(handle)).toContain(
          `Sending the reply of Alice Agent at ${new Date(sendAt).toISOString()} unless undone or the customer writes first`,
        ),
      );
      expect(t.callsOf('deliverOutbox')).toHaveLength(0);

      await t.sleepUntil(sendAt + MINUTE);
      const [delivery] = await t.waitForCalls('deliverOutbox');
      expect(delivery!.input.outboxId).toBe('held-reply');
      expect(delivery!.at).toBeGreaterThanOrEqual(sendAt);
    });
  });
});
