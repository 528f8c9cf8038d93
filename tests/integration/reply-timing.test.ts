import { randomUUID } from 'node:crypto';
import { DateTime } from 'luxon';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readAsRecipient } from '../../src/mail/outgoing.js';
import { conversationWorkflowId } from '../../src/workflows/ids.js';
import { callApi, eventually, postMail } from '../support/http.js';
import { customerMail } from '../support/mail.js';
import { historyPayloadValue } from '../support/payloads.js';
import { seedSupportTeam, startTestStack, type TestStack } from '../support/stack.js';

// Undo send, send later and the collision guard through the real stack: the API, the conversation
// workflow's timers on the Temporal dev server, PostgreSQL and the SMTP capture.

const DAY = 86_400_000;

describe('reply timing: undo send, send later, collisions, who is writing', () => {
  let stack: TestStack;
  let team: Awaited<ReturnType<typeof seedSupportTeam>>;
  /** The API's clock (the draft leases read it): moved forward instead of waiting. */
  let clockOffset = 0;

  beforeAll(async () => {
    stack = await startTestStack({ rateLimits: { clock: () => Date.now() + clockOffset } });
    team = await seedSupportTeam(stack.db, { name: 'Acme Support', emailAddress: 'support@acme.example' });
  });

  afterAll(async () => {
    await stack?.stop();
  });

  const api = (apiKey: string, method: string, path: string, body?: unknown) =>
    callApi(stack.api.url, apiKey, method, path, body);
  const alice = () => team.agents[0]!;
  const bob = () => team.agents[1]!;

  async function setUndoSeconds(seconds: number) {
    const changed = await api(team.admin.apiKey, 'PATCH', `/v1/channels/${team.channel.id}`, { undoSendSeconds: seconds });
    expect(changed.status).toBe(200);
    expect(changed.body.undoSendSeconds).toBe(seconds);
  }

  /** A customer mail that opens a conversation, assigned to an agent; returns its id and the mail's. */
  async function openConversation(from: string): Promise<{ conversationId: string; firstMessageId: string }> {
    const posted = await postMail(
      stack.api.url,
      team.channel,
      customerMail({ messageId: `${randomUUID()}@example.com`, from, subject: 'Where is my parcel?' }),
    );
    expect(posted.status).toBe(202);
    const conversationId: string = posted.body.conversationId;
    const detail = await eventually(async () => {
      const { body } = await api(team.admin.apiKey, 'GET', `/v1/conversations/${conversationId}`);
      return body.stage === 'assigned' ? body : undefined;
    });
    return { conversationId, firstMessageId: detail.messages[0].id };
  }

  async function customerWritesAgain(conversationId: string, from: string, inReplyTo: string, text = 'Any news?') {
    const posted = await postMail(
      stack.api.url,
      team.channel,
      customerMail({ messageId: `${randomUUID()}@example.com`, from, inReplyTo, text }),
    );
    expect(posted.body.conversationId).toBe(conversationId);
    return posted.body.inboundMessageId as string;
  }

  const outboxRow = (id: string) =>
    stack.db.selectFrom('outbound_messages').selectAll().where('id', '=', id).executeTakeFirstOrThrow();

  /** The mail that arrived is the preview: subject, headers, text and HTML. */
  async function expectAsPreviewed(raw: string, preview: { subject: string; headers: unknown; text: string; html: string }) {
    const asRead = await readAsRecipient(raw);
    expect(asRead.subject).toBe(preview.subject);
    expect(asRead.headers).toEqual(preview.headers);
    expect(asRead.text).toBe(preview.text);
    expect(asRead.html).toBe(preview.html);
  }

  async function timeline(conversationId: string) {
    const { body } = await api(team.admin.apiKey, 'GET', `/v1/conversations/${conversationId}`);
    return body.timeline as Array<{ type: string; data: Record<string, unknown> }>;
  }

  async function timerSummaries(conversationId: string): Promise<string[]> {
    const history = await stack.temporal.workflow.getHandle(conversationWorkflowId(conversationId)).fetchHistory();
    return Promise.all(
      (history.events ?? [])
        .filter((event) => event.timerStartedEventAttributes && event.userMetadata?.summary)
        .map(async (event) => String(await historyPayloadValue(event.userMetadata!.summary))),
    );
  }

  it('sends nothing when the reply is undone within the grace period; the timeline says who undid it', async () => {
    await setUndoSeconds(30);
    const customer = 'undo@example.com';
    const { conversationId } = await openConversation(customer);

    const sent = await api(alice().apiKey, 'POST', `/v1/conversations/${conversationId}/replies`, { text: 'Wrong customer!' });
    expect(sent.status).toBe(201);
    expect(sent.body.scheduledFor).toEqual(expect.any(String));
    expect((await outboxRow(sent.body.outboundMessageId)).delivery_status).toBe('scheduled');
    const listed = await api(bob().apiKey, 'GET', `/v1/conversations/${conversationId}/replies/scheduled`);
    expect(listed.body.replies.map((reply: { id: string }) => reply.id)).toEqual([sent.body.outboundMessageId]);
    expect(await timerSummaries(conversationId)).toContain('Sending the reply of Alice Agent in 30 s unless undone');

    const undone = await api(
      alice().apiKey,
      'DELETE',
      `/v1/conversations/${conversationId}/replies/${sent.body.outboundMessageId}`,
    );
    expect(undone.status).toBe(200);
    expect(undone.body).toEqual({ id: sent.body.outboundMessageId, status: 'cancelled' });
    const row = await outboxRow(sent.body.outboundMessageId);
    expect(row).toMatchObject({ delivery_status: 'cancelled', cancelled_by: alice().id, cancel_reason: 'undone', sent_at: null });
    expect(await timeline(conversationId)).toContainEqual(
      expect.objectContaining({
        type: 'agent_reply_cancelled',
        data: expect.objectContaining({
          outboundMessageId: sent.body.outboundMessageId,
          byName: 'Alice Agent',
          reason: 'undone',
        }),
      }),
    );
    // An undone reply was no first response (the SLA still waits for one).
    const conversationRow = () =>
      stack.db.selectFrom('conversations').select('first_response_at').where('id', '=', conversationId).executeTakeFirstOrThrow();
    expect((await conversationRow()).first_response_at).toBeNull();
    // Undoing twice is a conflict, not a second cancellation.
    const again = await api(
      alice().apiKey,
      'DELETE',
      `/v1/conversations/${conversationId}/replies/${sent.body.outboundMessageId}`,
    );
    expect(again.status).toBe(409);

    // The next reply (no grace period) reaches the customer; the undone one never did.
    await setUndoSeconds(0);
    const next = await api(alice().apiKey, 'POST', `/v1/conversations/${conversationId}/replies`, {
      text: 'Your parcel is on its way.',
    });
    expect(next.status).toBe(201);
    expect(next.body.scheduledFor).toBeUndefined();
    await stack.capture.waitFor((mail) => mail.messageId === next.body.messageId);
    expect(stack.capture.mails.filter((mail) => mail.envelope.to.includes(customer))).toHaveLength(1);
    expect(stack.capture.mails.some((mail) => mail.messageId === row.message_id)).toBe(false);
    expect((await conversationRow()).first_response_at).not.toBeNull();
  });

  it('answers 409 to an undo after the grace period: the reply went out', async () => {
    await setUndoSeconds(1);
    const { conversationId } = await openConversation('late-undo@example.com');
    const preview = await api(alice().apiKey, 'POST', `/v1/conversations/${conversationId}/replies/preview`, {
      text: 'Here it is.',
    });
    const sent = await api(alice().apiKey, 'POST', `/v1/conversations/${conversationId}/replies`, { text: 'Here it is.' });
    expect(sent.status).toBe(201);
    const received = await stack.capture.waitFor((mail) => mail.messageId === sent.body.messageId);
    // Held for the grace period, it goes out exactly as previewed.
    await expectAsPreviewed(received.raw, preview.body);
    await eventually(async () => ((await outboxRow(sent.body.outboundMessageId)).delivery_status === 'sent' ? true : undefined));

    const late = await api(
      alice().apiKey,
      'DELETE',
      `/v1/conversations/${conversationId}/replies/${sent.body.outboundMessageId}`,
    );
    expect(late.status).toBe(409);
    expect(late.body.type).toBe('https://mailroom.dev/problems/reply-already-sent');
    expect(late.body.title).toMatch(/already sent/);
    await setUndoSeconds(0);
  });

  it('cancels a reply scheduled for later when the customer writes first, also after a worker restart', async () => {
    const customer = 'later@example.com';
    const { conversationId, firstMessageId } = await openConversation(customer);
    const first = await stack.db
      .selectFrom('inbound_messages')
      .select('message_id')
      .where('id', '=', firstMessageId)
      .executeTakeFirstOrThrow();
    const sendAt = new Date(Date.now() + DAY).toISOString().replace('Z', '+00:00');
    const scheduled = await api(alice().apiKey, 'POST', `/v1/conversations/${conversationId}/replies`, {
      text: 'Following up tomorrow.',
      sendAt,
    });
    expect(scheduled.status).toBe(201);
    expect(Date.parse(scheduled.body.scheduledFor)).toBe(Date.parse(sendAt));

    // The timer is the workflow's: a new worker takes it over.
    await stack.restartWorker();
    await customerWritesAgain(conversationId, customer, `<${first.message_id}>`);
    const row = await eventually(async () => {
      const current = await outboxRow(scheduled.body.outboundMessageId);
      return current.delivery_status === 'cancelled' ? current : undefined;
    });
    expect(row).toMatchObject({ cancel_reason: 'customer_wrote', cancelled_by: null });
    const { body } = await api(alice().apiKey, 'GET', `/v1/conversations/${conversationId}`);
    expect(body.messages.find((message: { id: string }) => message.id === scheduled.body.outboundMessageId)).toMatchObject({
      deliveryStatus: 'cancelled',
      cancelled: { reason: 'customer_wrote', byId: null },
    });
    expect(body.timeline).toContainEqual(
      expect.objectContaining({ type: 'agent_reply_cancelled', data: expect.objectContaining({ reason: 'customer_wrote' }) }),
    );
    expect(stack.capture.mails.filter((mail) => mail.envelope.to.includes(customer))).toHaveLength(0);
  });

  it("schedules a reply for when the channel's business hours open next, cancellable like any waiting reply", async () => {
    const closedAllWeek = { timeZone: 'Europe/Berlin', weekly: {}, closedDates: [] };
    const { conversationId } = await openConversation('hours@example.com');
    const path = `/v1/conversations/${conversationId}/replies`;
    // Open only on one weekday, a few days from now: "business_hours" is that opening.
    const opensOn = DateTime.now()
      .setZone('Europe/Berlin')
      .plus({ days: 3 })
      .set({ hour: 9, minute: 0, second: 0, millisecond: 0 });
    const weekday = ['monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday', 'sunday'][opensOn.weekday - 1]!;
    await stack.db
      .updateTable('channels')
      .set({
        business_hours_enabled: true,
        business_hours: JSON.stringify({ ...closedAllWeek, weekly: { [weekday]: [{ start: '09:00', end: '10:00' }] } }),
      })
      .where('id', '=', team.channel.id)
      .execute();
    try {
      const later = await api(alice().apiKey, 'POST', path, { text: 'First thing when we open.', sendAt: 'business_hours' });
      expect(later.status).toBe(201);
      expect(Date.parse(later.body.scheduledFor)).toBe(opensOn.toMillis());
      expect((await outboxRow(later.body.outboundMessageId)).scheduled_for?.getTime()).toBe(opensOn.toMillis());
      const undone = await api(bob().apiKey, 'DELETE', `${path}/${later.body.outboundMessageId}`);
      expect(undone.status).toBe(200);
      expect(await outboxRow(later.body.outboundMessageId)).toMatchObject({
        delivery_status: 'cancelled',
        cancelled_by: bob().id,
      });
    } finally {
      await stack.db.updateTable('channels').set({ business_hours_enabled: false }).where('id', '=', team.channel.id).execute();
    }
  });

  it('refuses a moment it cannot keep, naming the field', async () => {
    const { conversationId } = await openConversation('bad-moment@example.com');
    const path = `/v1/conversations/${conversationId}/replies`;
    for (const sendAt of [
      '2020-01-01T09:00:00+01:00',
      new Date(Date.now() + 31 * DAY).toISOString(),
      'next monday',
      'business_hours',
    ]) {
      const refused = await api(alice().apiKey, 'POST', path, { text: 'Hi', sendAt });
      expect(refused.status, sendAt).toBe(422);
      expect(refused.body.errors).toEqual([expect.objectContaining({ field: 'sendAt' })]);
    }
    const unknownMessage = await api(alice().apiKey, 'POST', path, { text: 'Hi', lastSeenMessageId: randomUUID() });
    expect(unknownMessage.status).toBe(422);
    expect(unknownMessage.body.errors).toEqual([expect.objectContaining({ field: 'lastSeenMessageId' })]);
    const undo = await api(team.admin.apiKey, 'PATCH', `/v1/channels/${team.channel.id}`, { undoSendSeconds: 31 });
    expect(undo.status).toBe(422);
    expect(
      (await stack.db.selectFrom('outbound_messages').select('id').where('conversation_id', '=', conversationId).execute())
        .length,
    ).toBe(0);
  });

  it('lets at most 10 replies wait in a conversation', async () => {
    const { conversationId } = await openConversation('many-later@example.com');
    const path = `/v1/conversations/${conversationId}/replies`;
    const sendAt = new Date(Date.now() + DAY).toISOString();
    for (let i = 0; i < 10; i++) {
      expect((await api(alice().apiKey, 'POST', path, { text: `Later ${i}`, sendAt })).status).toBe(201);
    }
    const eleventh = await api(alice().apiKey, 'POST', path, { text: 'One too many', sendAt });
    expect(eleventh.status).toBe(409);
    expect(eleventh.body.type).toBe('https://mailroom.dev/problems/too-many-scheduled-replies');
    const listed = await api(alice().apiKey, 'GET', `${path}/scheduled`);
    expect(listed.body.replies).toHaveLength(10);
  });

  it('answers 409 with what is new when the customer or another agent wrote since, and sends the forced reply', async () => {
    const customer = 'collision@example.com';
    const { conversationId, firstMessageId } = await openConversation(customer);
    const path = `/v1/conversations/${conversationId}/replies`;

    // Bob answers, and the customer writes back to his answer: Alice saw neither.
    const bobs = await api(bob().apiKey, 'POST', path, { text: 'Bob here, checking.', lastSeenMessageId: firstMessageId });
    expect(bobs.status).toBe(201);
    await stack.capture.waitFor((mail) => mail.messageId === bobs.body.messageId);
    // A long mail: the 409 shows the start of it, never the whole mail.
    const newMailId = await customerWritesAgain(
      conversationId,
      customer,
      bobs.body.messageId,
      `Any news? ${'Still waiting. '.repeat(2000)}`,
    );

    const collided = await api(alice().apiKey, 'POST', path, { text: 'Alice here.', lastSeenMessageId: firstMessageId });
    expect(collided.status).toBe(409);
    expect(collided.body.type).toBe('https://mailroom.dev/problems/reply-collision');
    expect(collided.body.newMessages).toEqual([
      expect.objectContaining({ id: bobs.body.outboundMessageId, direction: 'outbound', authorId: bob().id }),
      expect.objectContaining({
        id: newMailId,
        direction: 'inbound',
        from: customer,
        text: expect.stringContaining('Any news?'),
      }),
    ]);
    expect(collided.body.newMessages[1].text.length).toBeLessThanOrEqual(500);
    // Nothing was written for the refused reply.
    const replies = await stack.db
      .selectFrom('outbound_messages')
      .select('id')
      .where('conversation_id', '=', conversationId)
      .execute();
    expect(replies).toHaveLength(1);

    // Having seen the latest mail, no collision; or sent anyway with force.
    const current = await api(alice().apiKey, 'POST', `${path}/preview`, { text: 'x', lastSeenMessageId: newMailId });
    expect(current.status).toBe(200);
    const forcedPreview = await api(alice().apiKey, 'POST', `${path}/preview`, { text: 'Alice here.' });
    const forced = await api(alice().apiKey, 'POST', path, {
      text: 'Alice here.',
      lastSeenMessageId: firstMessageId,
      force: true,
    });
    expect(forced.status).toBe(201);
    const forcedMail = await stack.capture.waitFor((mail) => mail.messageId === forced.body.messageId);
    await expectAsPreviewed(forcedMail.raw, forcedPreview.body);
  });

  it('sends one of two replies to the same mail written at the same moment; the other answers 409 with the first', async () => {
    const customer = 'same-moment@example.com';
    const { conversationId, firstMessageId } = await openConversation(customer);
    const path = `/v1/conversations/${conversationId}/replies`;
    const answers = await Promise.all(
      [alice(), bob()].map((agent) =>
        api(agent.apiKey, 'POST', path, { text: `${agent.id} answers`, lastSeenMessageId: firstMessageId }),
      ),
    );
    expect(answers.map((answer) => answer.status).sort()).toEqual([201, 409]);
    const sent = answers.find((answer) => answer.status === 201)!;
    const refused = answers.find((answer) => answer.status === 409)!;
    expect(refused.body.newMessages).toEqual([
      expect.objectContaining({ id: sent.body.outboundMessageId, direction: 'outbound' }),
    ]);
    await stack.capture.waitFor((mail) => mail.messageId === sent.body.messageId);
    const written = await stack.db
      .selectFrom('outbound_messages')
      .select('id')
      .where('conversation_id', '=', conversationId)
      .execute();
    expect(written.map((row) => row.id)).toEqual([sent.body.outboundMessageId]);
  });

  it('shows who is writing a reply until the lease runs out or the reply is sent', async () => {
    const { conversationId } = await openConversation('drafting@example.com');
    const drafting = `/v1/conversations/${conversationId}/drafting`;

    const leased = await api(alice().apiKey, 'PUT', drafting);
    expect(leased.status).toBe(200);
    expect(leased.body.agent).toEqual({ id: alice().id, name: 'Alice Agent' });
    const seen = await api(bob().apiKey, 'GET', `/v1/conversations/${conversationId}`);
    expect(seen.body.drafting).toEqual([
      { agent: { id: alice().id, name: 'Alice Agent' }, since: leased.body.since, expiresAt: leased.body.expiresAt },
    ]);

    // Renewed: the same stretch of writing (since stays), a later expiry.
    clockOffset += 30_000;
    const renewed = await api(alice().apiKey, 'PUT', drafting);
    expect(renewed.body.since).toBe(leased.body.since);
    expect(Date.parse(renewed.body.expiresAt)).toBeGreaterThan(Date.parse(leased.body.expiresAt));

    // Not renewed for longer than the lease: gone.
    clockOffset += 61_000;
    expect((await api(bob().apiKey, 'GET', `/v1/conversations/${conversationId}`)).body.drafting).toEqual([]);

    // Sending the reply ends the agent's lease; so does saying they stopped.
    await api(alice().apiKey, 'PUT', drafting);
    await api(bob().apiKey, 'PUT', drafting);
    expect((await api(team.admin.apiKey, 'GET', `/v1/conversations/${conversationId}`)).body.drafting).toHaveLength(2);
    expect((await api(alice().apiKey, 'POST', `/v1/conversations/${conversationId}/replies`, { text: 'Done.' })).status).toBe(
      201,
    );
    expect((await api(bob().apiKey, 'DELETE', drafting)).status).toBe(204);
    expect((await api(team.admin.apiKey, 'GET', `/v1/conversations/${conversationId}`)).body.drafting).toEqual([]);
  });
});
