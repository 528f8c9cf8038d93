import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { agentReplyUpdate } from '../../src/workflows/messages.js';
import { ALICE, useWorkflowHarness } from '../support/workflow-harness.js';

// Mail goes out first as a local activity in the workflow task that decided it; when that one try fails, an
// activity sends it (and retries through an outage), with the same outbox row; a refusal for good is final.

describe('sending mail (time skipping)', () => {
  const t = useWorkflowHarness({ beforeAll, afterAll, beforeEach });

  /** The activities the workflow scheduled (not its local activities), by type. */
  async function scheduledActivities(handle: { fetchHistory(): Promise<{ events?: any[] | null }> }): Promise<string[]> {
    const history = await handle.fetchHistory();
    return (history.events ?? []).flatMap((event) => {
      const name = event.activityTaskScheduledEventAttributes?.activityType?.name;
      return name ? [name as string] : [];
    });
  }

  it('sends in the workflow task itself when the mail server answers: no activity', async () => {
    await t.withWorker(async (taskQueue) => {
      t.world.context.greetingEnabled = true;
      const handle = await t.startConversation(taskQueue);
      await t.waitForStage(handle, 'assigned');
      await handle.executeUpdate(agentReplyUpdate, { args: [{ author: ALICE, text: 'Hello, we are on it.' }] });
      await t.waitForCalls('deliverOutbox');

      expect(t.callsOf('sendGreeting')).toHaveLength(1);
      expect(await scheduledActivities(handle)).toEqual([]);
    });
  });

  it('sends the greeting and a reply as activities, once each and with the outbox row of the first try, when that try fails', async () => {
    await t.withWorker(async (taskQueue) => {
      t.world.context.greetingEnabled = true;
      t.world.firstTry = 'slow';
      const handle = await t.startConversation(taskQueue);
      await t.waitForStage(handle, 'assigned');
      const written = await handle.executeUpdate(agentReplyUpdate, { args: [{ author: ALICE, text: 'Hello, we are on it.' }] });
      const [delivered] = await t.waitForCalls('deliverOutbox');
      const [greeted] = await t.waitForCalls('sendGreeting');

      expect(t.callsOf('sendGreeting')).toHaveLength(1);
      expect(t.callsOf('deliverOutbox')).toHaveLength(1);
      expect(delivered!.input.outboxId).toBe(written.outboundMessageId);
      expect(greeted!.input.outboxId).toEqual(expect.any(String));
      expect((await scheduledActivities(handle)).sort()).toEqual(['deliverOutbox', 'sendGreeting']);
    });
  });

  it('does not try again as an activity when the mail server refused the mail for good', async () => {
    await t.withWorker(async (taskQueue) => {
      t.world.context.greetingEnabled = true;
      t.world.firstTry = 'refuses';
      const handle = await t.startConversation(taskQueue);
      await t.waitForStage(handle, 'assigned');
      await handle.executeUpdate(agentReplyUpdate, { args: [{ author: ALICE, text: 'Hello, we are on it.' }] });
      await t.waitForCalls('writeAgentReply');

      expect(await scheduledActivities(handle)).toEqual([]);
      expect(t.callsOf('sendGreeting')).toHaveLength(0);
      expect((await t.snapshot(handle)).stage).toBe('assigned');
    });
  });
});
