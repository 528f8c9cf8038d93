import { DateTime } from 'luxon';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { describeInstant, nextOpening, type BusinessHours } from '../../src/domain/business-hours.js';
import { resolveUpdate } from '../../src/workflows/messages.js';
import { ALICE, HOUR, nextLocalTime, officeHours, useWorkflowHarness } from '../support/workflow-harness.js';

const FRIDAY = 5;
const MINUTE = 60_000;
// Server time runs on in real time while the workflow and its activities take their turns (tens of ms).
const PROMPTLY = 10_000;

describe('conversationWorkflow outside business hours (time skipping)', () => {
  const t = useWorkflowHarness({ beforeAll, afterAll, beforeEach });

  /** Skips to Friday 18:00 in Berlin, after closing: office hours open again on Monday 09:00. */
  async function fridayEvening(): Promise<{ hours: BusinessHours; opening: Date }> {
    const hours = officeHours();
    t.world.hours = hours;
    await t.sleepUntil(nextLocalTime(await t.env.currentTimeMs(), hours.timeZone, FRIDAY, '18:00'));
    const opening = nextOpening(hours, new Date(await t.env.currentTimeMs()))!;
    expect(DateTime.fromJSDate(opening, { zone: hours.timeZone }).toFormat('cccc HH:mm')).toBe('Monday 09:00');
    return { hours, opening };
  }

  it('sends the out-of-office note once, waits with a timer until the opening, and assigns exactly when the weekend is over', async () => {
    await t.withWorker(async (taskQueue) => {
      const { hours, opening } = await fridayEvening();
      const openingText = describeInstant(hours, opening);

      const handle = await t.startConversation(taskQueue);
      await t.waitForStage(handle, 'waiting_for_hours');
      await vi.waitFor(async () => expect(await t.timerSummaries(handle)).toEqual([`Until business hours open ${openingText}`]));
      expect((await t.waitForCalls('sendOutOfOffice')).map((call) => call.input.opensAtText)).toEqual([openingText]);
      // The note records the stage it waits in: the stage takes no local activity of its own.
      expect(t.callsOf('sendOutOfOffice').map((call) => call.input.stage)).toEqual(['waiting_for_hours']);
      expect(t.callsOf('recordStage')).toEqual([]);

      // A second mail during the wait: it is read, the wait goes on on the same timer, no second note.
      await t.mailArrives(handle, 'm2');
      await vi.waitFor(async () => expect((await t.snapshot(handle)).mailsTaken).toBe(2));
      expect(await t.timerSummaries(handle)).toEqual([`Until business hours open ${openingText}`]);
      expect(t.callsOf('sendOutOfOffice')).toHaveLength(1);
      expect((await t.snapshot(handle)).stage).toBe('waiting_for_hours');

      await t.sleepUntil(opening.getTime() - MINUTE);
      expect(t.callsOf('assignFromQueue')).toHaveLength(0);
      expect((await t.snapshot(handle)).stage).toBe('waiting_for_hours');

      await t.env.sleep(2 * MINUTE);
      await t.waitForStage(handle, 'assigned');
      const [assignment] = t.callsOf('assignFromQueue');
      expect(assignment!.at).toBeGreaterThanOrEqual(opening.getTime());
      expect(assignment!.at).toBeLessThan(opening.getTime() + PROMPTLY);
      expect((await t.snapshot(handle)).assigneeId).toBe(ALICE.id);
      expect(t.callsOf('sendOutOfOffice')).toHaveLength(1);
    });
  });

  it('sends no out-of-office note when the first mail is an auto-reply, and still assigns at the opening', async () => {
    await t.withWorker(async (taskQueue) => {
      const { hours, opening } = await fridayEvening();

      const handle = await t.startConversation(taskQueue, 'auto-vacation');
      await t.waitForStage(handle, 'waiting_for_hours');
      await vi.waitFor(async () =>
        expect(await t.timerSummaries(handle)).toEqual([`Until business hours open ${describeInstant(hours, opening)}`]),
      );
      expect(t.callsOf('sendOutOfOffice')).toHaveLength(0);
      // No note owed: the stage is recorded before the wait, by a step of its own.
      expect(t.callsOf('recordStage').map((call) => call.input.stage)).toEqual(['waiting_for_hours']);

      await t.sleepUntil(opening.getTime() + MINUTE);
      await t.waitForStage(handle, 'assigned');
      expect(t.callsOf('assignFromQueue')[0]!.at).toBeGreaterThanOrEqual(opening.getTime());
      expect(t.callsOf('sendOutOfOffice')).toHaveLength(0);
    });
  });

  it('records why no out-of-office note went out, with the stage it waits in, when the flood limits hold it back', async () => {
    await t.withWorker(async (taskQueue) => {
      await fridayEvening();
      t.world.context.automaticMailBlocked = 'the channel sent 100 automatic mails in the last hour';

      const handle = await t.startConversation(taskQueue);
      await t.waitForStage(handle, 'waiting_for_hours');
      const [suppressed] = await t.waitForCalls('recordAutomaticMailSuppressed');
      expect(suppressed!.input).toEqual({
        conversationId: expect.any(String),
        kind: 'out_of_office',
        reason: 'the channel sent 100 automatic mails in the last hour',
        stage: 'waiting_for_hours',
      });
      expect(t.callsOf('sendOutOfOffice')).toHaveLength(0);
      expect(t.callsOf('recordStage')).toEqual([]);
    });
  });

  it('ends the wait when an agent resolves the conversation, and never assigns it', async () => {
    await t.withWorker(async (taskQueue) => {
      const { opening } = await fridayEvening();
      const handle = await t.startConversation(taskQueue);
      await t.waitForStage(handle, 'waiting_for_hours');

      await t.env.sleep(HOUR);
      await expect(handle.executeUpdate(resolveUpdate, { args: [{ resolvedBy: ALICE }] })).resolves.toEqual({
        status: 'resolved',
      });
      expect((await t.snapshot(handle)).stage).toBe('resolved');
      const [resolved] = t.callsOf('markResolved');
      expect(resolved!.input.resolvedBy).toEqual({ kind: 'agent', id: ALICE.id });
      expect(resolved!.at).toBeLessThan(opening.getTime());

      await t.sleepUntil(opening.getTime() + HOUR);
      expect(t.callsOf('assignFromQueue')).toHaveLength(0);
      expect(t.callsOf('sendCsatSurvey')).toHaveLength(1);
    });
  });

  // Last in this file: it moves the test server's clock to the next spring-forward night (up to a year ahead).
  it('waits through the spring-forward night: hours from a 02:30 that does not exist open at 03:00 CEST', async () => {
    await t.withWorker(async (taskQueue) => {
      const timeZone = 'Europe/Berlin';
      const now = DateTime.fromMillis(await t.env.currentTimeMs(), { zone: timeZone });
      // The EU changes to summer time on the last Sunday of March, at 02:00 local time.
      const lastSundayOfMarch = (year: number) => {
        const end = DateTime.fromObject({ year, month: 3, day: 31 }, { zone: timeZone });
        return end.minus({ days: end.weekday % 7 });
      };
      let dstSunday = lastSundayOfMarch(now.year);
      if (dstSunday.plus({ days: 1 }) <= now) dstSunday = lastSundayOfMarch(now.year + 1);
      const closedDates: string[] = [];
      for (let day = now.startOf('day'); day < dstSunday; day = day.plus({ days: 1 })) {
        if (day.weekday === 7) closedDates.push(day.toISODate()!);
      }
      const hours: BusinessHours = { timeZone, weekly: { sunday: [{ start: '02:30', end: '05:00' }] }, closedDates };
      t.world.hours = hours;
      // 02:30 does not exist that night: the clock jumps from 02:00 CET to 03:00 CEST, i.e. 01:00 UTC.
      const opening = new Date(`${dstSunday.toISODate()}T01:00:00Z`);
      const openingText = `Sun ${dstSunday.toFormat('d LLL')} 03:00 Europe/Berlin`;
      expect(nextOpening(hours, now.toJSDate())).toEqual(opening);
      expect(describeInstant(hours, opening)).toBe(openingText);

      const handle = await t.startConversation(taskQueue);
      await t.waitForStage(handle, 'waiting_for_hours');
      await vi.waitFor(async () => expect(await t.timerSummaries(handle)).toEqual([`Until business hours open ${openingText}`]));

      await t.sleepUntil(opening.getTime() - MINUTE);
      expect(t.callsOf('assignFromQueue')).toHaveLength(0);

      await t.env.sleep(2 * MINUTE);
      await t.waitForStage(handle, 'assigned');
      const [assignment] = t.callsOf('assignFromQueue');
      expect(assignment!.at).toBeGreaterThanOrEqual(opening.getTime());
      expect(assignment!.at).toBeLessThan(opening.getTime() + PROMPTLY);
    });
  });
});
