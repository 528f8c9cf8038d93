import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { assignmentChangedSignal, assignUpdate, resolveUpdate } from '../../src/workflows/messages.js';
import { ALICE, BOB, useWorkflowHarness } from '../support/workflow-harness.js';

describe('conversationWorkflow assignment (time skipping)', () => {
  const t = useWorkflowHarness({ beforeAll, afterAll, beforeEach });

  it('waits in the queue when nobody has capacity, and is assigned when the queue signals the assignment changed', async () => {
    await t.withWorker(async (taskQueue) => {
      t.world.nextAgent = null;
      const handle = await t.startConversation(taskQueue);
      await t.waitForStage(handle, 'queued');
      expect(await t.snapshot(handle)).toMatchObject({ stage: 'queued', assigneeId: null });
      expect(t.callsOf('assignFromQueue')).toHaveLength(1);

      // The queue gave it to Alice elsewhere (she resolved another conversation): the workflow reads it again.
      t.world.context.assignee = ALICE;
      await handle.signal(assignmentChangedSignal, { reason: 'capacity freed on the channel' });
      await t.waitForStage(handle, 'assigned');
      expect((await t.snapshot(handle)).assigneeId).toBe(ALICE.id);
    });
  });

  it('is assigned by hand to the agent an assign update names', async () => {
    await t.withWorker(async (taskQueue) => {
      t.world.nextAgent = null;
      const handle = await t.startConversation(taskQueue);
      await t.waitForStage(handle, 'queued');

      const result = await handle.executeUpdate(assignUpdate, { args: [{ assignee: BOB, by: ALICE }] });
      expect(result).toEqual({ assignee: BOB });
      expect(t.callsOf('assignManually')[0]!.input).toMatchObject({ assigneeId: BOB.id, byId: ALICE.id });
      expect(await t.snapshot(handle)).toMatchObject({ stage: 'assigned', assigneeId: BOB.id });
    });
  });

  it('on unassign, takes it from the assignee and gives it through the queue to someone other than them', async () => {
    await t.withWorker(async (taskQueue) => {
      const handle = await t.startConversation(taskQueue);
      await t.waitForStage(handle, 'assigned');
      expect((await t.snapshot(handle)).assigneeId).toBe(ALICE.id);

      t.world.nextAgent = BOB;
      const result = await handle.executeUpdate(assignUpdate, { args: [{ assignee: null, by: ALICE }] });
      expect(result).toEqual({ assignee: BOB });
      const [unassign] = t.callsOf('unassign');
      const [, requeue] = t.callsOf('assignFromQueue');
      expect(unassign!.input).toMatchObject({ byId: ALICE.id });
      expect(requeue!.input.excludeUserIds).toContain(ALICE.id);
      expect(t.calls.indexOf(unassign!)).toBeLessThan(t.calls.indexOf(requeue!));
      expect(await t.snapshot(handle)).toMatchObject({ stage: 'assigned', assigneeId: BOB.id });
    });
  });

  it('goes back to the queue on unassign when nobody else has capacity', async () => {
    await t.withWorker(async (taskQueue) => {
      const handle = await t.startConversation(taskQueue);
      await t.waitForStage(handle, 'assigned');

      t.world.nextAgent = null;
      const result = await handle.executeUpdate(assignUpdate, { args: [{ assignee: null, by: ALICE }] });
      expect(result).toEqual({ assignee: null });
      expect(t.callsOf('assignFromQueue')[1]!.input.excludeUserIds).toEqual([ALICE.id]);
      expect(await t.snapshot(handle)).toMatchObject({ stage: 'queued', assigneeId: null });
    });
  });

  it('assigns the agent a routing rule names, without the queue', async () => {
    await t.withWorker(async (taskQueue) => {
      t.world.route = {
        rule: 'VIP customers to Bob',
        handler: { kind: 'agent', agent: BOB },
        priority: 'high',
        insideBusinessHours: true,
      };
      const handle = await t.startConversation(taskQueue);
      await t.waitForStage(handle, 'assigned');
      expect((await t.snapshot(handle)).assigneeId).toBe(BOB.id);
      expect(t.callsOf('assignFromQueue')).toHaveLength(0);
    });
  });

  it('is marked resolved by the agent who resolves it', async () => {
    await t.withWorker(async (taskQueue) => {
      const handle = await t.startConversation(taskQueue);
      await t.waitForStage(handle, 'assigned');

      const result = await handle.executeUpdate(resolveUpdate, { args: [{ resolvedBy: ALICE }] });
      expect(result).toEqual({ status: 'resolved' });
      expect(t.callsOf('markResolved').map((call) => call.input.resolvedBy)).toEqual([{ kind: 'agent', id: ALICE.id }]);
      expect((await t.snapshot(handle)).stage).toBe('resolved');
      await expect(handle.executeUpdate(resolveUpdate, { args: [{ resolvedBy: ALICE }] })).rejects.toThrow();
    });
  });
});
