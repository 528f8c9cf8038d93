import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { conversationSnapshotQuery, resolveUpdate } from '../../src/workflows/messages.js';
import { ALICE, HOUR, useWorkflowHarness } from '../support/workflow-harness.js';

const CSAT_DELAY_SECONDS = 3 * 3600;
const QUIET_PERIOD_MS = 3 * 24 * HOUR;

describe('conversationWorkflow after resolution (time skipping)', () => {
  const t = useWorkflowHarness({ beforeAll, afterAll, beforeEach });

  async function startResolvedConversation(taskQueue: string) {
    const handle = await t.startConversation(taskQueue);
    await t.waitForStage(handle, 'assigned');
    await handle.executeUpdate(resolveUpdate, { args: [{ resolvedBy: ALICE }] });
    return handle;
  }

  it('sends the survey exactly the configured delay after resolution, not a minute earlier', async () => {
    await t.withWorker(async (taskQueue) => {
      const handle = await startResolvedConversation(taskQueue);
      const resolvedAt = t.callsOf('markResolved')[0]!.at;

      await t.env.sleep(CSAT_DELAY_SECONDS * 1000 - 60_000);
      expect(t.callsOf('sendCsatSurvey')).toHaveLength(0);

      await t.env.sleep(120_000);
      await t.waitForStage(handle, 'csat');
      const [survey] = t.callsOf('sendCsatSurvey');
      expect(survey!.at - resolvedAt).toBeGreaterThanOrEqual(CSAT_DELAY_SECONDS * 1000);
      expect(survey!.at - resolvedAt).toBeLessThan(CSAT_DELAY_SECONDS * 1000 + 60_000);
      expect(survey!.input.resolvedBy).toEqual({ kind: 'agent', id: ALICE.id });
      expect(await t.timerSummaries(handle)).toContain('Send the CSAT survey in 3 h unless the customer writes again');
    });
  });

  it('closes after the quiet period and ends its run there, saying how the survey was rated (the API stores ratings)', async () => {
    await t.withWorker(async (taskQueue) => {
      const handle = await startResolvedConversation(taskQueue);
      const resolvedAt = t.callsOf('markResolved')[0]!.at;
      await t.env.sleep(CSAT_DELAY_SECONDS * 1000);
      await t.waitForStage(handle, 'csat');
      const [survey] = t.callsOf('sendCsatSurvey');
      t.world.csatRating = 4; // the customer rated it meanwhile, on the survey page

      await t.env.sleep(QUIET_PERIOD_MS);
      const outcome = await handle.result();
      expect(outcome).toEqual({ conversationId: expect.any(String), stage: 'closed' });
      const [closed] = t.callsOf('markClosed');
      expect(closed!.input).toEqual({ conversationId: expect.any(String), surveyId: survey!.input.surveyId, recordsStage: true });
      expect(closed!.at - resolvedAt).toBeGreaterThanOrEqual(QUIET_PERIOD_MS);
      expect(closed!.at - resolvedAt).toBeLessThan(QUIET_PERIOD_MS + 60_000);
      // The run does not wait while the link takes ratings: a customer mail or an agent starts it again.
      const { closeTime } = await handle.describe();
      expect(closeTime!.getTime() - closed!.at).toBeLessThan(60_000);
      const { currentDetails } = (await handle.query('__temporal_workflow_metadata')) as { currentDetails: string };
      expect(currentDetails).toMatch(/^Closed; the survey is rated 4\/5, and its link takes ratings until \d{4}-/);
    });
  });

  it('cancels the survey when the customer writes again during the delay, and reopens to the same agent', async () => {
    await t.withWorker(async (taskQueue) => {
      const handle = await startResolvedConversation(taskQueue);
      t.world.context.assignee = ALICE;
      await t.env.sleep(HOUR);
      await t.mailArrives(handle, 'm2');
      await t.waitForStage(handle, 'assigned');
      expect(t.callsOf('markReopened')).toHaveLength(1);
      expect((await handle.query(conversationSnapshotQuery)).assigneeId).toBe(ALICE.id);

      await t.env.sleep(CSAT_DELAY_SECONDS * 1000 * 2);
      expect(t.callsOf('sendCsatSurvey')).toHaveLength(0);
    });
  });

  it('is not reopened by an out-of-office reply during the delay, and still sends the survey', async () => {
    await t.withWorker(async (taskQueue) => {
      const handle = await startResolvedConversation(taskQueue);
      await t.env.sleep(HOUR);
      await t.mailArrives(handle, 'auto-vacation');
      await t.env.sleep(CSAT_DELAY_SECONDS * 1000);
      await t.waitForStage(handle, 'csat');
      expect(t.callsOf('markReopened')).toHaveLength(0);
      expect(t.callsOf('sendCsatSurvey')).toHaveLength(1);
    });
  });

  it('sends no survey where loop safety forbids automatic mail, says why, and closes after the quiet period', async () => {
    await t.withWorker(async (taskQueue) => {
      t.world.context.automaticMailBlocked = 'the recipient is a no-reply address';
      const handle = await startResolvedConversation(taskQueue);
      await t.env.sleep(QUIET_PERIOD_MS);
      expect(await handle.result()).toEqual({ conversationId: expect.any(String), stage: 'closed' });
      expect(t.callsOf('sendCsatSurvey')).toHaveLength(0);
      expect(t.callsOf('recordAutomaticMailSuppressed')[0]!.input).toMatchObject({
        kind: 'csat_survey',
        reason: 'the recipient is a no-reply address',
      });
    });
  });

  it('without CSAT, closes after the quiet period and is reopened by a customer mail before that', async () => {
    await t.withWorker(async (taskQueue) => {
      t.world.context.csatEnabled = false;
      const handle = await startResolvedConversation(taskQueue);
      expect((await t.timerSummaries(handle)).filter((summary) => summary.includes('CSAT'))).toEqual([]);
      await t.env.sleep(QUIET_PERIOD_MS / 2);
      t.world.context.assignee = ALICE;
      await t.mailArrives(handle, 'm2');
      await t.waitForStage(handle, 'assigned');
      await handle.executeUpdate(resolveUpdate, { args: [{ resolvedBy: ALICE }] });
      const resolvedAgainAt = t.callsOf('markResolved')[1]!.at;
      expect(await handle.result()).toEqual({ conversationId: expect.any(String), stage: 'closed' });
      expect(t.callsOf('markClosed')[0]!.at - resolvedAgainAt).toBeGreaterThanOrEqual(QUIET_PERIOD_MS);
    });
  });
});
