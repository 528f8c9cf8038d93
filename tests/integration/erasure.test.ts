import { randomUUID } from 'node:crypto';
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { Payload } from '@temporalio/common';
import { sql } from 'kysely';
import MailComposer from 'nodemailer/lib/mail-composer/index.js';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Db } from '../../src/db/connection.js';
import { decryptCredential } from '../../src/security/credentials.js';
import { tombstoneContact } from '../../src/db/erasure.js';
import { ensureRetentionSchedule } from '../../src/temporal/erasure.js';
import {
  contactErasureWorkflowId,
  conversationWorkflowId,
  mailReconcilerWorkflowId,
  retentionScheduleId,
  webhookDispatcherWorkflowId,
} from '../../src/workflows/ids.js';
import { callApi, eventually, postMail } from '../support/http.js';
import { customerMail } from '../support/mail.js';
import { startMailroomProcess } from '../support/mailroom-process.js';
import { seedSupportTeam, startTestStack, TEST_SECRET_KEY, type TestStack } from '../support/stack.js';

// Issue 13, personal data: erasing a contact leaves no row, file or workflow history with their address or
// what they wrote, only anonymous tombstones that reports still count; the retention sweep erases closed
// conversations past an account's retention, run by a Temporal Schedule.

/** Every text, JSON and binary column of every table of the database that holds `needle`, with how many rows. */
async function rowsHolding(db: Db, needle: string): Promise<string[]> {
  const { rows: columns } = await sql<{ table_name: string; column_name: string; data_type: string }>`
    select c.table_name, c.column_name, c.data_type from information_schema.columns c
      join information_schema.tables t on t.table_schema = c.table_schema and t.table_name = c.table_name
      where c.table_schema = 'public' and t.table_type = 'BASE TABLE'
        and c.data_type in ('text', 'character varying', 'jsonb', 'json', 'bytea', 'ARRAY')`.execute(db);
  const found: string[] = [];
  for (const { table_name: table, column_name: column, data_type: type } of columns) {
    const value = sql.ref(`${table}.${column}`);
    const holds =
      type === 'bytea'
        ? sql`position(convert_to(${needle}, 'UTF8') in ${value}) > 0`
        : sql`strpos(lower(${value}::text), lower(${needle})) > 0`;
    const { rows } = await sql<{ n: string }>`select count(*) as n from ${sql.table(table)} where ${holds}`.execute(db);
    if (Number(rows[0]!.n) > 0) found.push(`${table}.${column} (${rows[0]!.n} rows)`);
  }
  return found;
}

/** Stored responses (Idempotency-Key; kept encrypted) that hold `needle` once decrypted. */
async function storedResponsesHolding(db: Db, needle: string): Promise<number> {
  const rows = await db.selectFrom('idempotency_keys').select('response_body').where('response_body', 'is not', null).execute();
  return rows.filter((row) => decryptCredential(row.response_body!, TEST_SECRET_KEY).includes(needle)).length;
}

/** Every payload in a history (inputs, results, signals, memos, summaries, failures), decoded by the client's converter. */
async function decodedPayloads(temporal: Client, history: unknown): Promise<string[]> {
  const payloads: Payload[] = [];
  const walk = (value: unknown) => {
    if (!value || typeof value !== 'object') return;
    if (ArrayBuffer.isView(value)) return;
    const maybe = value as { metadata?: unknown; data?: unknown };
    if (maybe.metadata && typeof maybe.metadata === 'object' && ArrayBuffer.isView(maybe.data)) {
      payloads.push(value as Payload);
      return;
    }
    for (const child of Object.values(value)) walk(child);
  };
  walk(history);
  let decoded = payloads;
  for (const codec of [...temporal.options.loadedDataConverter.payloadCodecs].reverse()) decoded = await codec.decode(decoded);
  return decoded.map((payload) => Buffer.from(payload.data ?? new Uint8Array()).toString('utf8'));
}

/** The ids of the task queue's workflows whose history holds `needle` (in clear text once decoded). */
async function historiesHolding(temporal: Client, taskQueue: string, needles: string[]): Promise<string[]> {
  const found: string[] = [];
  for await (const execution of temporal.workflow.list({ query: `TaskQueue = '${taskQueue}'` })) {
    let history;
    try {
      history = await temporal.workflow.getHandle(execution.workflowId, execution.runId).fetchHistory();
    } catch (error) {
      if (error instanceof WorkflowNotFoundError || (error as { code?: number }).code === 5) continue; // deleted meanwhile
      throw error;
    }
    const texts = await decodedPayloads(temporal, history);
    if (texts.some((text) => needles.some((needle) => text.toLowerCase().includes(needle.toLowerCase())))) {
      found.push(execution.workflowId);
    }
  }
  return found;
}

async function workflowGone(temporal: Client, workflowId: string): Promise<boolean> {
  try {
    await temporal.workflow.getHandle(workflowId).describe();
    return false;
  } catch (error) {
    if (error instanceof WorkflowNotFoundError) return true;
    throw error;
  }
}

describe('erasing a contact', () => {
  let stack: TestStack;
  let team: Awaited<ReturnType<typeof seedSupportTeam>>;
  let other: Awaited<ReturnType<typeof seedSupportTeam>>;
  const tag = randomUUID().slice(0, 8);
  const address = `erin.${tag}@example.com`;
  const name = `Erin Erasable${tag}`;
  const phrase = `my locker code is ${tag}-4711`;
  const conversationIds: string[] = [];
  let contactId: string;
  let surveyLink: string;
  let keptConversationId: string;

  const api = (apiKey: string, method: string, path: string, body?: unknown) =>
    callApi(stack.api.url, apiKey, method, path, body);

  async function mailFromErin(subject: string, attachment?: string): Promise<string> {
    const raw = await new MailComposer({
      from: `"${name}" <${address}>`,
      to: 'support@acme.example',
      subject,
      messageId: `<${randomUUID()}@example.com>`,
      text: `Hello, ${phrase}. Please help.`,
      attachments: attachment ? [{ filename: 'note.txt', contentType: 'text/plain', content: attachment }] : [],
    })
      .compile()
      .build();
    const posted = await postMail(stack.api.url, team.channel, raw);
    expect(posted.status).toBe(202);
    const conversationId: string = posted.body.conversationId;
    await eventually(async () => {
      const { body } = await api(team.admin.apiKey, 'GET', `/v1/conversations/${conversationId}`);
      return body.stage === 'assigned' ? body : undefined;
    });
    return conversationId;
  }

  beforeAll(async () => {
    stack = await startTestStack();
    team = await seedSupportTeam(stack.db, {
      name: 'Acme Support',
      emailAddress: 'support@acme.example',
      csat: { delaySeconds: 1, linkValiditySeconds: 3600 },
    });
    other = await seedSupportTeam(stack.db, { name: 'Other Support', emailAddress: 'support@other.example' });
    await stack.db.updateTable('channels').set({ close_after_seconds: 1 }).where('id', '=', team.channel.id).execute();

    // A backend subscribed to the account's events: their payloads name the sender and the subject.
    const subscribed = await api(team.admin.apiKey, 'POST', '/v1/webhooks', {
      url: 'http://127.0.0.1:9/mailroom-events',
      events: ['message.received', 'conversation.created', 'csat.rated'],
    });
    expect(subscribed.status).toBe(201);

    // A closed conversation: a mail with a file, an agent's reply, resolved, rated with a comment, closed.
    const [alice] = team.agents;
    const closed = await mailFromErin(`Locker ${tag}`, `The attachment repeats it: ${phrase}`);
    conversationIds.push(closed);
    const reply = await fetch(`${stack.api.url}/v1/conversations/${closed}/replies`, {
      method: 'POST',
      headers: { authorization: `Bearer ${alice!.apiKey}`, 'content-type': 'application/json', 'idempotency-key': randomUUID() },
      body: JSON.stringify({ text: `Hello ${name}, about "${phrase}": done.` }),
    });
    expect(reply.status).toBe(201);
    // A note quoting the customer, posted with an Idempotency-Key: its stored response holds the quote.
    const note = await fetch(`${stack.api.url}/v1/conversations/${closed}/notes`, {
      method: 'POST',
      headers: { authorization: `Bearer ${alice!.apiKey}`, 'content-type': 'application/json', 'idempotency-key': randomUUID() },
      body: JSON.stringify({ text: `Customer says: ${phrase}` }),
    });
    expect(note.status).toBe(201);
    expect((await api(alice!.apiKey, 'POST', `/v1/conversations/${closed}/resolve`)).status).toBe(200);
    const survey = await stack.capture.waitFor(
      (mail) => mail.envelope.to.includes(address) && mail.subject.startsWith('How did we do?'),
    );
    const link = /(http\S+\/csat\/\S+)/.exec(survey.text)?.[1];
    surveyLink = link!;
    const rated = await fetch(link!, {
      method: 'POST',
      body: new URLSearchParams({ rating: '4', comment: `Thanks! ${phrase}` }),
    });
    expect(rated.status).toBe(200);
    await eventually(async () => {
      const { body } = await api(team.admin.apiKey, 'GET', `/v1/conversations/${closed}`);
      return body.status === 'closed' ? true : undefined;
    }, 60_000);

    // An open one, with an upload no reply took yet and a reply scheduled for next week (a timer of its workflow).
    const open = await mailFromErin(`Second question ${tag}`);
    conversationIds.push(open);
    const form = new FormData();
    form.append('file', new Blob([`draft for ${address}: ${phrase}`], { type: 'text/plain' }), 'draft.txt');
    const uploaded = await fetch(`${stack.api.url}/v1/conversations/${open}/attachments`, {
      method: 'POST',
      headers: { authorization: `Bearer ${alice!.apiKey}` },
      body: form,
    });
    expect(uploaded.status).toBe(201);
    const later = await api(alice!.apiKey, 'POST', `/v1/conversations/${open}/replies`, {
      text: `We will call ${name} next week.`,
      sendAt: new Date(Date.now() + 7 * 86_400_000).toISOString(),
    });
    expect(later.status).toBe(201);

    // Someone else's conversation stays as it is.
    const kept = await postMail(
      stack.api.url,
      team.channel,
      customerMail({ messageId: `kept.${tag}@example.com`, from: `"Kim Kept" <kim.${tag}@example.com>`, subject: `Kept ${tag}` }),
    );
    expect(kept.status).toBe(202);
    keptConversationId = kept.body.conversationId;

    const { body: found } = await api(team.admin.apiKey, 'GET', `/v1/contacts?email=${encodeURIComponent(address)}`);
    contactId = found.data[0].id;
  }, 180_000);

  afterAll(async () => {
    await stack?.stop();
  });

  it('is for admins of the account: an agent gets 403, another account 404, and nothing is erased', async () => {
    const byAgent = await api(team.agents[0]!.apiKey, 'DELETE', `/v1/contacts/${contactId}`);
    expect(byAgent).toMatchObject({ status: 403, contentType: 'application/problem+json' });
    const byOtherAccount = await api(other.admin.apiKey, 'DELETE', `/v1/contacts/${contactId}`);
    expect(byOtherAccount).toMatchObject({ status: 404, contentType: 'application/problem+json' });
    const { body } = await api(team.admin.apiKey, 'GET', `/v1/contacts/${contactId}`);
    expect(body).toMatchObject({ email: address, conversations: expect.any(Array) });
    expect(body.conversations).toHaveLength(2);
  });

  it('leaves no row and no workflow history with their address or what they wrote; reports still count them', async () => {
    const reportBefore = await api(team.admin.apiKey, 'GET', '/v1/reports/conversations?groupBy=none&interval=none');
    const csatBefore = await api(team.admin.apiKey, 'GET', '/v1/reports/csat?groupBy=none');
    expect(csatBefore.body.groups[0]).toMatchObject({ surveysSent: 1, ratings: 1 });
    // What the test searches for is there before: the search would find it.
    expect(await rowsHolding(stack.db, address)).toEqual(
      expect.arrayContaining([expect.stringMatching(/^inbound_messages\.raw/)]),
    );
    expect(await rowsHolding(stack.db, address)).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^webhook_deliveries\.payload/),
        expect.stringMatching(/^outbound_messages\.mime/),
      ]),
    );
    expect(await rowsHolding(stack.db, phrase)).toEqual(expect.arrayContaining([expect.stringMatching(/^attachments\.content/)]));
    expect(await historiesHolding(stack.temporal, stack.taskQueue, [address, name, phrase])).toEqual(
      expect.arrayContaining(conversationIds.map(conversationWorkflowId)),
    );

    expect(await storedResponsesHolding(stack.db, phrase)).toBe(1);

    let erased = await api(team.admin.apiKey, 'DELETE', `/v1/contacts/${contactId}`);
    if (erased.status === 202) {
      // Still under way after the request's wait (a slow machine): the erasure says when it is done.
      expect(erased.body).toMatchObject({ contactId, state: 'running' });
      await eventually(async () => {
        const { body } = await api(team.admin.apiKey, 'GET', `/v1/contacts/${contactId}/erasure`);
        return body.state === 'completed' ? body : undefined;
      }, 120_000);
      erased = await api(team.admin.apiKey, 'DELETE', `/v1/contacts/${contactId}`);
    }
    expect(erased.status).toBe(204);

    // The database: no column of any table holds the address, the name or the text.
    expect(await rowsHolding(stack.db, address)).toEqual([]);
    expect(await rowsHolding(stack.db, name)).toEqual([]);
    expect(await rowsHolding(stack.db, phrase)).toEqual([]);
    expect(await storedResponsesHolding(stack.db, phrase)).toBe(0);
    // Temporal: the conversations' workflows are gone, and no history left on the task queue holds any of it.
    for (const conversationId of conversationIds) {
      await eventually(async () =>
        (await workflowGone(stack.temporal, conversationWorkflowId(conversationId))) ? true : undefined,
      );
    }
    await eventually(async () => {
      const listed = [];
      for (const conversationId of conversationIds) {
        for await (const run of stack.temporal.workflow.list({
          query: `WorkflowId = '${conversationWorkflowId(conversationId)}'`,
        })) {
          listed.push(run.runId);
        }
      }
      return listed.length === 0 ? true : undefined;
    });
    expect(await historiesHolding(stack.temporal, stack.taskQueue, [address, name, phrase])).toEqual([]);
    // The erasure's own history holds ids and counts only.
    const erasure = await stack.temporal.workflow.getHandle(contactErasureWorkflowId(contactId)).result();
    expect(erasure).toEqual({ found: true, conversations: 2 });

    // Reports count the tombstones: the same conversations created, the same rating.
    const reportAfter = await api(team.admin.apiKey, 'GET', '/v1/reports/conversations?groupBy=none&interval=none');
    expect(reportAfter.body.groups[0].periods[0].created).toBe(reportBefore.body.groups[0].periods[0].created);
    expect(reportAfter.body.groups[0].periods[0].created).toBe(3);
    const csatAfter = await api(team.admin.apiKey, 'GET', '/v1/reports/csat?groupBy=none');
    expect(csatAfter.body.groups).toEqual(csatBefore.body.groups);

    // Gone from the API; the other contact's conversation is untouched.
    expect((await api(team.admin.apiKey, 'GET', `/v1/contacts/${contactId}`)).status).toBe(404);
    for (const conversationId of conversationIds) {
      expect((await api(team.admin.apiKey, 'GET', `/v1/conversations/${conversationId}`)).status).toBe(404);
    }
    const { body: list } = await api(team.admin.apiKey, 'GET', '/v1/conversations?limit=100');
    expect(list.data.map((c: { id: string }) => c.id)).toEqual([keptConversationId]);
    const { body: kept } = await api(team.admin.apiKey, 'GET', `/v1/conversations/${keptConversationId}`);
    expect(kept.messages).toHaveLength(1);
    expect(await workflowGone(stack.temporal, conversationWorkflowId(keptConversationId))).toBe(false);

    // The survey link names a conversation that is no more.
    const survey = await fetch(surveyLink);
    expect(survey.status).toBe(404);
    expect(await survey.text()).not.toContain(name);

    // Asked again: done already.
    expect((await api(team.admin.apiKey, 'DELETE', `/v1/contacts/${contactId}`)).status).toBe(204);
    const status = await api(team.admin.apiKey, 'GET', `/v1/contacts/${contactId}/erasure`);
    expect(status.body).toMatchObject({ contactId, state: 'completed', completedAt: expect.any(String) });
  });

  it('lets a new mail from the same address start a new contact and conversation, not revive the old ones', async () => {
    const again = await mailFromErin(`Locker ${tag}`);
    expect(conversationIds).not.toContain(again);
    const { body } = await api(team.admin.apiKey, 'GET', `/v1/contacts?email=${encodeURIComponent(address)}`);
    expect(body.data).toHaveLength(1);
    expect(body.data[0].id).not.toBe(contactId);
    for (const conversationId of conversationIds) {
      expect(await workflowGone(stack.temporal, conversationWorkflowId(conversationId))).toBe(true);
    }
  });

  it('answers 202 while no worker runs it, and finishes once one does', async () => {
    const sender = `fay.${tag}@example.com`;
    const posted = await postMail(
      stack.api.url,
      team.channel,
      customerMail({ messageId: `fay.${tag}@example.com`, from: `"Fay" <${sender}>`, subject: `Waiting ${tag}` }),
    );
    expect(posted.status).toBe(202);
    const conversationId: string = posted.body.conversationId;
    await eventually(async () => {
      const { body } = await api(team.admin.apiKey, 'GET', `/v1/conversations/${conversationId}`);
      return body.stage === 'assigned' ? true : undefined;
    });
    const { body: found } = await api(team.admin.apiKey, 'GET', `/v1/contacts?email=${encodeURIComponent(sender)}`);
    const fay: string = found.data[0].id;

    await stack.runWithoutWorker(async () => {
      const response = await fetch(`${stack.api.url}/v1/contacts/${fay}`, {
        method: 'DELETE',
        headers: { authorization: `Bearer ${team.admin.apiKey}` },
      });
      expect(response.status).toBe(202);
      expect(response.headers.get('location')).toBe(`/v1/contacts/${fay}/erasure`);
      expect(await response.json()).toMatchObject({ contactId: fay, state: 'running', completedAt: null });
      const status = await api(team.admin.apiKey, 'GET', `/v1/contacts/${fay}/erasure`);
      expect(status.body).toMatchObject({ state: 'running', requestedAt: expect.any(String) });
    });

    const done = await eventually(async () => {
      const { body } = await api(team.admin.apiKey, 'GET', `/v1/contacts/${fay}/erasure`);
      return body.state === 'completed' ? body : undefined;
    }, 60_000);
    expect(done.completedAt).toEqual(expect.any(String));
    await eventually(async () =>
      (await workflowGone(stack.temporal, conversationWorkflowId(conversationId))) ? true : undefined,
    );
    expect(await rowsHolding(stack.db, sender)).toEqual([]);
    // A contact that was never asked to be erased has no erasure to show.
    const { body: others } = await api(
      team.admin.apiKey,
      'GET',
      `/v1/contacts?email=${encodeURIComponent(`kim.${tag}@example.com`)}`,
    );
    expect((await api(team.admin.apiKey, 'GET', `/v1/contacts/${others.data[0].id}/erasure`)).status).toBe(404);
  });

  it('lets no mail reach a conversation whose erasure has begun, not even from someone else who took part', async () => {
    const sender = `gus.${tag}@example.com`;
    const colleague = `max.${tag}@example.com`;
    const posted = await postMail(
      stack.api.url,
      team.channel,
      customerMail({
        messageId: `gus.${tag}@example.com`,
        from: `"Gus" <${sender}>`,
        subject: `Half-way ${tag}`,
        headers: [`Cc: ${colleague}`],
      }),
    );
    const erasing: string = posted.body.conversationId;
    await eventually(async () => {
      const { body } = await api(team.admin.apiKey, 'GET', `/v1/conversations/${erasing}`);
      return body.stage === 'assigned' ? true : undefined;
    });
    // Gus's colleague, copied, writes into it too.
    const colleagueWrote = await postMail(
      stack.api.url,
      team.channel,
      customerMail({
        messageId: `max.${tag}@example.com`,
        from: colleague,
        subject: `Re: Half-way ${tag}`,
        inReplyTo: `<gus.${tag}@example.com>`,
      }),
    );
    expect(colleagueWrote.body.conversationId).toBe(erasing);
    const { body: found } = await api(team.admin.apiKey, 'GET', `/v1/contacts?email=${encodeURIComponent(sender)}`);
    const gus: string = found.data[0].id;

    // The erasure's first step has run (as if the worker died right after it): the rest is still to come, and
    // the colleague's mail is still stored in the conversation meanwhile.
    await tombstoneContact(stack.db, gus, TEST_SECRET_KEY);
    const again = await postMail(
      stack.api.url,
      team.channel,
      customerMail({
        messageId: `max-again.${tag}@example.com`,
        from: colleague,
        subject: `Re: Half-way ${tag}`,
        inReplyTo: `<max.${tag}@example.com>`,
      }),
    );
    expect(again.status).toBe(202);
    expect(again.body.conversationId).not.toBe(erasing);
    const reached = await stack.db
      .selectFrom('inbound_messages')
      .select('message_id')
      .where('conversation_id', '=', erasing)
      .execute();
    expect(reached.map((m) => m.message_id)).toEqual([`<max.${tag}@example.com>`]);

    // The erasure then runs to its end: the conversation, its messages and its workflow are gone.
    const erased = await api(team.admin.apiKey, 'DELETE', `/v1/contacts/${gus}`);
    expect([202, 204]).toContain(erased.status);
    await eventually(async () => {
      const { body } = await api(team.admin.apiKey, 'GET', `/v1/contacts/${gus}/erasure`);
      return body.state === 'completed' ? true : undefined;
    }, 60_000);
    expect(await workflowGone(stack.temporal, conversationWorkflowId(erasing))).toBe(true);
    expect(await stack.db.selectFrom('inbound_messages').select('id').where('conversation_id', '=', erasing).execute()).toEqual(
      [],
    );
    expect(await rowsHolding(stack.db, sender)).toEqual([]);
  });
});

describe('the retention sweep', () => {
  let stack: TestStack;
  let keeping: Awaited<ReturnType<typeof seedSupportTeam>>;
  let forever: Awaited<ReturnType<typeof seedSupportTeam>>;
  const tag = randomUUID().slice(0, 8);

  const api = (apiKey: string, method: string, path: string, body?: unknown) =>
    callApi(stack.api.url, apiKey, method, path, body);

  /** A conversation of the team, resolved and closed; `closedDaysAgo` moves its closing back in time. */
  async function conversation(team: typeof keeping, n: number, state: 'open' | { closedDaysAgo: number }): Promise<string> {
    const posted = await postMail(
      stack.api.url,
      team.channel,
      [
        `From: <retained-${n}.${tag}@example.com>`,
        'To: support@acme.example',
        `Subject: Case ${n}`,
        `Message-ID: <case-${n}.${tag}@example.com>`,
        '',
        `Case ${n} of ${tag}`,
        '',
      ].join('\r\n'),
    );
    expect(posted.status).toBe(202);
    const conversationId: string = posted.body.conversationId;
    await eventually(async () => {
      const { body } = await api(team.admin.apiKey, 'GET', `/v1/conversations/${conversationId}`);
      return body.stage === 'assigned' ? body : undefined;
    });
    if (state === 'open') return conversationId;
    expect((await api(team.admin.apiKey, 'POST', `/v1/conversations/${conversationId}/resolve`)).status).toBe(200);
    await eventually(async () => {
      const { body } = await api(team.admin.apiKey, 'GET', `/v1/conversations/${conversationId}`);
      return body.status === 'closed' ? true : undefined;
    });
    await stack.db
      .updateTable('conversations')
      .set({ closed_at: sql<Date>`now() - make_interval(days => ${state.closedDaysAgo})` })
      .where('id', '=', conversationId)
      .execute();
    return conversationId;
  }

  beforeAll(async () => {
    stack = await startTestStack();
    keeping = await seedSupportTeam(stack.db, { name: 'Keeps 30 days', emailAddress: 'support@acme.example' });
    forever = await seedSupportTeam(stack.db, { name: 'Keeps everything', emailAddress: 'support@forever.example' });
    await stack.db.updateTable('channels').set({ close_after_seconds: 0 }).execute();
  }, 60_000);

  afterAll(async () => {
    await stack?.temporal.schedule
      .getHandle(retentionScheduleId(stack.taskQueue))
      .delete()
      .catch(() => undefined);
    await stack?.stop();
  });

  it('is an account setting of admins: 1 to 3650 days, or null to keep everything', async () => {
    const [agent] = keeping.agents;
    expect(await api(keeping.admin.apiKey, 'GET', '/v1/account/settings')).toMatchObject({
      status: 200,
      body: { retentionDays: null },
    });
    expect(await api(agent!.apiKey, 'PATCH', '/v1/account/settings', { retentionDays: 30 })).toMatchObject({
      status: 403,
      contentType: 'application/problem+json',
    });
    for (const retentionDays of [0, 3651, 1.5, '30']) {
      const refused = await api(keeping.admin.apiKey, 'PATCH', '/v1/account/settings', { retentionDays });
      expect(refused).toMatchObject({ status: 422, contentType: 'application/problem+json' });
      expect(refused.body.errors[0].field).toBe('retentionDays');
    }
    expect(await api(keeping.admin.apiKey, 'PATCH', '/v1/account/settings', { retentionDays: 30 })).toMatchObject({
      status: 200,
      body: { retentionDays: 30 },
    });
    expect(await api(agent!.apiKey, 'GET', '/v1/account/settings')).toMatchObject({ status: 200, body: { retentionDays: 30 } });
    // Another account is not changed.
    expect((await api(forever.admin.apiKey, 'GET', '/v1/account/settings')).body).toEqual({ retentionDays: null });
  });

  it('erases, when its schedule fires, only closed conversations past the retention of accounts that set one', async () => {
    const setting = await api(keeping.admin.apiKey, 'PATCH', '/v1/account/settings', { retentionDays: 30 });
    expect(setting.body).toEqual({ retentionDays: 30 });
    const expired = await conversation(keeping, 1, { closedDaysAgo: 31 });
    const recent = await conversation(keeping, 2, { closedDaysAgo: 29 });
    const open = await conversation(keeping, 3, 'open');
    const elsewhere = await conversation(forever, 4, { closedDaysAgo: 400 });

    // A worker process (npm run worker) creates the schedule when it starts; a second start changes nothing.
    const worker = startMailroomProcess('src/worker.ts', {
      ...process.env,
      DATABASE_URL: stack.databaseUrl,
      TEMPORAL_ADDRESS: inject('temporalAddress'),
      TEMPORAL_TASK_QUEUE: stack.taskQueue,
      SMTP_URL: stack.smtpUrl,
      SECRET_KEY: TEST_SECRET_KEY,
      LOG_LEVEL: 'info',
    });
    try {
      await worker.waitForLog('worker started', 120_000);
    } finally {
      await worker.stop();
      // What else it started for the task queue would wait for a worker on the shared dev server.
      for (const workflowId of [mailReconcilerWorkflowId(stack.taskQueue), webhookDispatcherWorkflowId(stack.taskQueue)]) {
        await stack.temporal.workflow
          .getHandle(workflowId)
          .terminate('test worker stopped')
          .catch(() => undefined);
      }
    }
    const schedule = stack.temporal.schedule.getHandle(retentionScheduleId(stack.taskQueue));
    const described = await schedule.describe();
    expect(described.action).toMatchObject({ type: 'startWorkflow', workflowType: 'retentionSweep', taskQueue: stack.taskQueue });
    expect(described.spec.calendars).toHaveLength(1);
    await ensureRetentionSchedule(stack.temporal, stack.taskQueue);
    expect((await schedule.describe()).info.createdAt).toEqual(described.info.createdAt);

    await schedule.trigger();
    const sweep = await eventually(async () => {
      for await (const run of stack.temporal.workflow.list({
        query: `WorkflowType = 'retentionSweep' AND TaskQueue = '${stack.taskQueue}'`,
      })) {
        return run;
      }
      return undefined;
    });
    expect(await stack.temporal.workflow.getHandle(sweep.workflowId, sweep.runId).result()).toEqual({ erased: 1 });

    const rows = await stack.db
      .selectFrom('conversations')
      .select(['id', 'erased_at', 'subject'])
      .where('id', 'in', [expired, recent, open, elsewhere])
      .execute();
    const byId = new Map(rows.map((row) => [row.id, row]));
    expect(byId.get(expired)).toMatchObject({ erased_at: expect.any(Date), subject: '' });
    for (const kept of [recent, open, elsewhere])
      expect(byId.get(kept)).toMatchObject({ erased_at: null, subject: expect.stringMatching(/^Case/) });
    const messages = await stack.db
      .selectFrom('inbound_messages')
      .select('conversation_id')
      .where('conversation_id', 'in', [expired, recent, open, elsewhere])
      .execute();
    expect(messages.map((m) => m.conversation_id).sort()).toEqual([recent, open, elsewhere].sort());
    // The contact of the expired conversation had no other: erased too. The others keep theirs.
    const contacts = await stack.db
      .selectFrom('contacts')
      .select(['email', 'erased_at'])
      .where('email', 'like', `retained-%.${tag}@example.com`)
      .orderBy('email')
      .execute();
    expect(contacts.map((contact) => contact.email)).toEqual([2, 3, 4].map((n) => `retained-${n}.${tag}@example.com`));
    expect(await rowsHolding(stack.db, `retained-1.${tag}@example.com`)).toEqual([]);
    await eventually(async () => ((await workflowGone(stack.temporal, conversationWorkflowId(expired))) ? true : undefined));
    expect((await api(keeping.admin.apiKey, 'GET', `/v1/conversations/${expired}`)).status).toBe(404);
    expect((await api(keeping.admin.apiKey, 'GET', `/v1/conversations/${recent}`)).status).toBe(200);
  });

  it('takes the accounts in turns: a large backlog of one does not hold back the others', async () => {
    const teams = [
      await seedSupportTeam(stack.db, { name: 'Backlog one', emailAddress: 'support@one.example' }),
      await seedSupportTeam(stack.db, { name: 'Backlog two', emailAddress: 'support@two.example' }),
    ];
    // The sweep takes accounts by id: the large backlog is the one it comes to first.
    const [large, small] = teams.sort((a, b) => (a.account.id < b.account.id ? -1 : 1)) as [(typeof teams)[0], (typeof teams)[0]];
    await stack.db
      .updateTable('accounts')
      .set({ retention_days: 7 })
      .where('id', 'in', [large.account.id, small.account.id])
      .execute();
    // Closed long ago (as a history imported into a new deployment would be): rows only, their workflows long gone.
    async function closedLongAgo(team: typeof large, count: number): Promise<string[]> {
      const contactId = randomUUID();
      await stack.db
        .insertInto('contacts')
        .values({ id: contactId, account_id: team.account.id, email: `backlog.${randomUUID()}@example.com` })
        .execute();
      const ids = Array.from({ length: count }, () => randomUUID());
      await stack.db
        .insertInto('conversations')
        .values(
          ids.map((id) => ({
            id,
            account_id: team.account.id,
            channel_id: team.channel.id,
            contact_id: contactId,
            subject: `Old case ${tag}`,
            status: 'closed' as const,
            stage: 'closed' as const,
            updated_at: new Date(),
            closed_at: sql<Date>`now() - interval '30 days'`,
          })),
        )
        .execute();
      return ids;
    }
    const largeIds = await closedLongAgo(large, 60);
    const smallIds = await closedLongAgo(small, 2);

    const sweep = await stack.temporal.workflow.start('retentionSweep', {
      workflowId: `retention-sweep-test-${tag}`,
      taskQueue: stack.taskQueue,
      args: [{}],
    });
    const result = (await sweep.result()) as { erased: number };
    expect(result.erased).toBeGreaterThanOrEqual(62);

    const erased = await stack.db
      .selectFrom('conversations')
      .select(['id', 'erased_at'])
      .where('id', 'in', [...largeIds, ...smallIds])
      .execute();
    expect(erased.every((row) => row.erased_at !== null)).toBe(true);
    // Each conversation is erased in a transaction of its own: their times give the order.
    const lastOfSmall = Math.max(...erased.filter((row) => smallIds.includes(row.id)).map((row) => row.erased_at!.getTime()));
    const largeBefore = erased.filter((row) => largeIds.includes(row.id) && row.erased_at!.getTime() < lastOfSmall);
    expect(largeBefore.length).toBeLessThanOrEqual(25);
  });
});
