import { randomUUID } from 'node:crypto';
import MailComposer from 'nodemailer/lib/mail-composer/index.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addAgentToChannel, createChannel } from '../../src/db/seed.js';
import { createConversationGateway } from '../../src/temporal/gateway.js';
import { conversationWorkflowId } from '../../src/workflows/ids.js';
import { callApi, eventually, postMail } from '../support/http.js';
import { seedSupportTeam, startTestStack, type TestStack } from '../support/stack.js';
import { customerMail } from '../support/mail.js';

// The conversations API on the whole stack: lists and their filters, the full record with attachments,
// what agents do (reopen, labels, notes, replies) and web-form conversations (A3, A11), with the
// access rule: another account's conversation is 404 and never listed, another channel's is 403.

describe('conversations API', () => {
  let stack: TestStack;
  let team: Awaited<ReturnType<typeof seedSupportTeam>>;
  let other: Awaited<ReturnType<typeof seedSupportTeam>>;
  // Bob's alone; nobody's (conversations wait unassigned); closes 1 s after resolution; disabled.
  let billing: { id: string; forwarderSecret: string };
  let sales: { id: string; forwarderSecret: string };
  let quick: { id: string; forwarderSecret: string };
  let disabled: { id: string; forwarderSecret: string };

  beforeAll(async () => {
    stack = await startTestStack();
    const { db } = stack;
    team = await seedSupportTeam(db, {
      name: 'Acme Support',
      emailAddress: 'support@acme.example',
      greeting: { text: 'Hi! We received your message and will answer soon.' },
    });
    const [alice, bob] = team.agents;
    billing = await createChannel(db, { accountId: team.account.id, name: 'Acme Billing', emailAddress: 'billing@acme.example' });
    await addAgentToChannel(db, billing.id, bob!.id);
    sales = await createChannel(db, { accountId: team.account.id, name: 'Acme Sales', emailAddress: 'sales@acme.example' });
    quick = await createChannel(db, { accountId: team.account.id, name: 'Acme Quick', emailAddress: 'quick@acme.example' });
    await addAgentToChannel(db, quick.id, alice!.id);
    disabled = await createChannel(db, { accountId: team.account.id, name: 'Acme Old', emailAddress: 'old@acme.example' });
    await db.updateTable('channels').set({ close_after_seconds: 1 }).where('id', '=', quick.id).execute();
    await db.updateTable('channels').set({ enabled: false }).where('id', '=', disabled.id).execute();
    await db.updateTable('channels').set({ max_attachment_bytes: 2000 }).where('id', '=', team.channel.id).execute();
    other = await seedSupportTeam(db, { name: 'Other', emailAddress: 'help@other.example' });
  });

  afterAll(async () => {
    await stack?.stop();
  });

  const api = (apiKey: string, method: string, path: string, body?: unknown) =>
    callApi(stack.api.url, apiKey, method, path, body);
  const admin = () => team.admin.apiKey;
  const alice = () => team.agents[0]!;
  const bob = () => team.agents[1]!;

  async function conversationInStage(conversationId: string, stage: string) {
    return eventually(async () => {
      const { body } = await api(admin(), 'GET', `/v1/conversations/${conversationId}`);
      return body.stage === stage ? body : undefined;
    });
  }

  /** Posts a customer mail and waits until the conversation is in `stage`. */
  async function open(
    channel: { id: string; forwarderSecret: string },
    mail: Parameters<typeof customerMail>[0],
    stage = 'assigned',
  ) {
    const posted = await postMail(stack.api.url, channel, customerMail(mail));
    expect(posted.status).toBe(202);
    return conversationInStage(posted.body.conversationId as string, stage);
  }

  /** Every conversation of a list, page by page. */
  async function allPages(apiKey: string, query: string, limit = 2) {
    const ids: string[] = [];
    let cursor: string | null = null;
    do {
      const page = await api(apiKey, 'GET', `/v1/conversations?limit=${limit}&${query}${cursor ? `&cursor=${cursor}` : ''}`);
      expect(page.status).toBe(200);
      expect(page.body.data.length).toBeLessThanOrEqual(limit);
      ids.push(...page.body.data.map((c: { id: string }) => c.id));
      cursor = page.body.nextCursor;
    } while (cursor);
    return ids;
  }

  it('lists newest first with filters, pages through all without duplicates or gaps, and only what the caller may see', async () => {
    const created = [];
    for (let i = 1; i <= 5; i++) {
      created.push(
        await open(team.channel, {
          messageId: `list-${i}@example.com`,
          from: i % 2 ? '"Ann Example" <ann@example.com>' : `"Ben ${i}" <ben${i}@example.com>`,
          subject: `List ${i}`,
        }),
      );
    }
    const inBilling = await open(billing, { messageId: 'list-billing@example.com', to: 'billing@acme.example' });
    const inSales = await open(sales, { messageId: 'list-sales@example.com', to: 'sales@acme.example' }, 'queued');

    // Paging by two through the channel gives each conversation once, newest first.
    const expected = await stack.db
      .selectFrom('conversations')
      .select('id')
      .where('channel_id', '=', team.channel.id)
      .orderBy('created_at', 'desc')
      .orderBy('id', 'desc')
      .execute();
    const paged = await allPages(admin(), `channelId=${team.channel.id}`);
    expect(paged).toEqual(expected.map((row) => row.id));
    expect(new Set(paged).size).toBe(paged.length);
    expect(paged).toEqual(expect.arrayContaining(created.map((c) => c.id)));

    // Filters.
    const idsOf = async (query: string, apiKey = admin()) => {
      const response = await api(apiKey, 'GET', `/v1/conversations?${query}`);
      expect(response.status).toBe(200);
      return response.body.data as Array<{ id: string; assigneeId: string | null; updatedAt: string }>;
    };
    const ann = created[0]!.contact.id;
    expect((await idsOf(`contactId=${ann}&channelId=${team.channel.id}`)).map((c) => c.id)).toEqual(
      [created[4], created[2], created[0]].map((c) => c!.id),
    );
    const byAlice = await idsOf(`assigneeId=${alice().id}`);
    expect(byAlice.length).toBeGreaterThan(0);
    expect(byAlice.every((c) => c.assigneeId === alice().id)).toBe(true);
    expect((await idsOf('assigneeId=none')).map((c) => c.id)).toEqual([inSales.id]);
    expect((await idsOf('stage=queued')).map((c) => c.id)).toEqual([inSales.id]);
    expect((await idsOf('status=resolved')).length).toBe(0);
    expect((await idsOf(`status=open&channelId=${billing.id}`)).map((c) => c.id)).toEqual([inBilling.id]);
    // Times are shown to the millisecond and stored to the microsecond: the middle one is after `middle`, before `justAfter`.
    const middle = created[2]!.createdAt;
    const justAfter = new Date(Date.parse(middle) + 1).toISOString();
    expect((await idsOf(`channelId=${team.channel.id}&createdAfter=${justAfter}`)).map((c) => c.id)).toEqual(
      [created[4], created[3]].map((c) => c!.id),
    );
    expect((await idsOf(`channelId=${team.channel.id}&createdBefore=${middle}`)).map((c) => c.id)).toEqual(
      [created[1], created[0]].map((c) => c!.id),
    );

    const beforeLabels = new Date().toISOString();
    await api(admin(), 'PUT', `/v1/conversations/${created[0]!.id}/labels`, { labels: ['billing', 'vip'] });
    await api(admin(), 'PUT', `/v1/conversations/${created[1]!.id}/labels`, { labels: ['billing'] });
    expect((await idsOf('label=billing')).map((c) => c.id)).toEqual([created[1]!.id, created[0]!.id]);
    expect((await idsOf('label=billing,VIP')).map((c) => c.id)).toEqual([created[0]!.id]);
    expect((await idsOf('label=billing&label=vip')).map((c) => c.id)).toEqual([created[0]!.id]);
    const updated = await idsOf(`updatedAfter=${encodeURIComponent(beforeLabels)}`);
    expect(updated.map((c) => c.id)).toEqual(expect.arrayContaining([created[0]!.id, created[1]!.id]));
    expect(updated.every((c) => c.updatedAt > beforeLabels)).toBe(true);

    // Invalid filters name the field.
    for (const [query, field] of [
      ['status=bogus', 'status'],
      ['stage=done', 'stage'],
      ['assigneeId=nobody', 'assigneeId'],
      ['channelId=42', 'channelId'],
      ['createdAfter=yesterday', 'createdAfter'],
      ['updatedAfter=2026-13-01', 'updatedAfter'],
      ['cursor=not-ours', 'cursor'],
      ['limit=0', 'limit'],
      [`label=${'x'.repeat(51)}`, 'label.0'],
      ['label=', 'label.0'],
      ['label=billing,', 'label.1'],
    ]) {
      const response = await api(admin(), 'GET', `/v1/conversations?${query}`);
      expect(response, query).toMatchObject({ status: 422, contentType: 'application/problem+json' });
      expect(response.body.errors.map((e: { field: string }) => e.field)).toContain(field);
    }

    // Alice sees her channels only; Bob also billing; another account nothing of ours.
    const aliceSees = await allPages(alice().apiKey, '', 50);
    expect(aliceSees).toEqual(expect.arrayContaining(paged));
    expect(aliceSees).not.toContain(inBilling.id);
    expect(aliceSees).not.toContain(inSales.id);
    expect(await idsOf(`channelId=${billing.id}`, alice().apiKey)).toEqual([]);
    expect((await allPages(bob().apiKey, '', 50)).filter((id) => id === inBilling.id)).toHaveLength(1);
    expect(await allPages(other.admin.apiKey, '', 50)).toEqual([]);
    expect(await idsOf(`channelId=${team.channel.id}`, other.admin.apiKey)).toEqual([]);
  });

  it('shows messages with sanitized HTML, the reply part and attachments, and downloads them', async () => {
    const png = Buffer.from(
      'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==',
      'base64',
    );
    const raw = await new MailComposer({
      from: '"Ann Example" <ann@example.com>',
      to: 'support@acme.example',
      subject: 'Wrong invoice total',
      messageId: '<detail-1@example.com>',
      text: 'The invoice total is wrong.\n\nOn Mon, 16 Nov 2026 at 10:00, Acme Support wrote:\n> Here is your invoice.\n> Best',
      html:
        '<p>The invoice total is wrong.</p><script>alert("owned")</script>' +
        '<img src="cid:logo@example.com" onerror="alert(1)"><blockquote>Here is your invoice.</blockquote>',
      attachments: [
        { filename: 'Rechnung März.txt', content: 'line one\nline two\n', contentType: 'text/plain' },
        { filename: 'logo.png', content: png, contentType: 'image/png', cid: 'logo@example.com' },
        { filename: 'big.bin', content: Buffer.alloc(5000, 7), contentType: 'application/octet-stream' },
      ],
    })
      .compile()
      .build();
    const posted = await postMail(stack.api.url, team.channel, raw);
    expect(posted.status).toBe(202);
    const conversationId: string = posted.body.conversationId;
    await conversationInStage(conversationId, 'assigned');

    const detail = await api(alice().apiKey, 'GET', `/v1/conversations/${conversationId}`);
    expect(detail.status).toBe(200);
    const [message] = detail.body.messages;
    expect(message).toMatchObject({ direction: 'inbound', kind: 'customer', receivedVia: 'forwarder', from: 'ann@example.com' });
    expect(message.text).toContain('Here is your invoice.');
    expect(message.replyText).toBe('The invoice total is wrong.');
    expect(message.html).toContain('The invoice total is wrong.');
    expect(message.html).not.toMatch(/<script|alert\("owned"\)|onerror/i);
    const byName = Object.fromEntries(message.attachments.map((a: { filename: string }) => [a.filename, a]));
    expect(byName['Rechnung März.txt']).toEqual({
      id: expect.any(String),
      filename: 'Rechnung März.txt',
      contentType: 'text/plain',
      sizeBytes: 18,
      inline: false,
      contentId: null,
      omittedReason: null,
    });
    expect(byName['logo.png']).toMatchObject({ inline: true, contentId: 'logo@example.com', omittedReason: null });
    expect(byName['big.bin']).toMatchObject({ sizeBytes: 5000, omittedReason: expect.stringContaining('attachment limit') });
    expect(detail.body.timeline[0]).toMatchObject({ type: 'customer_message', id: expect.any(String) });
    expect(detail.body.notes).toEqual([]);

    const download = (apiKey: string, attachmentId: string) =>
      fetch(`${stack.api.url}/v1/conversations/${conversationId}/attachments/${attachmentId}`, {
        headers: { authorization: `Bearer ${apiKey}` },
      });
    const text = await download(alice().apiKey, byName['Rechnung März.txt'].id);
    expect(text.status).toBe(200);
    expect(text.headers.get('content-type')).toBe('text/plain');
    expect(text.headers.get('content-disposition')).toBe(
      `attachment; filename="Rechnung M_rz.txt"; filename*=UTF-8''Rechnung%20M%C3%A4rz.txt`,
    );
    expect(text.headers.get('x-content-type-options')).toBe('nosniff');
    expect(await text.text()).toBe('line one\nline two\n');
    const image = await download(admin(), byName['logo.png'].id);
    expect(image.headers.get('content-type')).toBe('image/png');
    expect(Buffer.from(await image.arrayBuffer())).toEqual(png);

    const omitted = await download(admin(), byName['big.bin'].id);
    expect(omitted.status).toBe(404);
    expect(((await omitted.json()) as { type: string }).type).toMatch(/attachment-omitted$/);
    expect((await download(admin(), randomUUID())).status).toBe(404);
    expect((await download(other.admin.apiKey, byName['logo.png'].id)).status).toBe(404);

    // Another account: 404; an agent of another channel of the account: 403.
    expect((await api(other.admin.apiKey, 'GET', `/v1/conversations/${conversationId}`)).status).toBe(404);
    const inBilling = await open(billing, { messageId: 'detail-billing@example.com', to: 'billing@acme.example' });
    const forbidden = await api(alice().apiKey, 'GET', `/v1/conversations/${inBilling.id}`);
    expect(forbidden).toMatchObject({ status: 403, contentType: 'application/problem+json' });
    expect((await api(bob().apiKey, 'GET', `/v1/conversations/${inBilling.id}`)).status).toBe(200);
  });

  it('reopens a resolved conversation to its previous assignee, and refuses an open one', async () => {
    const conversation = await open(team.channel, { messageId: 'reopen-1@example.com', subject: 'Reopen me' });
    const assignee = team.agents.find((agent) => agent.id === conversation.assigneeId)!;
    const path = `/v1/conversations/${conversation.id}`;

    const whileOpen = await api(assignee.apiKey, 'POST', `${path}/reopen`);
    expect(whileOpen).toMatchObject({ status: 409, contentType: 'application/problem+json' });
    expect(whileOpen.body.type).toMatch(/already-open$/);

    expect((await api(assignee.apiKey, 'POST', `${path}/resolve`)).status).toBe(200);
    const reopened = await api(admin(), 'POST', `${path}/reopen`);
    expect(reopened).toMatchObject({ status: 200, body: { status: 'open', assigneeId: assignee.id } });
    const detail = await api(admin(), 'GET', path);
    expect(detail.body).toMatchObject({ status: 'open', stage: 'assigned', assigneeId: assignee.id, resolvedAt: null });
    expect(detail.body.timeline.at(-1)).toMatchObject({
      type: 'reopened',
      data: { assigneeId: assignee.id, reopenedBy: team.admin.id },
    });
    expect((await api(admin(), 'POST', `${path}/reopen`)).status).toBe(409);

    // Access: another account 404, an agent of another channel 403.
    expect((await api(other.admin.apiKey, 'POST', `${path}/reopen`)).status).toBe(404);
    const inBilling = await open(billing, { messageId: 'reopen-billing@example.com', to: 'billing@acme.example' });
    expect((await api(alice().apiKey, 'POST', `/v1/conversations/${inBilling.id}/reopen`)).status).toBe(403);
    expect((await api(alice().apiKey, 'POST', `/v1/conversations/${inBilling.id}/resolve`)).status).toBe(403);
  });

  it('reopens a closed conversation whose workflow has ended by starting it again', async () => {
    const conversation = await open(quick, { messageId: 'closed-1@example.com', to: 'quick@acme.example' });
    expect(conversation.assigneeId).toBe(alice().id);
    const path = `/v1/conversations/${conversation.id}`;
    expect((await api(alice().apiKey, 'POST', `${path}/resolve`)).status).toBe(200);
    const handle = stack.temporal.workflow.getHandle(conversationWorkflowId(conversation.id));
    await eventually(async () => ((await handle.describe()).status.name === 'COMPLETED' ? true : undefined));
    expect((await api(alice().apiKey, 'GET', path)).body.status).toBe('closed');

    const reopened = await api(alice().apiKey, 'POST', `${path}/reopen`);
    expect(reopened).toMatchObject({ status: 200, body: { status: 'open', assigneeId: alice().id } });
    expect((await handle.describe()).status.name).toBe('RUNNING');
    const detail = await conversationInStage(conversation.id, 'assigned');
    expect(detail.assigneeId).toBe(alice().id);
    expect(detail.timeline.map((e: { type: string }) => e.type)).toEqual(expect.arrayContaining(['closed', 'reopened']));
    expect(detail.timeline.at(-1)).toMatchObject({ type: 'reopened', data: { reopenedBy: alice().id } });
    // The agent can work it again.
    const reply = await api(alice().apiKey, 'POST', `${path}/replies`, { text: 'Picking this up again.' });
    expect(reply.status).toBe(201);
  });

  it('replaces, adds and removes labels, normalised, with a timeline event for each change', async () => {
    const conversation = await open(team.channel, { messageId: 'labels-1@example.com' });
    const path = `/v1/conversations/${conversation.id}/labels`;
    const key = alice().id === conversation.assigneeId ? alice().apiKey : bob().apiKey;

    expect(await api(key, 'PUT', path, { labels: [' Billing ', 'billing', 'VIP'] })).toMatchObject({
      status: 200,
      body: { labels: ['billing', 'vip'] },
    });
    expect((await api(key, 'POST', path, { label: 'Urgent' })).body).toEqual({ labels: ['billing', 'vip', 'urgent'] });
    expect((await api(key, 'POST', path, { label: 'urgent' })).body).toEqual({ labels: ['billing', 'vip', 'urgent'] });
    expect((await api(key, 'DELETE', `${path}/VIP`)).body).toEqual({ labels: ['billing', 'urgent'] });
    expect((await api(key, 'DELETE', `${path}/absent`)).body).toEqual({ labels: ['billing', 'urgent'] });

    for (const [body, field] of [
      [{ labels: [''] }, 'labels.0'],
      [{ labels: ['a,b'] }, 'labels.0'],
      [{ labels: ['x'.repeat(51)] }, 'labels.0'],
      [{ labels: 'billing' }, 'labels'],
      [{ label: '   ' }, 'label'],
      [{ label: 'nul\u0000' }, 'label'],
    ] as const) {
      const response = await api(key, 'label' in body ? 'POST' : 'PUT', path, body);
      expect(response.status).toBe(422);
      expect(response.body.errors.map((e: { field: string }) => e.field)).toContain(field);
    }

    const { body: detail } = await api(admin(), 'GET', `/v1/conversations/${conversation.id}`);
    expect(detail.labels).toEqual(['billing', 'urgent']);
    const changes = detail.timeline.filter((e: { type: string }) => e.type === 'labels_changed');
    expect(changes.map((e: { data: unknown }) => e.data)).toEqual([
      { byId: expect.any(String), added: ['billing', 'vip'], removed: [], labels: ['billing', 'vip'] },
      { byId: expect.any(String), added: ['urgent'], removed: [], labels: ['billing', 'vip', 'urgent'] },
      { byId: expect.any(String), added: [], removed: ['vip'], labels: ['billing', 'urgent'] },
    ]);

    const inBilling = await open(billing, { messageId: 'labels-billing@example.com', to: 'billing@acme.example' });
    expect((await api(alice().apiKey, 'PUT', `/v1/conversations/${inBilling.id}/labels`, { labels: ['x'] })).status).toBe(403);
    expect((await api(other.admin.apiKey, 'PUT', path, { labels: ['x'] })).status).toBe(404);
  });

  it('keeps internal notes on the timeline and never mails them', async () => {
    const conversation = await open(team.channel, { messageId: 'notes-1@example.com', from: '"Nora" <nora@example.com>' });
    const assignee = team.agents.find((agent) => agent.id === conversation.assigneeId)!;
    const path = `/v1/conversations/${conversation.id}`;
    const noteText = `Internal: customer is on the legacy plan ${randomUUID()}`;

    const note = await api(assignee.apiKey, 'POST', `${path}/notes`, { text: `  ${noteText} ` });
    expect(note).toMatchObject({
      status: 201,
      body: { id: expect.any(String), authorId: assignee.id, authorName: expect.stringContaining('Agent'), text: noteText },
    });
    const { body: detail } = await api(admin(), 'GET', path);
    expect(detail.notes).toEqual([note.body]);
    expect(detail.timeline.at(-1)).toMatchObject({
      type: 'note_added',
      id: note.body.id,
      data: { authorId: assignee.id, text: noteText },
    });

    // A reply sent after the note arrives; the note never does.
    const reply = await api(assignee.apiKey, 'POST', `${path}/replies`, { text: 'We are looking into it.' });
    expect(reply.status).toBe(201);
    await stack.capture.waitFor((mail) => mail.messageId === reply.body.messageId);
    expect(stack.capture.mails.filter((mail) => mail.raw.includes('legacy plan'))).toEqual([]);

    // A reply whose first request reached the workflow but whose answer was lost (it timed out: 503, so
    // the client repeats it with its Idempotency-Key): the repeat is the same update, one mail goes out.
    const key = randomUUID();
    const text = `Sent once whatever happens ${key}`;
    const first = await createConversationGateway(stack.temporal, { taskQueue: stack.taskQueue }).reply(
      conversation.id,
      { author: { id: assignee.id, name: 'the first attempt' }, text },
      `reply:${assignee.id}:${key}`,
    );
    const repeated = await fetch(`${stack.api.url}${path}/replies`, {
      method: 'POST',
      headers: { authorization: `Bearer ${assignee.apiKey}`, 'content-type': 'application/json', 'idempotency-key': key },
      body: JSON.stringify({ text }),
    });
    expect(repeated.status).toBe(201);
    expect(await repeated.json()).toEqual(first);
    await stack.capture.waitFor((mail) => mail.messageId === first.messageId);
    const { body: afterRepeat } = await api(admin(), 'GET', path);
    expect(afterRepeat.messages.filter((message: { text: string | null }) => message.text?.includes(key))).toHaveLength(1);
    expect(stack.capture.mails.filter((mail) => mail.raw.includes(key))).toHaveLength(1);

    expect((await api(assignee.apiKey, 'POST', `${path}/notes`, { text: '  ' })).status).toBe(422);
    // Text PostgreSQL cannot store is refused up front, not a 500.
    const nul = await api(assignee.apiKey, 'POST', `${path}/notes`, { text: 'a\u0000b' });
    expect(nul).toMatchObject({ status: 422, body: { errors: [{ field: 'text' }] } });
    const nulReply = await api(assignee.apiKey, 'POST', `${path}/replies`, { text: 'ok', subject: 'a\u0000b' });
    expect(nulReply).toMatchObject({ status: 422, body: { errors: [{ field: 'subject' }] } });
    expect((await api(other.admin.apiKey, 'POST', `${path}/notes`, { text: 'x' })).status).toBe(404);
    const inBilling = await open(billing, { messageId: 'notes-billing@example.com', to: 'billing@acme.example' });
    expect((await api(alice().apiKey, 'POST', `/v1/conversations/${inBilling.id}/notes`, { text: 'x' })).status).toBe(403);
  });

  it('documents the filters and ids it refuses: a label filter is no empty label, an assignee a uuid', async () => {
    const document = (await (await fetch(`${stack.api.url}/openapi.json`)).json()) as any;
    const list = document.paths['/v1/conversations'].get;
    const label = list.parameters.find((p: { name: string }) => p.name === 'label').schema;
    const [single, repeated] = label.anyOf;
    expect(single).toMatchObject({ type: 'string', minLength: 1 });
    expect(repeated).toMatchObject({ type: 'array', maxItems: 20, items: { type: 'string', minLength: 1, maxLength: 50 } });
    // What the document allows, the route takes; what it refuses is outside the document.
    const inList = new RegExp(single.pattern);
    const oneLabel = new RegExp(repeated.items.pattern);
    for (const accepted of ['billing', 'billing,VIP', ' a , b ', 'x'.repeat(50)]) {
      expect(inList.test(accepted), accepted).toBe(true);
      expect((await api(admin(), 'GET', `/v1/conversations?label=${encodeURIComponent(accepted)}`)).status, accepted).toBe(200);
    }
    for (const refused of ['', ' ', ',', 'billing,', 'a,,b', 'x'.repeat(51), 'İ'.repeat(30)]) {
      expect(inList.test(refused), refused).toBe(false);
      expect((await api(admin(), 'GET', `/v1/conversations?label=${encodeURIComponent(refused)}`)).status, refused).toBe(422);
    }
    expect(oneLabel.test('vip')).toBe(true);
    expect(oneLabel.test('a,b')).toBe(false);

    const assignment = document.paths['/v1/conversations/{conversationId}/assignment'].put;
    const input = assignment.requestBody.content['application/json'].schema;
    const assignee = input.$ref ? document.components.schemas[input.$ref.split('/').pop()].properties.assigneeId : undefined;
    expect(assignee).toMatchObject({ type: ['string', 'null'], format: 'uuid' });
    const conversation = await open(team.channel, { messageId: 'assign-empty@example.com' });
    const empty = await api(admin(), 'PUT', `/v1/conversations/${conversation.id}/assignment`, { assigneeId: '' });
    expect(empty).toMatchObject({ status: 422, body: { errors: [{ field: 'assigneeId' }] } });
  });

  it('unassigns: the queue gives it to the other agent', async () => {
    const conversation = await open(team.channel, { messageId: 'unassign-1@example.com' });
    const unassigned = await api(admin(), 'PUT', `/v1/conversations/${conversation.id}/assignment`, { assigneeId: null });
    expect(unassigned.status).toBe(200);
    const next = team.agents.find((agent) => agent.id !== conversation.assigneeId)!;
    expect(unassigned.body.assigneeId).toBe(next.id);
  });

  describe('web-form conversations (A11)', () => {
    it('opens one with an address like a mail: contact, greeting, assignment, and an optional first message', async () => {
      const response = await api(alice().apiKey, 'POST', '/v1/conversations', {
        channelId: team.channel.id,
        contact: { email: 'Carol@Example.com', name: 'Carol Customer' },
        subject: 'Do you ship to Iceland?',
        message: 'Hello,\nwe would like to order 20 units. Do you ship to Iceland?',
        firstMessage: { text: 'Hi Carol, yes we do. Alice' },
      });
      expect(response.status).toBe(201);
      expect(response.body).toEqual({
        conversationId: expect.any(String),
        contactId: expect.any(String),
        inboundMessageId: expect.any(String),
        firstMessage: { outboundMessageId: expect.any(String), messageId: expect.any(String) },
      });
      const { conversationId, contactId, inboundMessageId, firstMessage } = response.body;

      const first = await stack.capture.waitFor((mail) => mail.messageId === firstMessage.messageId);
      expect(first.envelope.to).toEqual(['carol@example.com']);
      expect(first.text).toContain('yes we do');
      const greeting = await stack.capture.waitFor(
        (mail) => mail.envelope.to.includes('carol@example.com') && mail.text.includes('We received your message'),
      );
      expect(greeting.inReplyTo).toMatch(/^<form-[0-9a-f-]{36}@acme\.example>$/);

      const detail = await conversationInStage(conversationId, 'assigned');
      expect(detail).toMatchObject({
        subject: 'Do you ship to Iceland?',
        contact: { id: contactId, email: 'carol@example.com', name: 'Carol Customer' },
      });
      expect(detail.messages[0]).toMatchObject({
        id: inboundMessageId,
        receivedVia: 'form',
        from: 'carol@example.com',
        messageId: greeting.inReplyTo,
        text: expect.stringContaining('Do you ship to Iceland?'),
      });
      const { raw } = await stack.db
        .selectFrom('inbound_messages')
        .select('raw')
        .where('id', '=', inboundMessageId)
        .executeTakeFirstOrThrow();
      expect(Buffer.from(raw!).toString()).toMatch(/^X-Mailroom-Source: form$/im);
    });

    it('opens one without an address, mails nobody, refuses replies until the contact has an address', async () => {
      const response = await api(admin(), 'POST', '/v1/conversations', {
        channelId: team.channel.id,
        contact: { email: null, name: 'Dave Visitor' },
        subject: 'Please call me',
        message: 'Please call me back tomorrow.',
      });
      expect(response.status).toBe(201);
      const { conversationId, contactId } = response.body;
      const detail = await conversationInStage(conversationId, 'assigned');
      expect(detail.contact).toEqual({ id: contactId, email: null, name: 'Dave Visitor' });
      expect(detail.messages).toHaveLength(1);
      expect(detail.messages[0]).toMatchObject({ receivedVia: 'form', from: null });
      const suppressed = await eventually(async () => {
        const { body } = await api(admin(), 'GET', `/v1/conversations/${conversationId}`);
        return body.timeline.find((e: { type: string }) => e.type === 'automatic_mail_suppressed');
      });
      expect(suppressed.data).toEqual({ kind: 'greeting', reason: "the contact's email address is not known yet" });
      const path = `/v1/conversations/${conversationId}`;
      const refused = await api(detail.assigneeId === alice().id ? alice().apiKey : bob().apiKey, 'POST', `${path}/replies`, {
        text: 'Hello Dave',
      });
      expect(refused).toMatchObject({ status: 409, contentType: 'application/problem+json' });
      expect(refused.body.type).toMatch(/no-address$/);
      expect(stack.capture.mails.filter((mail) => mail.references.includes(detail.messages[0].messageId))).toEqual([]);

      // A first message needs an address.
      const withoutAddress = await api(admin(), 'POST', '/v1/conversations', {
        channelId: team.channel.id,
        contact: { name: 'Eve Visitor' },
        subject: 'Hi',
        message: 'Hello',
        firstMessage: { text: 'Hello Eve' },
      });
      expect(withoutAddress.status).toBe(422);
      expect(withoutAddress.body.errors).toEqual([{ field: 'firstMessage', message: expect.stringContaining('contact.email') }]);

      // Once the address is known, the next reply goes out.
      const patched = await api(alice().apiKey, 'PATCH', `/v1/contacts/${contactId}`, { email: 'Dave@Example.com' });
      expect(patched).toMatchObject({ status: 200, body: { id: contactId, email: 'dave@example.com' } });
      const reply = await api(admin(), 'POST', `${path}/replies`, { text: 'Hello Dave, we will call you tomorrow.' });
      expect(reply.status).toBe(201);
      const mail = await stack.capture.waitFor((m) => m.messageId === reply.body.messageId);
      expect(mail.envelope.to).toEqual(['dave@example.com']);
    });

    it('honours Idempotency-Key: one conversation, the first answer replayed; another body with the key is refused', async () => {
      const key = randomUUID();
      const body = {
        channelId: team.channel.id,
        contact: { email: 'frank@example.com' },
        subject: `Idempotent ${key}`,
        message: 'Only once, please.',
      };
      const post = (json: unknown) =>
        fetch(`${stack.api.url}/v1/conversations`, {
          method: 'POST',
          headers: { authorization: `Bearer ${admin()}`, 'content-type': 'application/json', 'idempotency-key': key },
          body: JSON.stringify(json),
        });
      const first = await post(body);
      expect(first.status).toBe(201);
      const firstBody = await first.json();
      const second = await post(body);
      expect(second.status).toBe(201);
      expect(second.headers.get('idempotent-replayed')).toBe('true');
      expect(await second.json()).toEqual(firstBody);

      // A retry after a 503 (the key is forgotten then) resumes the same submission instead of opening another.
      await stack.db.deleteFrom('idempotency_keys').where('key', '=', key).execute();
      const retried = await post(body);
      expect(retried.status).toBe(201);
      expect(retried.headers.get('idempotent-replayed')).toBeNull();
      expect(await retried.json()).toEqual(firstBody);
      const conversations = await stack.db.selectFrom('conversations').select('id').where('subject', '=', body.subject).execute();
      expect(conversations).toEqual([{ id: (firstBody as { conversationId: string }).conversationId }]);

      const reused = await post({ ...body, message: 'Something else' });
      expect(reused.status).toBe(422);
      expect(((await reused.json()) as { type: string }).type).toMatch(/idempotency-key-reused$/);
    });

    it('answers problems for invalid input, an inaccessible or disabled channel', async () => {
      const base = { contact: { email: 'gina@example.com' }, subject: 'Hi', message: 'Hello' };
      const invalid = await api(admin(), 'POST', '/v1/conversations', {
        channelId: team.channel.id,
        contact: { email: 'not-an-address' },
        subject: '',
        message: 'x'.repeat(100_001),
      });
      expect(invalid.status).toBe(422);
      expect(invalid.body.errors.map((e: { field: string }) => e.field).sort()).toEqual(['contact.email', 'message', 'subject']);
      expect((await api(alice().apiKey, 'POST', '/v1/conversations', { ...base, channelId: billing.id })).status).toBe(403);
      expect((await api(alice().apiKey, 'POST', '/v1/conversations', { ...base, channelId: other.channel.id })).status).toBe(404);
      const off = await api(admin(), 'POST', '/v1/conversations', { ...base, channelId: disabled.id });
      expect(off.status).toBe(409);
      expect(off.body.type).toMatch(/channel-disabled$/);
    });
  });
});
