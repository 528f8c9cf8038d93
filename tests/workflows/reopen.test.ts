import { WithStartWorkflowOperation, WorkflowUpdateFailedError, type WorkflowHandle } from '@temporalio/client';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { customerConversation } from '../../src/workflows/conversation.js';
import { conversationWorkflowId } from '../../src/workflows/ids.js';
import { reopenUpdate, resolveUpdate } from '../../src/workflows/messages.js';
import { historyPayloadValue } from '../support/payloads.js';
import { ALICE, BOB, HOUR, useWorkflowHarness } from '../support/workflow-harness.js';

const QUIET_PERIOD_MS = 3 * 24 * HOUR;

describe('customerConversation reopened by an agent (time skipping)', () => {
  const t = useWorkflowHarness({ beforeAll, afterAll, beforeEach });

  async function startResolvedConversation(taskQueue: string) {
    const handle = await t.startConversation(taskQueue);
    await t.waitForStage(handle, 'assigned');
    await handle.executeUpdate(resolveUpdate, { args: [{ resolvedBy: ALICE }] });
    t.world.context.assignee = ALICE; // the database keeps the assignee through resolution
    return handle;
  }

  /** The summaries of the activities and local activities the workflow ran, as the Temporal UI shows them. */
  async function activitySummaries(handle: WorkflowHandle): Promise<string[]> {
    const history = await handle.fetchHistory();
    return Promise.all(
      (history.events ?? [])
        .filter(
          (event) =>
            event.activityTaskScheduledEventAttributes ||
            event.markerRecordedEventAttributes?.markerName === 'core_local_activity',
        )
        .map(async (event) => {
          const summary = event.userMetadata?.summary;
          return summary ? String(await historyPayloadValue(summary)) : '';
        }),
    );
  }

  it('reopens a resolved conversation to the previous assignee, and the survey is not sent', async () => {
    await t.withWorker(async (taskQueue) => {
      const handle = await startResolvedConversation(taskQueue);
      await t.env.sleep(HOUR);

      const result = await handle.executeUpdate(reopenUpdate, { args: [{ by: BOB }] });
      expect(result).toEqual({ status: 'open', assignee: ALICE });
      expect((await t.snapshot(handle)).stage).toBe('assigned');
      expect(t.callsOf('markReopened').map((call) => call.input)).toEqual([
        { conversationId: expect.any(String), reopenedBy: BOB },
      ]);
      expect(await activitySummaries(handle)).toContain('Reopen: Bob Agent reopened it');

      await t.env.sleep(24 * HOUR);
      expect(t.callsOf('sendCsatSurvey')).toHaveLength(0);
    });
  });

  it('reopens after the survey was sent (stage csat)', async () => {
    await t.withWorker(async (taskQueue) => {
      const handle = await startResolvedConversation(taskQueue);
      await t.env.sleep(3 * HOUR);
      await t.waitForStage(handle, 'csat');

      const result = await handle.executeUpdate(reopenUpdate, { args: [{ by: ALICE }] });
      expect(result).toEqual({ status: 'open', assignee: ALICE });
      await t.env.sleep(QUIET_PERIOD_MS);
      expect(t.callsOf('markClosed')).toHaveLength(0);
    });
  });

  it('refuses to reopen an open conversation', async () => {
    await t.withWorker(async (taskQueue) => {
      const handle = await t.startConversation(taskQueue);
      await t.waitForStage(handle, 'assigned');
      const refused = await handle.executeUpdate(reopenUpdate, { args: [{ by: ALICE }] }).catch((error: unknown) => error);
      expect(refused).toBeInstanceOf(WorkflowUpdateFailedError);
      expect((refused as WorkflowUpdateFailedError).cause).toMatchObject({ type: 'ConversationOpen' });
      expect(t.callsOf('markReopened')).toHaveLength(0);
    });
  });

  it('without a previous assignee, an agent reopen goes to the queue', async () => {
    await t.withWorker(async (taskQueue) => {
      const handle = await startResolvedConversation(taskQueue);
      t.world.context.assignee = null;
      t.world.nextAgent = BOB;
      const result = await handle.executeUpdate(reopenUpdate, { args: [{ by: ALICE }] });
      expect(result.status).toBe('open');
      await t.waitForStage(handle, 'assigned');
      expect((await t.snapshot(handle)).assigneeId).toBe(BOB.id);
    });
  });

  it('starts a closed conversation whose run has ended again for the reopen (update-with-start), back to the previous assignee', async () => {
    await t.withWorker(async (taskQueue) => {
      // The survey went out, and its link takes ratings for days yet: the API stores them, so the run ends at close.
      const first = await startResolvedConversation(taskQueue);
      await t.env.sleep(QUIET_PERIOD_MS);
      expect(t.callsOf('sendCsatSurvey')).toHaveLength(1);
      expect(await first.result()).toMatchObject({ stage: 'closed' });

      t.world.context.status = 'closed';
      const conversationId = `conversation-${taskQueue}`;
      const start = new WithStartWorkflowOperation(customerConversation, {
        workflowId: conversationWorkflowId(conversationId),
        taskQueue,
        args: [{ conversationId }],
        workflowIdConflictPolicy: 'USE_EXISTING',
      });
      const result = await t.env.client.workflow.executeUpdateWithStart(reopenUpdate, {
        args: [{ by: BOB }],
        startWorkflowOperation: start,
      });
      // Answered once it is open again, with who has it: no polling.
      expect(result).toEqual({ status: 'open', assignee: ALICE });
      const again = await start.workflowHandle();
      expect((await t.snapshot(again)).stage).toBe('assigned');
      expect(t.callsOf('markReopened').map((call) => call.input)).toEqual([{ conversationId, reopenedBy: BOB }]);
      // Reopened to the assignee: no routing, and no greeting without a customer mail.
      expect(t.callsOf('routeConversation')).toHaveLength(1);
      expect(t.callsOf('sendGreeting')).toHaveLength(0);
      expect(await activitySummaries(again)).toContain('Reopen: Bob Agent reopened the closed conversation');
    });
  });
});
