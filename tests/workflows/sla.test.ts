import { DateTime } from 'luxon';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { addBusinessTime, describeInstant } from '../../src/domain/business-hours.js';
import { agentReplyUpdate } from '../../src/workflows/messages.js';
import { ALICE, BOB, HOUR, nextLocalTime, officeHours, useWorkflowHarness } from '../support/workflow-harness.js';

const MONDAY = 1;
const FRIDAY = 5;
const SATURDAY = 6;
const MINUTE = 60_000;
// Server time runs on in real time while the workflow and its activities take their turns (tens of ms).
const PROMPTLY = 10_000;

describe('conversationWorkflow first-response SLA in business time (time skipping)', () => {
  const t = useWorkflowHarness({ beforeAll, afterAll, beforeEach });

  /** Office hours in Berlin, the server's clock at the given local weekday and time, and the SLA. */
  async function setUp(weekday: number, time: string, slaSeconds: number) {
    const hours = officeHours();
    t.world.hours = hours;
    t.world.slaSeconds = slaSeconds;
    await t.sleepUntil(nextLocalTime(await t.env.currentTimeMs(), hours.timeZone, weekday, time));
    return hours;
  }

  /** The deadline the SLA clock computed: `slaSeconds` of open time from when it started. */
  function deadline() {
    const { hours, slaSeconds } = t.world;
    const [clock] = t.callsOf('startSlaClock');
    return addBusinessTime(hours!, new Date(clock!.at), slaSeconds! * 1000)!;
  }

  const local = (at: Date | number) => DateTime.fromMillis(new Date(at).getTime(), { zone: 'Europe/Berlin' });

  it('marks the SLA breached at the deadline without a first response, then offers the conversation to the next agent', async () => {
    await t.withWorker(async (taskQueue) => {
      const hours = await setUp(MONDAY, '10:00', 2 * 3600);
      const handle = await t.startConversation(taskQueue);
      await t.waitForStage(handle, 'assigned');
      const dueAt = deadline();
      expect(local(dueAt).toFormat('cccc HH:mm')).toBe('Monday 12:00');
      await vi.waitFor(async () =>
        expect(await t.timerSummaries(handle)).toEqual([`First response due by ${describeInstant(hours, dueAt)} (SLA)`]),
      );

      await t.sleepUntil(dueAt.getTime() - MINUTE);
      expect(t.callsOf('markSlaBreached')).toHaveLength(0);
      expect(await t.snapshot(handle)).toMatchObject({ slaBreached: false, assigneeId: ALICE.id });

      await t.env.sleep(2 * MINUTE);
      const [offer] = await t.waitForCalls('offerToNextAgent');
      const [breach] = t.callsOf('markSlaBreached');
      expect(breach!.at).toBeGreaterThanOrEqual(dueAt.getTime());
      expect(breach!.at).toBeLessThan(dueAt.getTime() + PROMPTLY);
      expect(t.calls.indexOf(breach!)).toBeLessThan(t.calls.indexOf(offer!));
      await vi.waitFor(async () =>
        expect(await t.snapshot(handle)).toMatchObject({ stage: 'assigned', slaBreached: true, assigneeId: BOB.id }),
      );
    });
  });

  it('never breaches the SLA once an agent replied before the deadline', async () => {
    await t.withWorker(async (taskQueue) => {
      await setUp(MONDAY, '10:00', 2 * 3600);
      const handle = await t.startConversation(taskQueue);
      await t.waitForStage(handle, 'assigned');
      const dueAt = deadline();

      await t.env.sleep(HOUR);
      await handle.executeUpdate(agentReplyUpdate, { args: [{ author: ALICE, text: 'We are on it.' }] });
      expect(t.callsOf('writeAgentReply')[0]!.at).toBeLessThan(dueAt.getTime());

      await t.sleepUntil(dueAt.getTime() + 7 * 24 * HOUR);
      expect(t.callsOf('markSlaBreached')).toHaveLength(0);
      expect(t.callsOf('offerToNextAgent')).toHaveLength(0);
      expect(await t.snapshot(handle)).toMatchObject({ stage: 'assigned', slaBreached: false, assigneeId: ALICE.id });
    });
  });

  it('counts the deadline in business time: 4 h from 2 h before the Friday closing falls due on Monday 11:00', async () => {
    await t.withWorker(async (taskQueue) => {
      await setUp(FRIDAY, '15:00', 4 * 3600);
      const handle = await t.startConversation(taskQueue);
      await t.waitForStage(handle, 'assigned');
      const dueAt = deadline();
      expect(local(dueAt).toFormat('cccc HH:mm')).toBe('Monday 11:00');
      expect(dueAt.getTime() - t.callsOf('startSlaClock')[0]!.at).toBeGreaterThan(2 * 24 * HOUR);

      // Not at the wall-clock deadline (Friday 19:00), nor a minute before the business-time one.
      await t.sleepUntil(dueAt.getTime() - MINUTE);
      expect(t.callsOf('markSlaBreached')).toHaveLength(0);

      await t.env.sleep(2 * MINUTE);
      const [breach] = await t.waitForCalls('markSlaBreached');
      expect(breach!.at).toBeGreaterThanOrEqual(dueAt.getTime());
      expect(breach!.at).toBeLessThan(dueAt.getTime() + PROMPTLY);
    });
  });

  it('starts the SLA clock at the first mail on a Saturday: the breach falls at Monday opening + the SLA', async () => {
    await t.withWorker(async (taskQueue) => {
      await setUp(SATURDAY, '11:00', 2 * 3600);
      const handle = await t.startConversation(taskQueue);
      await t.waitForStage(handle, 'waiting_for_hours');
      const dueAt = deadline();
      expect(local(dueAt).toFormat('cccc HH:mm')).toBe('Monday 11:00');

      await t.sleepUntil(dueAt.getTime() - MINUTE);
      expect((await t.snapshot(handle)).stage).toBe('assigned');
      expect(t.callsOf('markSlaBreached')).toHaveLength(0);

      await t.env.sleep(2 * MINUTE);
      const [breach] = await t.waitForCalls('markSlaBreached');
      expect(breach!.at).toBeGreaterThanOrEqual(dueAt.getTime());
      expect(breach!.at).toBeLessThan(dueAt.getTime() + PROMPTLY);
    });
  });
});
