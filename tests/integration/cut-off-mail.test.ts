import { randomUUID } from 'node:crypto';
import { DateTime } from 'luxon';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities, type ActivityDeps } from '../../src/activities/index.js';
import { WEEKDAYS, type BusinessHours } from '../../src/domain/business-hours.js';
import type { MailTransport } from '../../src/mail/transport.js';
import { eventually, postMail } from '../support/http.js';
import { customerMail } from '../support/mail.js';
import { seedSupportTeam, startTestStack, TEST_SECRET_KEY, type TestStack } from '../support/stack.js';

// A greeting or out-of-office note goes out first as a local activity inside the workflow task that decided it. A
// worker that dies in that send leaves the outbox row written and not sent, and the task is run again from the
// start: its reads now see that row. The mail is owed, and must go out once, however close the channel is to its
// flood limits (found by the chaos test: the row was taken for "greeted" and stayed queued for good).

describe('automatic mail whose first try a dead worker cut off', () => {
  let stack: TestStack;

  beforeAll(async () => {
    stack = await startTestStack();
  });

  afterAll(async () => {
    await stack?.stop();
  });

  /** A channel that greets, and mails each customer at most one automatic mail an hour. */
  async function strictChannel(name: string) {
    const team = await seedSupportTeam(stack.db, {
      name,
      emailAddress: `support-${randomUUID().slice(0, 8)}@acme.example`,
      greeting: { text: `Thanks for writing to ${name}.` },
    });
    await stack.db.updateTable('channels').set({ automatic_mail_limit_per_hour: 1 }).where('id', '=', team.channel.id).execute();
    return team;
  }

  /**
   * Posts the customer's first mail while no worker runs, and meanwhile writes the mail of `kind` as a worker that died
   * sending it leaves it: its first try wrote and composed the row and held the lease, which runs out in a moment.
   */
  async function postWithCutOffMail(
    team: Awaited<ReturnType<typeof strictChannel>>,
    customer: string,
    send: (conversationId: string, outboxId: string) => Promise<unknown>,
  ) {
    let conversationId = '';
    let outboxId = '';
    await stack.runWithoutWorker(async () => {
      const posted = await postMail(
        stack.api.url,
        team.channel,
        customerMail({ messageId: `${randomUUID()}@example.com`, from: customer, text: 'Where is my parcel?' }),
      );
      expect(posted.status).toBe(202);
      conversationId = posted.body.conversationId as string;
      outboxId = randomUUID();
      await expect(send(conversationId, outboxId)).rejects.toThrow(/sending failed/);
      await stack.db
        .updateTable('outbound_messages')
        .set({ claim_token: randomUUID(), claimed_until: new Date(Date.now() + 2_000), delivery_error: null })
        .where('id', '=', outboxId)
        .execute();
    });
    return { conversationId, outboxId };
  }

  /** The real mail activities with a transport that fails as the process dies: after composing, before the server. */
  const dyingActivities = () =>
    createActivities({
      db: stack.db,
      mail: {
        send: () => Promise.reject(new Error('the worker died')),
        close: () => undefined,
      } satisfies MailTransport,
      publicUrl: stack.api.url,
      secretKey: TEST_SECRET_KEY,
      allowedPrivateNetworks: [],
    } as unknown as ActivityDeps);

  async function rowsOf(conversationId: string) {
    return stack.db
      .selectFrom('outbound_messages')
      .select(['id', 'kind', 'message_id', 'delivery_status'])
      .where('conversation_id', '=', conversationId)
      .execute();
  }

  async function timelineOf(conversationId: string) {
    const events = await stack.db
      .selectFrom('conversation_events')
      .select('type')
      .where('conversation_id', '=', conversationId)
      .execute();
    return events.map((event) => event.type);
  }

  it('sends the owed greeting once when the task runs again, though the row counts toward the per-customer limit', async () => {
    const team = await strictChannel('Cut-off greeting');
    const customer = 'gus@example.com';
    const { conversationId, outboxId } = await postWithCutOffMail(team, customer, (id, outbox) =>
      dyingActivities().sendGreeting({ conversationId: id, outboxId: outbox }),
    );

    const greeting = await stack.capture.waitFor((mail) => mail.envelope.to.includes(customer), 60_000);
    await eventually(async () => ((await rowsOf(conversationId))[0]?.delivery_status === 'sent' ? true : undefined));
    const rows = await rowsOf(conversationId);
    expect(rows).toEqual([expect.objectContaining({ id: outboxId, kind: 'greeting', delivery_status: 'sent' })]);
    expect(greeting.messageId).toBe(rows[0]!.message_id);
    await eventually(async () => ((await timelineOf(conversationId)).includes('assigned') ? true : undefined));
    const timeline = await timelineOf(conversationId);
    expect(timeline.filter((type) => type === 'greeting_sent')).toHaveLength(1);
    expect(timeline).not.toContain('automatic_mail_suppressed');
    expect(stack.capture.mails.filter((mail) => mail.envelope.to.includes(customer))).toHaveLength(1);
  });

  it('sends the owed out-of-office note once when the task runs again, outside business hours', async () => {
    const team = await strictChannel('Cut-off out-of-office');
    // Closed now; open for an hour on the weekday after tomorrow.
    const opensAt = DateTime.utc().plus({ days: 2 }).startOf('hour');
    const hours: BusinessHours = {
      timeZone: 'UTC',
      weekly: {
        [WEEKDAYS[opensAt.weekday - 1]!]: [
          { start: opensAt.toFormat('HH:mm'), end: opensAt.plus({ hours: 1 }).toFormat('HH:mm') },
        ],
      },
      closedDates: [],
    };
    await stack.db
      .updateTable('channels')
      .set({
        greeting_enabled: false,
        business_hours_enabled: true,
        business_hours: JSON.stringify(hours),
        out_of_office_text: 'We are out right now.',
      })
      .where('id', '=', team.channel.id)
      .execute();
    const customer = 'olga@example.com';
    const { conversationId, outboxId } = await postWithCutOffMail(team, customer, (id, outbox) =>
      dyingActivities().sendOutOfOffice({ conversationId: id, outboxId: outbox, opensAtText: 'soon' }),
    );

    const note = await stack.capture.waitFor((mail) => mail.envelope.to.includes(customer), 60_000);
    expect(note.text).toContain('We are out right now.');
    await eventually(async () => ((await rowsOf(conversationId))[0]?.delivery_status === 'sent' ? true : undefined));
    expect(await rowsOf(conversationId)).toEqual([
      expect.objectContaining({ id: outboxId, kind: 'out_of_office', delivery_status: 'sent' }),
    ]);
    await eventually(async () => ((await timelineOf(conversationId)).includes('out_of_office_sent') ? true : undefined));
    const timeline = await timelineOf(conversationId);
    expect(timeline.filter((type) => type === 'out_of_office_sent')).toHaveLength(1);
    expect(timeline).not.toContain('automatic_mail_suppressed');
    expect(stack.capture.mails.filter((mail) => mail.envelope.to.includes(customer))).toHaveLength(1);
  });
});
