import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addAgentToChannel, createChannel } from '../../src/db/seed.js';
import { callApi, eventually, postMail } from '../support/http.js';
import { seedSupportTeam, startTestStack, type TestStack } from '../support/stack.js';
import { customerMail } from '../support/mail.js';

// Contacts are account-wide: every user of the account finds and edits them, but a profile lists only
// the conversations the caller may read. Another account's contact is 404 and never listed.

describe('contacts API', () => {
  let stack: TestStack;
  let team: Awaited<ReturnType<typeof seedSupportTeam>>;
  let other: Awaited<ReturnType<typeof seedSupportTeam>>;
  let billing: { id: string; forwarderSecret: string };
  const conversationOf: Record<string, string> = {};

  const api = (apiKey: string, method: string, path: string, body?: unknown) =>
    callApi(stack.api.url, apiKey, method, path, body);
  const admin = () => team.admin.apiKey;
  const alice = () => team.agents[0]!;

  async function mail(channel: { id: string; forwarderSecret: string }, from: string, to?: string) {
    const posted = await postMail(
      stack.api.url,
      channel,
      customerMail({ messageId: `${randomUUID()}@example.com`, from, ...(to ? { to } : {}) }),
    );
    expect(posted.status).toBe(202);
    return posted.body.conversationId as string;
  }

  async function contactByEmail(apiKey: string, email: string) {
    const { body } = await api(apiKey, 'GET', `/v1/contacts?email=${encodeURIComponent(email)}`);
    return body.data[0] as { id: string; email: string; name: string | null } | undefined;
  }

  beforeAll(async () => {
    stack = await startTestStack();
    team = await seedSupportTeam(stack.db, { name: 'Acme Support', emailAddress: 'support@acme.example' });
    // Bob's alone: Alice may not read its conversations.
    billing = await createChannel(stack.db, {
      accountId: team.account.id,
      name: 'Acme Billing',
      emailAddress: 'billing@acme.example',
    });
    await addAgentToChannel(stack.db, billing.id, team.agents[1]!.id);
    other = await seedSupportTeam(stack.db, { name: 'Other', emailAddress: 'help@other.example' });

    conversationOf.ann = await mail(team.channel, '"Ann Example" <ann@example.com>');
    conversationOf.annBilling = await mail(billing, '"Ann Example" <ann@example.com>', 'billing@acme.example');
    await mail(team.channel, '"Ben Müller" <ben@example.com>');
    await mail(team.channel, 'carl_100%@example.org');
    await mail(team.channel, '"Dana" <dana@shop.example>');
    await mail(other.channel, '"Ann Example" <ann@example.com>', 'help@other.example');
  });

  afterAll(async () => {
    await stack?.stop();
  });

  it('pages through the contacts of the account, newest first, without duplicates or gaps', async () => {
    const expected = await stack.db
      .selectFrom('contacts')
      .select('id')
      .where('account_id', '=', team.account.id)
      .orderBy('created_at', 'desc')
      .orderBy('id', 'desc')
      .execute();
    expect(expected).toHaveLength(4);
    const ids: string[] = [];
    let cursor: string | null = null;
    do {
      const page = await api(alice().apiKey, 'GET', `/v1/contacts?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      expect(page.status).toBe(200);
      expect(page.body.data.length).toBeLessThanOrEqual(2);
      ids.push(...page.body.data.map((c: { id: string }) => c.id));
      cursor = page.body.nextCursor;
    } while (cursor);
    expect(ids).toEqual(expected.map((row) => row.id));

    // The other account has its own Ann, never listed here.
    const { body } = await api(other.admin.apiKey, 'GET', '/v1/contacts');
    expect(body.data).toHaveLength(1);
    expect(ids).not.toContain(body.data[0].id);

    const invalid = await api(admin(), 'GET', '/v1/contacts?cursor=nope&limit=500');
    expect(invalid.status).toBe(422);
    expect(invalid.body.errors.map((e: { field: string }) => e.field).sort()).toEqual(['limit']);
    const badCursor = await api(admin(), 'GET', '/v1/contacts?cursor=nope');
    expect(badCursor.body.errors).toEqual([{ field: 'cursor', message: expect.any(String) }]);
  });

  it('finds a contact by exact address in any case, and by part of the name or address', async () => {
    const ann = await contactByEmail(admin(), 'ANN@Example.COM');
    expect(ann).toMatchObject({ email: 'ann@example.com', name: 'Ann Example', attributes: {} });
    expect(await contactByEmail(admin(), 'ann@example')).toBeUndefined();

    const search = async (q: string) => {
      const { status, body } = await api(alice().apiKey, 'GET', `/v1/contacts?q=${encodeURIComponent(q)}`);
      expect(status).toBe(200);
      return body.data.map((c: { email: string }) => c.email).sort();
    };
    expect(await search('müller')).toEqual(['ben@example.com']);
    expect(await search('EXAMPLE.com')).toEqual(['ann@example.com', 'ben@example.com']);
    expect(await search('shop')).toEqual(['dana@shop.example']);
    // LIKE wildcards are taken literally.
    expect(await search('100%')).toEqual(['carl_100%@example.org']);
    expect(await search('_')).toEqual(['carl_100%@example.org']);
    expect(await search('%')).toEqual(['carl_100%@example.org']);
    expect((await api(admin(), 'GET', '/v1/contacts?q=a%00b')).status).toBe(422);
    expect((await api(admin(), 'GET', '/v1/contacts?email=a%00b')).status).toBe(422);
  });

  it('shows a profile with the conversations the caller may read, newest first', async () => {
    const ann = (await contactByEmail(admin(), 'ann@example.com'))!;
    const asAdmin = await api(admin(), 'GET', `/v1/contacts/${ann.id}`);
    expect(asAdmin.status).toBe(200);
    expect(asAdmin.body).toMatchObject({ id: ann.id, email: 'ann@example.com', name: 'Ann Example', attributes: {} });
    expect(asAdmin.body.conversations.map((c: { id: string }) => c.id)).toEqual([conversationOf.annBilling, conversationOf.ann]);
    expect(asAdmin.body.conversations[0]).toMatchObject({ channelId: billing.id, contact: { id: ann.id } });

    // Alice works the support channel only; the contact itself is the account's.
    const asAlice = await api(alice().apiKey, 'GET', `/v1/contacts/${ann.id}`);
    expect(asAlice.status).toBe(200);
    expect(asAlice.body.conversations.map((c: { id: string }) => c.id)).toEqual([conversationOf.ann]);

    expect((await api(other.admin.apiKey, 'GET', `/v1/contacts/${ann.id}`)).status).toBe(404);
    expect((await api(admin(), 'GET', `/v1/contacts/${randomUUID()}`)).status).toBe(404);
    expect((await api(admin(), 'GET', '/v1/contacts/not-a-uuid')).status).toBe(422);
  });

  it('edits name, address and attributes; an address of another contact is a conflict', async () => {
    const ben = (await contactByEmail(admin(), 'ben@example.com'))!;
    const path = `/v1/contacts/${ben.id}`;

    const edited = await api(alice().apiKey, 'PATCH', path, {
      name: '  Ben Miller ',
      attributes: { plan: 'enterprise', seats: 40, vip: true, note: null },
    });
    expect(edited).toMatchObject({
      status: 200,
      body: {
        id: ben.id,
        email: 'ben@example.com',
        name: 'Ben Miller',
        attributes: { plan: 'enterprise', seats: 40, vip: true },
      },
    });
    expect((await api(admin(), 'PATCH', path, { attributes: { plan: 'team' } })).body.attributes).toEqual({ plan: 'team' });
    // An empty body changes nothing and says so: 422, not a 200.
    const empty = await api(admin(), 'PATCH', path, {});
    expect(empty).toMatchObject({ status: 422, contentType: 'application/problem+json' });
    expect(empty.body.errors).toEqual([{ field: 'json', message: 'send at least one of: name, email, attributes' }]);

    const moved = await api(admin(), 'PATCH', path, { email: 'Ben.Miller@Example.com' });
    expect(moved).toMatchObject({ status: 200, body: { email: 'ben.miller@example.com' } });
    expect(await contactByEmail(admin(), 'ben@example.com')).toBeUndefined();

    const taken = await api(admin(), 'PATCH', path, { email: 'ANN@example.com' });
    expect(taken).toMatchObject({ status: 409, contentType: 'application/problem+json' });
    expect(taken.body.type).toMatch(/email-taken$/);
    expect(taken.body.errors).toEqual([{ field: 'email', message: expect.any(String) }]);

    // The same address again changes nothing and is no conflict.
    expect((await api(admin(), 'PATCH', path, { email: 'ben.miller@example.com' })).status).toBe(200);

    for (const [body, field] of [
      [{ email: 'not an address' }, 'email'],
      [{ email: null }, 'email'],
      [{ name: '' }, 'name'],
      [{ attributes: { plan: { nested: true } } }, 'attributes.plan'],
      [{ name: 'a\u0000b' }, 'name'],
    ] as const) {
      const response = await api(admin(), 'PATCH', path, body);
      expect(response.status).toBe(422);
      expect(response.body.errors.map((e: { field: string }) => e.field)).toContain(field);
    }
    // An unknown field (a typo) is refused, naming it, rather than ignored.
    const typo = await api(admin(), 'PATCH', path, { name: 'Benjamin', phone: '+49 30 1234' });
    expect(typo).toMatchObject({ status: 422, contentType: 'application/problem+json' });
    expect(JSON.stringify(typo.body.errors)).toContain('phone');

    expect((await api(other.admin.apiKey, 'PATCH', path, { name: 'Mallory' })).status).toBe(404);
    expect((await api(admin(), 'GET', path)).body.name).toBe('Ben Miller');
  });

  it('gives a contact created without an address (web form) one, after which agents can reply', async () => {
    const created = await api(alice().apiKey, 'POST', '/v1/conversations', {
      channelId: team.channel.id,
      contact: { name: 'Vera Visitor' },
      subject: 'Callback',
      message: 'Please call me.',
    });
    expect(created.status).toBe(201);
    const { contactId, conversationId } = created.body;
    expect((await api(admin(), 'GET', `/v1/contacts/${contactId}`)).body).toMatchObject({ email: null, name: 'Vera Visitor' });
    expect((await api(admin(), 'GET', '/v1/contacts?q=vera')).body.data.map((c: { id: string }) => c.id)).toEqual([contactId]);

    // Ann's address is taken; a free one is set.
    expect((await api(alice().apiKey, 'PATCH', `/v1/contacts/${contactId}`, { email: 'ann@example.com' })).status).toBe(409);
    const patched = await api(alice().apiKey, 'PATCH', `/v1/contacts/${contactId}`, { email: 'vera@example.com' });
    expect(patched).toMatchObject({ status: 200, body: { email: 'vera@example.com', name: 'Vera Visitor' } });

    await eventually(async () => {
      const { body } = await api(admin(), 'GET', `/v1/conversations/${conversationId}`);
      return body.stage === 'assigned' ? body : undefined;
    });
    const reply = await api(admin(), 'POST', `/v1/conversations/${conversationId}/replies`, { text: 'Hello Vera' });
    expect(reply.status).toBe(201);
    const sent = await stack.capture.waitFor((m) => m.messageId === reply.body.messageId);
    expect(sent.envelope.to).toEqual(['vera@example.com']);
  });
});
