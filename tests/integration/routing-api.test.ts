import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAccount, createChannel, createUser } from '../../src/db/seed.js';
import { callApi, eventually, postMail } from '../support/http.js';
import { seedSupportTeam, startTestStack, type TestStack } from '../support/stack.js';
import { customerMail as mail } from '../support/mail.js';

// The API for AI agents, knowledge articles, routing rules and teams on the real parts (PostgreSQL,
// Temporal, SMTP capture): access rules, validation, ordering, and their effect on real mail.

type Response = Awaited<ReturnType<typeof callApi>>;

/** A problem+json answer with this status, naming `field` when given. */
function expectProblem(response: Response, status: number, field?: string) {
  expect(response.status, JSON.stringify(response.body)).toBe(status);
  expect(response.contentType).toContain('application/problem+json');
  if (field !== undefined) expect(response.body.errors?.map((e: { field: string }) => e.field)).toContain(field);
}

describe('the routing API: AI agents, knowledge articles, routing rules, teams', () => {
  let stack: TestStack;
  let team: Awaited<ReturnType<typeof seedSupportTeam>>;
  /** An agent of the account who is no agent of the channel. */
  let carol: { id: string; apiKey: string };
  /** The admin of another account. */
  let stranger: { id: string; apiKey: string };
  let strangerChannelId: string;

  const api = (key: string, method: string, path: string, body?: unknown) => callApi(stack.api.url, key, method, path, body);
  const admin = () => team.admin.apiKey;
  const alice = () => team.agents[0]!;
  const bob = () => team.agents[1]!;
  const channelPath = (suffix: string) => `/v1/channels/${team.channel.id}${suffix}`;

  async function conversation(conversationId: string, stage: string) {
    return eventually(async () => {
      const { body } = await api(admin(), 'GET', `/v1/conversations/${conversationId}`);
      return body.stage === stage ? body : undefined;
    });
  }

  beforeAll(async () => {
    stack = await startTestStack();
    team = await seedSupportTeam(stack.db, { name: 'Acme Support', emailAddress: 'support@acme.example' });
    carol = await createUser(stack.db, {
      accountId: team.account.id,
      name: 'Carol Agent',
      email: 'carol@acme.example',
      role: 'agent',
    });
    const other = await createAccount(stack.db, 'Other Inc');
    stranger = await createUser(stack.db, {
      accountId: other.id,
      name: 'Sam Stranger',
      email: 'sam@other.example',
      role: 'admin',
    });
    strangerChannelId = (
      await createChannel(stack.db, { accountId: other.id, name: 'Other', emailAddress: 'help@other.example' })
    ).id;
  });

  afterAll(async () => {
    await stack?.stop();
  });

  it('documents each resource as one named component', async () => {
    const doc = (await (await fetch(`${stack.api.url}/openapi.json`)).json()) as any;
    for (const name of ['AiAgent', 'KnowledgeArticle', 'RoutingRule', 'Team'])
      expect(doc.components.schemas).toHaveProperty(name);
    expect(doc.paths['/v1/channels/{channelId}/routing-rules/order'].put.tags).toEqual(['Routing rules']);
    expect(doc.paths['/v1/channels/{channelId}/ai-agents'].post.parameters.map((p: { name: string }) => p.name)).toContain(
      'idempotency-key',
    );
  });

  describe('AI agents', () => {
    it('creates them in order, inserts at a position, and lists them in order', async () => {
      const mia = await api(admin(), 'POST', channelPath('/ai-agents'), {
        name: 'Mia',
        provider: 'knowledge_base',
        enabled: false,
      });
      expect(mia.status).toBe(201);
      expect(mia.body).toMatchObject({
        channelId: team.channel.id,
        name: 'Mia',
        provider: 'knowledge_base',
        model: null,
        enabled: false,
        position: 0,
      });
      expect(Date.parse(mia.body.createdAt)).not.toBeNaN();
      const max = await api(admin(), 'POST', channelPath('/ai-agents'), {
        name: 'Max',
        provider: 'openai_compatible',
        model: 'gpt-x',
      });
      expect(max.body).toMatchObject({ position: 1, enabled: true, model: 'gpt-x' });
      const zoe = await api(admin(), 'POST', channelPath('/ai-agents'), { name: 'Zoe', provider: 'knowledge_base', position: 0 });
      expect(zoe.body).toMatchObject({ position: 0 });
      const beyond = await api(admin(), 'POST', channelPath('/ai-agents'), {
        name: 'Ray',
        provider: 'knowledge_base',
        position: 99,
      });
      expect(beyond.body).toMatchObject({ position: 3 });

      // Agents of the channel read them.
      const listed = await api(alice().apiKey, 'GET', channelPath('/ai-agents'));
      expect(listed.status).toBe(200);
      expect(listed.body.data.map((a: { name: string; position: number }) => [a.name, a.position])).toEqual([
        ['Zoe', 0],
        ['Mia', 1],
        ['Max', 2],
        ['Ray', 3],
      ]);
      expect((await api(alice().apiKey, 'GET', channelPath(`/ai-agents/${mia.body.id}`))).body).toEqual({
        ...mia.body,
        position: 1,
      });

      for (const agent of listed.body.data)
        expect((await api(admin(), 'DELETE', channelPath(`/ai-agents/${agent.id}`))).status).toBe(204);
      expect((await api(admin(), 'GET', channelPath('/ai-agents'))).body.data).toEqual([]);
    });

    it('answers 422 naming the field for invalid input', async () => {
      expectProblem(await api(admin(), 'POST', channelPath('/ai-agents'), { name: 'X', provider: 'gpt' }), 422, 'provider');
      expectProblem(await api(admin(), 'POST', channelPath('/ai-agents'), { provider: 'knowledge_base' }), 422, 'name');
      expectProblem(
        await api(admin(), 'POST', channelPath('/ai-agents'), { name: ' ', provider: 'knowledge_base' }),
        422,
        'name',
      );
      expectProblem(
        await api(admin(), 'POST', channelPath('/ai-agents'), { name: 'X', provider: 'knowledge_base', position: -1 }),
        422,
        'position',
      );
      expectProblem(
        await api(admin(), 'POST', channelPath('/ai-agents'), { name: 'a\u0000', provider: 'knowledge_base' }),
        422,
        'name',
      );
      expectProblem(await api(admin(), 'GET', channelPath('/ai-agents/not-a-uuid')), 422, 'aiAgentId');
      expectProblem(await api(admin(), 'GET', channelPath(`/ai-agents/${randomUUID()}`)), 404);
    });

    it('changes name, model and enabled with PATCH; 404 for an unknown one', async () => {
      const created = await api(admin(), 'POST', channelPath('/ai-agents'), { name: 'Mia', provider: 'knowledge_base' });
      const patched = await api(admin(), 'PATCH', channelPath(`/ai-agents/${created.body.id}`), {
        name: 'Mia 2',
        enabled: false,
        provider: 'openai_compatible',
        model: 'llama',
      });
      expect(patched.status).toBe(200);
      expect(patched.body).toMatchObject({ name: 'Mia 2', enabled: false, provider: 'openai_compatible', model: 'llama' });
      const cleared = await api(admin(), 'PATCH', channelPath(`/ai-agents/${created.body.id}`), { model: null });
      expect(cleared.body).toMatchObject({ name: 'Mia 2', model: null });
      expectProblem(
        await api(admin(), 'PATCH', channelPath(`/ai-agents/${created.body.id}`), { enabled: 'yes' }),
        422,
        'enabled',
      );
      expectProblem(await api(admin(), 'PATCH', channelPath(`/ai-agents/${randomUUID()}`), { enabled: true }), 404);
      // An empty body or an unknown field (a typo) changes nothing and says so, instead of a 200.
      const empty = await api(admin(), 'PATCH', channelPath(`/ai-agents/${created.body.id}`), {});
      expectProblem(empty, 422);
      expect(empty.body.errors).toEqual([{ field: 'json', message: 'send at least one of: name, provider, model, enabled' }]);
      const typo = await api(admin(), 'PATCH', channelPath(`/ai-agents/${created.body.id}`), { name: 'Mia 3', enabeld: true });
      expectProblem(typo, 422);
      expect(JSON.stringify(typo.body.errors)).toContain('enabeld');
      expect((await api(admin(), 'GET', channelPath(`/ai-agents/${created.body.id}`))).body).toMatchObject({
        name: 'Mia 2',
        enabled: false,
      });
      expect((await api(admin(), 'DELETE', channelPath(`/ai-agents/${created.body.id}`))).status).toBe(204);
      expectProblem(await api(admin(), 'DELETE', channelPath(`/ai-agents/${created.body.id}`)), 404);
    });

    it('answers 403 to an agent writing, 403 to an agent of another channel reading, 404 to another account', async () => {
      const created = await api(admin(), 'POST', channelPath('/ai-agents'), { name: 'Mia', provider: 'knowledge_base' });
      const one = channelPath(`/ai-agents/${created.body.id}`);
      expectProblem(await api(alice().apiKey, 'POST', channelPath('/ai-agents'), { name: 'X', provider: 'knowledge_base' }), 403);
      expectProblem(await api(alice().apiKey, 'PATCH', one, { enabled: false }), 403);
      expectProblem(await api(alice().apiKey, 'DELETE', one), 403);
      expectProblem(await api(alice().apiKey, 'PUT', channelPath('/ai-agents/order'), { ids: [created.body.id] }), 403);
      expectProblem(await api(carol.apiKey, 'GET', channelPath('/ai-agents')), 403);

      expectProblem(await api(stranger.apiKey, 'GET', channelPath('/ai-agents')), 404);
      expectProblem(await api(stranger.apiKey, 'GET', one), 404);
      expectProblem(
        await api(stranger.apiKey, 'POST', channelPath('/ai-agents'), { name: 'X', provider: 'knowledge_base' }),
        404,
      );
      expectProblem(await api(stranger.apiKey, 'PATCH', one, { enabled: false }), 404);
      expectProblem(await api(stranger.apiKey, 'DELETE', one), 404);
      expectProblem(await api(stranger.apiKey, 'PUT', channelPath('/ai-agents/order'), { ids: [created.body.id] }), 404);
      // Through a channel of its own account it is not found either.
      expectProblem(await api(stranger.apiKey, 'GET', `/v1/channels/${strangerChannelId}/ai-agents/${created.body.id}`), 404);
      expect((await api(stranger.apiKey, 'GET', `/v1/channels/${strangerChannelId}/ai-agents`)).body.data).toEqual([]);
      expect((await api(admin(), 'DELETE', one)).status).toBe(204);
    });

    it('reorders only with every AI agent named once, and serializes concurrent reorders', async () => {
      const ids: string[] = [];
      for (const name of ['A', 'B', 'C', 'D']) {
        ids.push((await api(admin(), 'POST', channelPath('/ai-agents'), { name, provider: 'knowledge_base' })).body.id);
      }
      const [a, b, c, d] = ids as [string, string, string, string];
      const reordered = await api(admin(), 'PUT', channelPath('/ai-agents/order'), { ids: [d, b, a, c] });
      expect(reordered.status).toBe(200);
      expect(reordered.body.data.map((x: { name: string; position: number }) => `${x.name}${x.position}`)).toEqual([
        'D0',
        'B1',
        'A2',
        'C3',
      ]);
      expectProblem(await api(admin(), 'PUT', channelPath('/ai-agents/order'), { ids: [d, b, a] }), 422, 'ids');
      expectProblem(await api(admin(), 'PUT', channelPath('/ai-agents/order'), { ids: [d, b, a, a] }), 422, 'ids');
      expectProblem(await api(admin(), 'PUT', channelPath('/ai-agents/order'), { ids: [d, b, a, c, randomUUID()] }), 422, 'ids');
      expectProblem(await api(admin(), 'PUT', channelPath('/ai-agents/order'), { ids: ['nope'] }), 422, 'ids.0');
      expectProblem(await api(admin(), 'PUT', channelPath('/ai-agents/order'), {}), 422, 'ids');
      // Unchanged after the refusals.
      expect((await api(admin(), 'GET', channelPath('/ai-agents'))).body.data.map((x: { id: string }) => x.id)).toEqual([
        d,
        b,
        a,
        c,
      ]);

      const orders = [
        [a, b, c, d],
        [d, c, b, a],
        [b, d, a, c],
        [c, a, d, b],
        [a, c, b, d],
      ];
      const answers = await Promise.all(
        orders.map((order) => api(admin(), 'PUT', channelPath('/ai-agents/order'), { ids: order })),
      );
      expect(answers.map((answer) => answer.status)).toEqual([200, 200, 200, 200, 200]);
      const final = (await api(admin(), 'GET', channelPath('/ai-agents'))).body.data as Array<{ id: string; position: number }>;
      expect(final.map((x) => x.position)).toEqual([0, 1, 2, 3]);
      expect(orders).toContainEqual(final.map((x) => x.id));

      // A deletion closes the gap.
      await api(admin(), 'DELETE', channelPath(`/ai-agents/${final[1]!.id}`));
      const after = (await api(admin(), 'GET', channelPath('/ai-agents'))).body.data as Array<{ id: string; position: number }>;
      expect(after.map((x) => [x.id, x.position])).toEqual([
        [final[0]!.id, 0],
        [final[2]!.id, 1],
        [final[3]!.id, 2],
      ]);
      for (const x of after) await api(admin(), 'DELETE', channelPath(`/ai-agents/${x.id}`));
    });

    it('honours Idempotency-Key on create', async () => {
      const send = (key: string) =>
        fetch(`${stack.api.url}${channelPath('/ai-agents')}`, {
          method: 'POST',
          headers: { authorization: `Bearer ${admin()}`, 'content-type': 'application/json', 'idempotency-key': key },
          body: JSON.stringify({ name: 'Once', provider: 'knowledge_base' }),
        });
      const key = randomUUID();
      const first = await send(key);
      const again = await send(key);
      expect([first.status, again.status]).toEqual([201, 201]);
      expect(again.headers.get('idempotent-replayed')).toBe('true');
      expect(((await again.json()) as { id: string }).id).toBe(((await first.json()) as { id: string }).id);
      expect((await send(randomUUID())).status).toBe(201);
      const all = (await api(admin(), 'GET', channelPath('/ai-agents'))).body.data as Array<{ id: string }>;
      expect(all).toHaveLength(2);
      for (const x of all) await api(admin(), 'DELETE', channelPath(`/ai-agents/${x.id}`));
    });
  });

  describe('knowledge articles', () => {
    it('creates, pages, reads, replaces and deletes them', async () => {
      const ids: string[] = [];
      for (const n of [1, 2, 3]) {
        const created = await api(admin(), 'POST', channelPath('/knowledge-articles'), {
          title: `Article ${n}`,
          body: `Body ${n}`,
        });
        expect(created.status).toBe(201);
        expect(created.body).toMatchObject({ channelId: team.channel.id, title: `Article ${n}`, body: `Body ${n}` });
        ids.push(created.body.id);
      }
      const first = await api(alice().apiKey, 'GET', channelPath('/knowledge-articles?limit=2'));
      expect(first.status).toBe(200);
      expect(first.body.data.map((a: { title: string }) => a.title)).toEqual(['Article 3', 'Article 2']);
      expect(first.body.nextCursor).toEqual(expect.any(String));
      const second = await api(
        alice().apiKey,
        'GET',
        channelPath(`/knowledge-articles?limit=2&cursor=${encodeURIComponent(first.body.nextCursor)}`),
      );
      expect(second.body).toMatchObject({ data: [{ title: 'Article 1' }], nextCursor: null });
      expectProblem(await api(admin(), 'GET', channelPath('/knowledge-articles?cursor=bogus')), 422, 'cursor');
      expectProblem(await api(admin(), 'GET', channelPath('/knowledge-articles?limit=0')), 422, 'limit');

      const one = channelPath(`/knowledge-articles/${ids[0]}`);
      expect((await api(alice().apiKey, 'GET', one)).body).toMatchObject({ id: ids[0], title: 'Article 1' });
      const replaced = await api(admin(), 'PUT', one, { title: 'Returns', body: 'Return within 30 days.' });
      expect(replaced.status).toBe(200);
      expect(replaced.body).toMatchObject({ id: ids[0], title: 'Returns', body: 'Return within 30 days.' });
      expectProblem(await api(admin(), 'PUT', one, { title: 'Returns' }), 422, 'body');
      expectProblem(
        await api(admin(), 'PUT', channelPath(`/knowledge-articles/${randomUUID()}`), { title: 'T', body: 'B' }),
        404,
      );

      for (const id of ids) expect((await api(admin(), 'DELETE', channelPath(`/knowledge-articles/${id}`))).status).toBe(204);
      expectProblem(await api(admin(), 'GET', one), 404);
      expectProblem(await api(admin(), 'DELETE', one), 404);
    });

    it('answers 422 naming the field for invalid input', async () => {
      const post = (body: unknown) => api(admin(), 'POST', channelPath('/knowledge-articles'), body);
      expectProblem(await post({ title: '', body: 'x' }), 422, 'title');
      expectProblem(await post({ title: 'x'.repeat(301), body: 'x' }), 422, 'title');
      expectProblem(await post({ title: 'T', body: '' }), 422, 'body');
      expectProblem(await post({ title: 'T', body: 'x'.repeat(100_001) }), 422, 'body');
      // PostgreSQL refuses NUL in text: a 422, not a 500.
      expectProblem(await post({ title: 'T', body: 'a\u0000b' }), 422, 'body');
      expect((await api(admin(), 'GET', channelPath('/knowledge-articles'))).body.data).toEqual([]);
    });

    it('answers 403 to an agent writing and 404 to another account', async () => {
      const created = await api(admin(), 'POST', channelPath('/knowledge-articles'), { title: 'T', body: 'B' });
      const one = channelPath(`/knowledge-articles/${created.body.id}`);
      expectProblem(await api(alice().apiKey, 'POST', channelPath('/knowledge-articles'), { title: 'T', body: 'B' }), 403);
      expectProblem(await api(alice().apiKey, 'PUT', one, { title: 'T', body: 'B' }), 403);
      expectProblem(await api(alice().apiKey, 'DELETE', one), 403);
      expectProblem(await api(carol.apiKey, 'GET', one), 403);
      expectProblem(await api(stranger.apiKey, 'GET', channelPath('/knowledge-articles')), 404);
      expectProblem(await api(stranger.apiKey, 'GET', one), 404);
      expectProblem(await api(stranger.apiKey, 'PUT', one, { title: 'T', body: 'B' }), 404);
      expectProblem(await api(stranger.apiKey, 'DELETE', one), 404);
      expectProblem(
        await api(stranger.apiKey, 'GET', `/v1/channels/${strangerChannelId}/knowledge-articles/${created.body.id}`),
        404,
      );
      expect((await api(stranger.apiKey, 'GET', `/v1/channels/${strangerChannelId}/knowledge-articles`)).body.data).toEqual([]);
      expect((await api(admin(), 'DELETE', one)).status).toBe(204);
    });
  });

  describe('teams', () => {
    it('creates, reads, renames, sets members of and deletes a team', async () => {
      const created = await api(admin(), 'POST', '/v1/teams', { name: 'Billing', userIds: [bob().id] });
      expect(created.status).toBe(201);
      expect(created.body).toMatchObject({
        accountId: team.account.id,
        name: 'Billing',
        members: [{ userId: bob().id, name: 'Bob Agent' }],
      });
      const one = `/v1/teams/${created.body.id}`;

      // Every user of the account reads teams, agents of no channel too.
      expect((await api(carol.apiKey, 'GET', one)).body).toEqual(created.body);
      const listed = await api(alice().apiKey, 'GET', '/v1/teams');
      expect(listed.body.data.map((t: { id: string }) => t.id)).toContain(created.body.id);

      const renamed = await api(admin(), 'PATCH', one, { name: 'Billing & Invoices' });
      expect(renamed.body).toMatchObject({ name: 'Billing & Invoices' });
      const members = await api(admin(), 'PUT', `${one}/members`, { userIds: [bob().id, alice().id, bob().id] });
      expect(members.status).toBe(200);
      expect(members.body.members).toEqual([
        { userId: alice().id, name: 'Alice Agent' },
        { userId: bob().id, name: 'Bob Agent' },
      ]);
      expect((await api(admin(), 'PUT', `${one}/members`, { userIds: [] })).body.members).toEqual([]);

      expect((await api(admin(), 'DELETE', one)).status).toBe(204);
      expectProblem(await api(admin(), 'GET', one), 404);
      expectProblem(await api(admin(), 'DELETE', one), 404);
    });

    it('takes users of the account only, and validates names', async () => {
      expectProblem(await api(admin(), 'POST', '/v1/teams', { name: 'X', userIds: [stranger.id] }), 422, 'userIds.0');
      expectProblem(await api(admin(), 'POST', '/v1/teams', { name: 'X', userIds: ['nope'] }), 422, 'userIds.0');
      expectProblem(await api(admin(), 'POST', '/v1/teams', { name: '' }), 422, 'name');
      expectProblem(await api(admin(), 'POST', '/v1/teams', { name: 'a\u0000b' }), 422, 'name');
      const created = await api(admin(), 'POST', '/v1/teams', { name: 'Support' });
      expect(created.body.members).toEqual([]);
      const members = `/v1/teams/${created.body.id}/members`;
      expectProblem(await api(admin(), 'PUT', members, { userIds: [alice().id, randomUUID()] }), 422, 'userIds.1');
      expectProblem(await api(admin(), 'PUT', members, {}), 422, 'userIds');
      // A rename without a name, or with an unknown field, is refused rather than answered 200 unchanged.
      const team = `/v1/teams/${created.body.id}`;
      const empty = await api(admin(), 'PATCH', team, {});
      expectProblem(empty, 422);
      expect(empty.body.errors).toEqual([{ field: 'json', message: 'send at least one of: name' }]);
      const typo = await api(admin(), 'PATCH', team, { name: 'Renamed', colour: 'red' });
      expectProblem(typo, 422);
      expect(JSON.stringify(typo.body.errors)).toContain('colour');
      expect((await api(admin(), 'GET', team)).body.name).toBe('Support');
      expect((await api(admin(), 'GET', `/v1/teams/${created.body.id}`)).body.members).toEqual([]);
      expect((await api(admin(), 'DELETE', `/v1/teams/${created.body.id}`)).status).toBe(204);
    });

    it('answers 403 to an agent writing and 404 to another account, which never lists it', async () => {
      const created = await api(admin(), 'POST', '/v1/teams', { name: 'Sales' });
      const one = `/v1/teams/${created.body.id}`;
      expectProblem(await api(alice().apiKey, 'POST', '/v1/teams', { name: 'X' }), 403);
      expectProblem(await api(alice().apiKey, 'PATCH', one, { name: 'X' }), 403);
      expectProblem(await api(alice().apiKey, 'PUT', `${one}/members`, { userIds: [] }), 403);
      expectProblem(await api(alice().apiKey, 'DELETE', one), 403);

      expectProblem(await api(stranger.apiKey, 'GET', one), 404);
      expectProblem(await api(stranger.apiKey, 'PATCH', one, { name: 'X' }), 404);
      expectProblem(await api(stranger.apiKey, 'PUT', `${one}/members`, { userIds: [] }), 404);
      expectProblem(await api(stranger.apiKey, 'DELETE', one), 404);
      expect((await api(stranger.apiKey, 'GET', '/v1/teams')).body.data).toEqual([]);
      expect((await api(admin(), 'GET', one)).body.name).toBe('Sales');
      expect((await api(admin(), 'DELETE', one)).status).toBe(204);
    });
  });

  describe('routing rules', () => {
    const subjectRule = (name: string, value: string, actions: object) => ({
      name,
      conditions: [{ field: 'subject', operator: 'contains', value }],
      actions,
    });

    it('creates, reads, replaces, moves and deletes rules, with a description', async () => {
      const teamId = (await api(admin(), 'POST', '/v1/teams', { name: 'Billing', userIds: [bob().id] })).body.id;
      const first = await api(
        admin(),
        'POST',
        channelPath('/routing-rules'),
        subjectRule('Invoices', 'invoice', { assignTo: { kind: 'team', teamId }, priority: 'high', labels: [' Billing '] }),
      );
      expect(first.status).toBe(201);
      expect(first.body).toMatchObject({
        channelId: team.channel.id,
        position: 0,
        name: 'Invoices',
        conditions: [{ field: 'subject', operator: 'contains', value: 'invoice' }],
        actions: { assignTo: { kind: 'team', teamId }, priority: 'high', labels: ['billing'] },
        description: 'rule "Invoices": subject contains "invoice" → assign to team, priority high, label billing',
      });
      const second = await api(
        admin(),
        'POST',
        channelPath('/routing-rules'),
        subjectRule('To Alice', 'alice', { assignTo: { kind: 'agent', agentId: alice().id } }),
      );
      const third = await api(admin(), 'POST', channelPath('/routing-rules'), {
        ...subjectRule('Spam', 'casino', { priority: 'low' }),
        position: 0,
      });
      expect(third.body.position).toBe(0);
      const names = async () =>
        (await api(alice().apiKey, 'GET', channelPath('/routing-rules'))).body.data.map(
          (r: { name: string; position: number }) => `${r.position}:${r.name}`,
        );
      expect(await names()).toEqual(['0:Spam', '1:Invoices', '2:To Alice']);

      const replaced = await api(admin(), 'PUT', channelPath(`/routing-rules/${second.body.id}`), {
        ...subjectRule('To Bob', 'bob', { assignTo: { kind: 'agent', agentId: bob().id } }),
        position: 0,
      });
      expect(replaced.status).toBe(200);
      expect(replaced.body).toMatchObject({
        name: 'To Bob',
        position: 0,
        actions: { assignTo: { kind: 'agent', agentId: bob().id } },
      });
      expect(await names()).toEqual(['0:To Bob', '1:Spam', '2:Invoices']);
      expect((await api(alice().apiKey, 'GET', channelPath(`/routing-rules/${first.body.id}`))).body).toMatchObject({
        name: 'Invoices',
        position: 2,
      });

      // A team used by a rule stays until the rule goes.
      const blocked = await api(admin(), 'DELETE', `/v1/teams/${teamId}`);
      expectProblem(blocked, 409);
      expect(blocked.body.detail).toContain('"Invoices"');
      expect(blocked.body.detail).toContain(first.body.id);

      expect((await api(admin(), 'DELETE', channelPath(`/routing-rules/${third.body.id}`))).status).toBe(204);
      expect(await names()).toEqual(['0:To Bob', '1:Invoices']);
      expectProblem(await api(admin(), 'GET', channelPath(`/routing-rules/${third.body.id}`)), 404);
      expectProblem(
        await api(admin(), 'PUT', channelPath(`/routing-rules/${third.body.id}`), subjectRule('X', 'x', { priority: 'low' })),
        404,
      );
      for (const id of [first.body.id, second.body.id]) await api(admin(), 'DELETE', channelPath(`/routing-rules/${id}`));
      expect((await api(admin(), 'DELETE', `/v1/teams/${teamId}`)).status).toBe(204);
    });

    it('keeps a channel to 200 rules: every new conversation is matched against all of them', async () => {
      const other = await createChannel(stack.db, {
        accountId: team.account.id,
        name: 'Busy',
        emailAddress: 'busy@acme.example',
      });
      await stack.db
        .insertInto('routing_rules')
        .values(
          Array.from({ length: 200 }, (_, position) => ({
            id: randomUUID(),
            channel_id: other.id,
            position,
            name: `Rule ${position}`,
            conditions: JSON.stringify([{ field: 'subject', operator: 'contains', value: `x${position}` }]),
            actions: JSON.stringify({ priority: 'high' }),
          })),
        )
        .execute();
      const refused = await api(
        admin(),
        'POST',
        `/v1/channels/${other.id}/routing-rules`,
        subjectRule('One more', 'y', { priority: 'low' }),
      );
      expectProblem(refused, 409);
      expect(refused.body.detail).toMatch(/at most 200 routing rules/);
    });

    it('answers 422 naming the field for what evaluation would not understand and for unknown references', async () => {
      const post = (body: unknown) => api(admin(), 'POST', channelPath('/routing-rules'), body);
      const regex = await post({
        name: 'Bad',
        conditions: [{ field: 'subject', operator: 'matches', value: '(unclosed' }],
        actions: { priority: 'high' },
      });
      expectProblem(regex, 422, 'conditions.0.value');
      expect(regex.body.errors[0].message).toMatch(/regular expression/i);
      // RE2 syntax: what needs a backtracking engine is refused, as is a pattern too large to match quickly.
      const lookBehind = await post({
        name: 'Look-behind',
        conditions: [{ field: 'body', operator: 'matches', value: '(?<=re)fund' }],
        actions: { priority: 'high' },
      });
      expectProblem(lookBehind, 422, 'conditions.0.value');
      const huge = await post({
        name: 'Huge',
        conditions: [{ field: 'body', operator: 'matches', value: '(a|aa){1000}' }],
        actions: { priority: 'high' },
      });
      expectProblem(huge, 422, 'conditions.0.value');
      expect(huge.body.errors[0].message).toMatch(/too complex/);
      expectProblem(await post(subjectRule('Nothing', 'x', {})), 422, 'actions');
      expectProblem(await post(subjectRule('Nul', 'a\u0000b', { priority: 'low' })), 422, 'conditions.0.value');
      expectProblem(await post({ name: 'X', conditions: [], actions: { priority: 'high' } }), 422, 'conditions');
      expectProblem(await post(subjectRule('', 'x', { priority: 'high' })), 422, 'name');
      expectProblem(await post(subjectRule('X', 'x', { priority: 'asap' })), 422, 'actions.priority');
      const unknownField = await post({
        name: 'X',
        conditions: [{ field: 'mood', operator: 'is', value: 'x' }],
        actions: { priority: 'high' },
      });
      expectProblem(unknownField, 422);
      expect(unknownField.body.errors[0].field).toMatch(/^conditions\.0/);

      expectProblem(
        await post(subjectRule('X', 'x', { assignTo: { kind: 'agent', agentId: carol.id } })),
        422,
        'actions.assignTo.agentId',
      );
      expectProblem(
        await post(subjectRule('X', 'x', { assignTo: { kind: 'team', teamId: randomUUID() } })),
        422,
        'actions.assignTo.teamId',
      );
      const foreignTeam = (await api(stranger.apiKey, 'POST', '/v1/teams', { name: 'Theirs' })).body.id;
      expectProblem(
        await post(subjectRule('X', 'x', { assignTo: { kind: 'team', teamId: foreignTeam } })),
        422,
        'actions.assignTo.teamId',
      );
      expectProblem(
        await post(subjectRule('X', 'x', { assignTo: { kind: 'ai_agent', aiAgentId: randomUUID() } })),
        422,
        'actions.assignTo.aiAgentId',
      );
      expectProblem(
        await post(subjectRule('X', 'x', { assignTo: { kind: 'agent', agentId: 'alice' } })),
        422,
        'actions.assignTo.agentId',
      );
      expect((await api(admin(), 'GET', channelPath('/routing-rules'))).body.data).toEqual([]);
    });

    it('answers 403 to an agent writing, 404 to another account; reorders with every rule named once', async () => {
      const ids: string[] = [];
      for (const name of ['A', 'B', 'C']) {
        ids.push(
          (await api(admin(), 'POST', channelPath('/routing-rules'), subjectRule(name, name, { priority: 'low' }))).body.id,
        );
      }
      const [a, b, c] = ids as [string, string, string];
      const one = channelPath(`/routing-rules/${a}`);
      expectProblem(
        await api(alice().apiKey, 'POST', channelPath('/routing-rules'), subjectRule('X', 'x', { priority: 'low' })),
        403,
      );
      expectProblem(await api(alice().apiKey, 'PUT', one, subjectRule('X', 'x', { priority: 'low' })), 403);
      expectProblem(await api(alice().apiKey, 'DELETE', one), 403);
      expectProblem(await api(alice().apiKey, 'PUT', channelPath('/routing-rules/order'), { ids: [c, b, a] }), 403);
      expectProblem(await api(carol.apiKey, 'GET', channelPath('/routing-rules')), 403);
      expectProblem(await api(stranger.apiKey, 'GET', channelPath('/routing-rules')), 404);
      expectProblem(await api(stranger.apiKey, 'GET', one), 404);
      expectProblem(await api(stranger.apiKey, 'PUT', one, subjectRule('X', 'x', { priority: 'low' })), 404);
      expectProblem(await api(stranger.apiKey, 'DELETE', one), 404);
      expectProblem(await api(stranger.apiKey, 'PUT', channelPath('/routing-rules/order'), { ids: [c, b, a] }), 404);
      expect((await api(stranger.apiKey, 'GET', `/v1/channels/${strangerChannelId}/routing-rules`)).body.data).toEqual([]);

      const reordered = await api(admin(), 'PUT', channelPath('/routing-rules/order'), { ids: [c, a, b] });
      expect(reordered.status).toBe(200);
      expect(reordered.body.data.map((r: { name: string; position: number }) => `${r.position}:${r.name}`)).toEqual([
        '0:C',
        '1:A',
        '2:B',
      ]);
      expect(reordered.body.data[0].description).toBe('rule "C": subject contains "C" → priority low');
      expectProblem(await api(admin(), 'PUT', channelPath('/routing-rules/order'), { ids: [c, a] }), 422, 'ids');
      expectProblem(await api(admin(), 'PUT', channelPath('/routing-rules/order'), { ids: [c, a, b, b] }), 422, 'ids');
      expectProblem(await api(admin(), 'PUT', channelPath('/routing-rules/order'), { ids: [c, a, randomUUID()] }), 422, 'ids');
      for (const id of ids) await api(admin(), 'DELETE', channelPath(`/routing-rules/${id}`));
    });

    it('keeps an AI agent a rule assigns to until the rule goes', async () => {
      const aiAgent = (await api(admin(), 'POST', channelPath('/ai-agents'), { name: 'Mia', provider: 'knowledge_base' })).body;
      const rule = await api(
        admin(),
        'POST',
        channelPath('/routing-rules'),
        subjectRule('Bot', 'faq', { assignTo: { kind: 'ai_agent', aiAgentId: aiAgent.id } }),
      );
      expect(rule.status).toBe(201);
      expect(rule.body.description).toContain('assign to AI agent');
      const blocked = await api(admin(), 'DELETE', channelPath(`/ai-agents/${aiAgent.id}`));
      expectProblem(blocked, 409);
      expect(blocked.body.detail).toContain('"Bot"');
      expect((await api(admin(), 'DELETE', channelPath(`/routing-rules/${rule.body.id}`))).status).toBe(204);
      expect((await api(admin(), 'DELETE', channelPath(`/ai-agents/${aiAgent.id}`))).status).toBe(204);
    });
  });

  describe('effects on real mail', () => {
    it('routes the next conversation by the rule that is first after a reorder', async () => {
      const create = (name: string, actions: object) =>
        api(admin(), 'POST', channelPath('/routing-rules'), {
          name,
          conditions: [{ field: 'subject', operator: 'contains', value: 'refund' }],
          actions,
        });
      const billing = (
        await create('Refunds to billing', {
          priority: 'high',
          labels: ['billing'],
          assignTo: { kind: 'agent', agentId: alice().id },
        })
      ).body;
      const urgent = (
        await create('Refunds are urgent', {
          priority: 'urgent',
          labels: ['escalated'],
          assignTo: { kind: 'agent', agentId: bob().id },
        })
      ).body;

      const before = await postMail(
        stack.api.url,
        team.channel,
        mail({ messageId: 'refund-1@example.com', from: 'ann@example.com', subject: 'Refund please', text: 'I want a refund.' }),
      );
      expect(before.status).toBe(202);
      expect(await conversation(before.body.conversationId, 'assigned')).toMatchObject({
        assigneeId: alice().id,
        priority: 'high',
        labels: ['billing'],
      });

      const reordered = await api(admin(), 'PUT', channelPath('/routing-rules/order'), { ids: [urgent.id, billing.id] });
      expect(reordered.status).toBe(200);
      const after = await postMail(
        stack.api.url,
        team.channel,
        mail({ messageId: 'refund-2@example.com', from: 'ben@example.com', subject: 'Refund for order 7', text: 'Refund, now.' }),
      );
      expect(await conversation(after.body.conversationId, 'assigned')).toMatchObject({
        assigneeId: bob().id,
        priority: 'urgent',
        labels: ['escalated'],
      });
      const routed = await stack.db
        .selectFrom('conversation_events')
        .select('data')
        .where('conversation_id', '=', after.body.conversationId)
        .where('type', '=', 'routed')
        .executeTakeFirstOrThrow();
      expect(routed.data.rule).toBe(urgent.description);

      for (const id of [billing.id, urgent.id]) await api(admin(), 'DELETE', channelPath(`/routing-rules/${id}`));
    });

    it('matches an admin’s catastrophic pattern against a hostile body in linear time, and the next mail is routed too', async () => {
      const rule = await api(admin(), 'POST', channelPath('/routing-rules'), {
        name: 'Nested quantifiers',
        conditions: [{ field: 'body', operator: 'matches', value: '^(a+)+$' }],
        actions: { priority: 'urgent', labels: ['all-a'] },
      });
      expect(rule.status).toBe(201);
      // With a backtracking engine this body takes longer than the universe has: 2^19,990 paths.
      const hostile = await postMail(
        stack.api.url,
        team.channel,
        mail({ messageId: 'redos-1@example.com', from: 'eve@example.com', subject: 'aaa', text: `${'a'.repeat(19_990)}!` }),
      );
      const plain = await postMail(
        stack.api.url,
        team.channel,
        mail({ messageId: 'redos-2@example.com', from: 'fay@example.com', subject: 'Question', text: 'aaaa' }),
      );
      expect([hostile.status, plain.status]).toEqual([202, 202]);
      expect(await conversation(hostile.body.conversationId, 'assigned')).toMatchObject({ priority: 'normal', labels: [] });
      expect(await conversation(plain.body.conversationId, 'assigned')).toMatchObject({ priority: 'urgent', labels: ['all-a'] });
      await api(admin(), 'DELETE', channelPath(`/routing-rules/${rule.body.id}`));
    });

    it("offers a team's queued conversations to the members a PUT adds", async () => {
      const empty = (await api(admin(), 'POST', '/v1/teams', { name: 'Nobody yet' })).body;
      const rule = (
        await api(admin(), 'POST', channelPath('/routing-rules'), {
          name: 'Partners',
          conditions: [{ field: 'sender_domain', operator: 'is', value: 'partner.example' }],
          actions: { assignTo: { kind: 'team', teamId: empty.id } },
        })
      ).body;
      const posted = await postMail(
        stack.api.url,
        team.channel,
        mail({ messageId: 'partner-1@partner.example', from: 'pat@partner.example', subject: 'Hello', text: 'Partner question' }),
      );
      // Nobody in the team: it waits in the queue.
      expect(await conversation(posted.body.conversationId, 'queued')).toMatchObject({ teamId: empty.id, assigneeId: null });

      expect((await api(admin(), 'PUT', `/v1/teams/${empty.id}/members`, { userIds: [alice().id] })).status).toBe(200);
      expect(await conversation(posted.body.conversationId, 'assigned')).toMatchObject({
        teamId: empty.id,
        assigneeId: alice().id,
      });

      expectProblem(await api(admin(), 'DELETE', `/v1/teams/${empty.id}`), 409);
      expect((await api(admin(), 'DELETE', channelPath(`/routing-rules/${rule.id}`))).status).toBe(204);
      expect((await api(admin(), 'DELETE', `/v1/teams/${empty.id}`)).status).toBe(204);
      // The conversation keeps its agent; only the team reference goes.
      expect((await api(admin(), 'GET', `/v1/conversations/${posted.body.conversationId}`)).body).toMatchObject({
        teamId: null,
        assigneeId: alice().id,
      });
    });

    it('answers with a knowledge-base AI agent made through the API, and sends to people once it is disabled', async () => {
      const aiAgent = await api(admin(), 'POST', channelPath('/ai-agents'), { name: 'Mia', provider: 'knowledge_base' });
      expect(aiAgent.status).toBe(201);
      for (const article of [
        {
          title: 'Missing invoice',
          body: 'Every invoice is in your account under Billing → Invoices. A missing invoice for a month appears there within a day; you can download it again as a PDF.',
        },
        { title: 'Shipping times', body: 'Parcels within Germany arrive in 2–3 working days.' },
      ]) {
        expect((await api(admin(), 'POST', channelPath('/knowledge-articles'), article)).status).toBe(201);
      }

      const question = {
        subject: 'Invoice missing',
        text: 'Hello, the invoice for March is missing in my account. Where can I find the invoice?',
      };
      const posted = await postMail(
        stack.api.url,
        team.channel,
        mail({ messageId: 'invoice-1@mail.example.com', from: 'cleo@example.com', ...question }),
      );
      expect(posted.status).toBe(202);
      const answer = await stack.capture.waitFor((m) => m.inReplyTo === '<invoice-1@mail.example.com>');
      expect(answer.headers.from).toContain('Mia');
      expect(answer.text).toContain('Billing → Invoices');
      expect(await conversation(posted.body.conversationId, 'ai')).toMatchObject({
        aiAgentId: aiAgent.body.id,
        assigneeId: null,
      });

      // It still handles that conversation: it cannot be removed, only disabled.
      const blocked = await api(admin(), 'DELETE', channelPath(`/ai-agents/${aiAgent.body.id}`));
      expectProblem(blocked, 409);
      expect(blocked.body.detail).toContain(posted.body.conversationId);
      const disabled = await api(admin(), 'PATCH', channelPath(`/ai-agents/${aiAgent.body.id}`), { enabled: false });
      expect(disabled.body).toMatchObject({ enabled: false });

      const next = await postMail(
        stack.api.url,
        team.channel,
        mail({ messageId: 'invoice-2@mail.example.com', from: 'dan@example.com', ...question }),
      );
      const toPeople = await conversation(next.body.conversationId, 'assigned');
      expect(toPeople).toMatchObject({ aiAgentId: null });
      expect([alice().id, bob().id]).toContain(toPeople.assigneeId);
      expect(stack.capture.mails.some((m) => m.inReplyTo === '<invoice-2@mail.example.com>')).toBe(false);
    });
  });
});
