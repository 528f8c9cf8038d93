import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashSecret } from '../../src/security/secret-hash.js';
import { createUser } from '../../src/db/seed.js';
import { callApi, eventually } from '../support/http.js';
import { seedSupportTeam, startTestStack, type TestStack } from '../support/stack.js';

// The users and API-keys routes (A2) on the real stack: who may do what, 404 for another account's
// users, keys shown once and stored only as a hash, revoked and removed users' keys refused at once.

describe('users and API keys', () => {
  let stack: TestStack;
  let team: Awaited<ReturnType<typeof seedSupportTeam>>;
  let other: Awaited<ReturnType<typeof seedSupportTeam>>;
  let admin: { id: string; apiKey: string };
  let alice: { id: string; apiKey: string };
  let bob: { id: string; apiKey: string };

  const api = (apiKey: string, method: string, path: string, body?: unknown) =>
    callApi(stack.api.url, apiKey, method, path, body);

  async function request(apiKey: string, method: string, path: string, body: unknown, headers: Record<string, string>) {
    const response = await fetch(`${stack.api.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
    });
    return { status: response.status, headers: response.headers, body: (await response.json()) as any };
  }

  beforeAll(async () => {
    stack = await startTestStack();
    team = await seedSupportTeam(stack.db, { name: 'Acme Support', emailAddress: 'support@acme.example' });
    other = await seedSupportTeam(stack.db, { name: 'Other Support', emailAddress: 'help@other.example' });
    admin = team.admin;
    [alice, bob] = team.agents as [typeof alice, typeof bob];
  });

  afterAll(async () => {
    await stack?.stop();
  });

  describe('GET /v1/me', () => {
    it('answers the caller', async () => {
      const me = await api(alice.apiKey, 'GET', '/v1/me');
      expect(me).toMatchObject({
        status: 200,
        body: {
          id: alice.id,
          accountId: team.account.id,
          name: 'Alice Agent',
          email: 'alice@acme.example',
          role: 'agent',
          available: true,
          createdAt: expect.any(String),
        },
      });
      expect((await api(admin.apiKey, 'GET', '/v1/me')).body).toMatchObject({ id: admin.id, role: 'admin' });
    });

    it('answers 401 problem+json without a key or with an unknown one', async () => {
      const missing = await fetch(`${stack.api.url}/v1/me`);
      expect(missing.status).toBe(401);
      expect(missing.headers.get('content-type')).toBe('application/problem+json');
      expect((await api('mr_not-a-key', 'GET', '/v1/me')).status).toBe(401);
    });
  });

  describe('GET /v1/users', () => {
    it("pages through the account's users, newest first, and never shows another account's", async () => {
      const seen: string[] = [];
      let cursor: string | null = null;
      do {
        const page = await api(alice.apiKey, 'GET', `/v1/users?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
        expect(page.status).toBe(200);
        expect(page.body.data.length).toBeLessThanOrEqual(2);
        seen.push(...page.body.data.map((user: { id: string }) => user.id));
        cursor = page.body.nextCursor;
      } while (cursor);
      expect(seen).toEqual(expect.arrayContaining([admin.id, alice.id, bob.id]));
      expect(new Set(seen).size).toBe(seen.length);
      const theirs = [other.admin.id, ...other.agents.map((agent) => agent.id)];
      for (const id of theirs) expect(seen).not.toContain(id);

      const all = await api(admin.apiKey, 'GET', '/v1/users?limit=100');
      expect(all.body.nextCursor).toBeNull();
      expect(all.body.data.map((user: { id: string }) => user.id)).toEqual(seen);
      const createdAt = all.body.data.map((user: { createdAt: string }) => user.createdAt);
      expect([...createdAt].sort().reverse()).toEqual(createdAt);
    });

    it('answers 422 naming the field for a cursor it never issued or a bad limit', async () => {
      const cursor = await api(admin.apiKey, 'GET', '/v1/users?cursor=nonsense');
      expect(cursor).toMatchObject({ status: 422, contentType: 'application/problem+json' });
      expect(cursor.body.errors).toEqual([{ field: 'cursor', message: expect.any(String) }]);
      const limit = await api(admin.apiKey, 'GET', '/v1/users?limit=0');
      expect(limit.status).toBe(422);
      expect(limit.body.errors.map((e: { field: string }) => e.field)).toEqual(['limit']);
    });
  });

  describe('POST /v1/users', () => {
    it('adds a user and shows their first API key once; only its hash is stored', async () => {
      const created = await api(admin.apiKey, 'POST', '/v1/users', {
        name: 'Carl Agent',
        email: 'Carl@Acme.example',
        role: 'agent',
      });
      expect(created).toMatchObject({
        status: 201,
        body: {
          user: {
            id: expect.any(String),
            accountId: team.account.id,
            name: 'Carl Agent',
            email: 'carl@acme.example',
            role: 'agent',
          },
          apiKey: {
            id: expect.any(String),
            name: 'default',
            key: expect.stringMatching(/^mr_/),
            lastUsedAt: null,
            revokedAt: null,
          },
        },
      });
      const { user, apiKey } = created.body;
      expect(apiKey.key.startsWith(apiKey.prefix)).toBe(true);

      // The key works at once, and from now on only its prefix is ever shown.
      expect((await api(apiKey.key, 'GET', '/v1/me')).body).toMatchObject({ id: user.id, role: 'agent' });
      for (const caller of [apiKey.key, admin.apiKey]) {
        const keys = await api(caller, 'GET', `/v1/users/${user.id}/api-keys`);
        expect(keys.status).toBe(200);
        expect(keys.body.data).toEqual([
          {
            id: apiKey.id,
            name: 'default',
            prefix: apiKey.prefix,
            createdAt: apiKey.createdAt,
            lastUsedAt: expect.any(String),
            revokedAt: null,
          },
        ]);
        expect(JSON.stringify(keys.body)).not.toContain(apiKey.key);
      }
      const stored = await stack.db.selectFrom('api_keys').selectAll().where('id', '=', apiKey.id).executeTakeFirstOrThrow();
      expect(stored.key_hash).toBe(hashSecret(apiKey.key));
      expect(JSON.stringify(stored)).not.toContain(apiKey.key);
    });

    it('answers 409 for an email already used in the account (any case), but not for one of another account', async () => {
      const duplicate = await api(admin.apiKey, 'POST', '/v1/users', {
        name: 'Alice Again',
        email: 'ALICE@acme.example',
        role: 'agent',
      });
      expect(duplicate).toMatchObject({ status: 409, contentType: 'application/problem+json' });
      expect(duplicate.body.errors).toEqual([{ field: 'email', message: expect.any(String) }]);
      // Carl is a user of ours (added above), not of the other account.
      const elsewhere = await api(other.admin.apiKey, 'POST', '/v1/users', {
        name: 'Carl Elsewhere',
        email: 'carl@acme.example',
        role: 'agent',
      });
      expect(elsewhere.status).toBe(201);
    });

    it('answers 403 to an agent and 422 naming each invalid field', async () => {
      const byAgent = await api(alice.apiKey, 'POST', '/v1/users', { name: 'Eve', email: 'eve@acme.example', role: 'admin' });
      expect(byAgent).toMatchObject({ status: 403, contentType: 'application/problem+json' });
      expect(
        await stack.db.selectFrom('users').select('id').where('email', '=', 'eve@acme.example').executeTakeFirst(),
      ).toBeUndefined();

      const invalid = await api(admin.apiKey, 'POST', '/v1/users', { name: '   ', email: 'not-an-email', role: 'owner' });
      expect(invalid).toMatchObject({ status: 422, contentType: 'application/problem+json' });
      expect([...new Set(invalid.body.errors.map((e: { field: string }) => e.field))].sort()).toEqual(['email', 'name', 'role']);
    });

    it('honours Idempotency-Key: a repeated request answers the first response and adds nobody twice', async () => {
      const key = randomUUID();
      const body = { name: 'Ida Idempotent', email: 'ida@acme.example', role: 'agent' };
      const first = await request(admin.apiKey, 'POST', '/v1/users', body, { 'idempotency-key': key });
      const again = await request(admin.apiKey, 'POST', '/v1/users', body, { 'idempotency-key': key });
      expect(first.status).toBe(201);
      expect(again.status).toBe(201);
      expect(again.headers.get('idempotent-replayed')).toBe('true');
      expect(again.body.user.id).toBe(first.body.user.id);
      const rows = await stack.db.selectFrom('users').select('id').where('email', '=', 'ida@acme.example').execute();
      expect(rows).toHaveLength(1);
      // The replay shows the same key; what is kept for it is encrypted, never the key in clear.
      expect(again.body.apiKey.key).toBe(first.body.apiKey.key);
      const kept = await stack.db
        .selectFrom('idempotency_keys')
        .select('response_body')
        .where('key', '=', key)
        .executeTakeFirstOrThrow();
      expect(kept.response_body).not.toContain(first.body.apiKey.key);
      expect(kept.response_body).not.toContain('Ida Idempotent');
    });
  });

  describe('GET and PATCH /v1/users/{userId}', () => {
    it("reads any user of the account; another account's user or none answers 404", async () => {
      expect((await api(alice.apiKey, 'GET', `/v1/users/${bob.id}`)).body).toMatchObject({ id: bob.id, name: 'Bob Agent' });
      for (const id of [other.admin.id, randomUUID()]) {
        expect(await api(admin.apiKey, 'GET', `/v1/users/${id}`)).toMatchObject({
          status: 404,
          contentType: 'application/problem+json',
        });
      }
      const malformed = await api(admin.apiKey, 'GET', '/v1/users/not-a-uuid');
      expect(malformed.status).toBe(422);
      expect(malformed.body.errors.map((e: { field: string }) => e.field)).toEqual(['userId']);
    });

    it('lets an admin rename anyone and change roles; a user renames only themselves', async () => {
      const user = await createUser(stack.db, {
        accountId: team.account.id,
        name: 'Pat',
        email: 'pat@acme.example',
        role: 'agent',
      });
      expect(await api(admin.apiKey, 'PATCH', `/v1/users/${user.id}`, { name: 'Pat Agent' })).toMatchObject({
        status: 200,
        body: { id: user.id, name: 'Pat Agent', role: 'agent' },
      });
      expect(await api(user.apiKey, 'PATCH', `/v1/users/${user.id}`, { name: '  Patricia  ' })).toMatchObject({
        status: 200,
        body: { name: 'Patricia' },
      });
      // Naming the role one already has is no change of role.
      expect((await api(user.apiKey, 'PATCH', `/v1/users/${user.id}`, { name: 'Pat', role: 'agent' })).status).toBe(200);

      expect((await api(user.apiKey, 'PATCH', `/v1/users/${alice.id}`, { name: 'Hacked' })).status).toBe(403);
      expect((await api(user.apiKey, 'PATCH', `/v1/users/${user.id}`, { role: 'admin' })).status).toBe(403);
      expect((await api(admin.apiKey, 'GET', `/v1/users/${alice.id}`)).body.name).toBe('Alice Agent');

      expect(await api(admin.apiKey, 'PATCH', `/v1/users/${user.id}`, { role: 'admin' })).toMatchObject({
        status: 200,
        body: { role: 'admin' },
      });
      // An admin may step down while another admin remains.
      expect((await api(user.apiKey, 'PATCH', `/v1/users/${user.id}`, { role: 'agent' })).body.role).toBe('agent');
    });

    it('keeps the last admin of an account: demoting them answers 409', async () => {
      const lone = await seedSupportTeam(stack.db, { name: 'Lone', emailAddress: 'help@lone.example' });
      const demote = await api(lone.admin.apiKey, 'PATCH', `/v1/users/${lone.admin.id}`, { role: 'agent' });
      expect(demote).toMatchObject({ status: 409, contentType: 'application/problem+json' });
      expect((await api(lone.admin.apiKey, 'GET', '/v1/me')).body.role).toBe('admin');

      // With a second admin, either may step down, but not both.
      const [helper] = lone.agents;
      expect((await api(lone.admin.apiKey, 'PATCH', `/v1/users/${helper!.id}`, { role: 'admin' })).status).toBe(200);
      const both = await Promise.all([
        api(lone.admin.apiKey, 'PATCH', `/v1/users/${lone.admin.id}`, { role: 'agent' }),
        api(helper!.apiKey, 'PATCH', `/v1/users/${helper!.id}`, { role: 'agent' }),
      ]);
      expect(both.map((r) => r.status).sort()).toEqual([200, 409]);
      const admins = await stack.db
        .selectFrom('users')
        .select('id')
        .where('account_id', '=', lone.account.id)
        .where('role', '=', 'admin')
        .execute();
      expect(admins).toHaveLength(1);
    });

    it("answers 404 for another account's user, 422 for an empty or unknown change", async () => {
      expect((await api(admin.apiKey, 'PATCH', `/v1/users/${other.agents[0]!.id}`, { name: 'Mine now' })).status).toBe(404);
      expect((await api(other.admin.apiKey, 'PATCH', `/v1/users/${alice.id}`, { role: 'admin' })).status).toBe(404);
      expect((await api(admin.apiKey, 'PATCH', `/v1/users/${alice.id}`, {})).status).toBe(422);
      const unknown = await api(admin.apiKey, 'PATCH', `/v1/users/${alice.id}`, { email: 'new@acme.example' });
      expect(unknown.status).toBe(422);
      expect((await api(admin.apiKey, 'PATCH', `/v1/users/${alice.id}`, { role: 'owner' })).status).toBe(422);
    });
  });

  describe('DELETE /v1/users/{userId}', () => {
    it('removes a user: 204, their keys answer 401 at once, and they are gone from the account', async () => {
      const created = await api(admin.apiKey, 'POST', '/v1/users', { name: 'Temp', email: 'temp@acme.example', role: 'agent' });
      const { user, apiKey } = created.body;
      expect((await api(apiKey.key, 'GET', '/v1/me')).status).toBe(200);
      expect((await api(admin.apiKey, 'DELETE', `/v1/users/${user.id}`)).status).toBe(204);
      expect((await api(apiKey.key, 'GET', '/v1/me')).status).toBe(401);
      expect((await api(admin.apiKey, 'GET', `/v1/users/${user.id}`)).status).toBe(404);
      expect((await api(admin.apiKey, 'DELETE', `/v1/users/${user.id}`)).status).toBe(404);
    });

    it('answers 403 to an agent, 409 for yourself, 404 for another account', async () => {
      expect(await api(alice.apiKey, 'DELETE', `/v1/users/${bob.id}`)).toMatchObject({ status: 403 });
      expect(await api(alice.apiKey, 'DELETE', `/v1/users/${alice.id}`)).toMatchObject({ status: 403 });
      expect(await api(admin.apiKey, 'DELETE', `/v1/users/${admin.id}`)).toMatchObject({
        status: 409,
        contentType: 'application/problem+json',
      });
      expect((await api(admin.apiKey, 'DELETE', `/v1/users/${other.agents[1]!.id}`)).status).toBe(404);
      expect((await api(other.admin.apiKey, 'GET', `/v1/users/${other.agents[1]!.id}`)).status).toBe(200);
    });

    it('answers 409 while open conversations are assigned to them; once they are unavailable their conversations move on', async () => {
      const dan = await createUser(stack.db, {
        accountId: team.account.id,
        name: 'Dan Agent',
        email: 'dan@acme.example',
        role: 'agent',
      });
      await stack.db.insertInto('channel_agents').values({ channel_id: team.channel.id, user_id: dan.id }).execute();
      const contactId = randomUUID();
      const conversationId = randomUUID();
      await stack.db
        .insertInto('contacts')
        .values({ id: contactId, account_id: team.account.id, email: `waiting-${contactId}@example.com` })
        .execute();
      await stack.db
        .insertInto('conversations')
        .values({
          id: conversationId,
          account_id: team.account.id,
          channel_id: team.channel.id,
          contact_id: contactId,
          subject: 'Assigned to Dan',
          status: 'open',
          stage: 'assigned',
          assignee_id: dan.id,
          updated_at: new Date(),
        })
        .execute();

      const refused = await api(admin.apiKey, 'DELETE', `/v1/users/${dan.id}`);
      expect(refused).toMatchObject({ status: 409, contentType: 'application/problem+json' });
      expect(refused.body.detail).toContain('availability');
      expect((await api(dan.apiKey, 'GET', '/v1/me')).status).toBe(200);

      // The documented way out: unavailable, so the channel's queue hands the conversation to another agent.
      expect((await api(admin.apiKey, 'PUT', `/v1/users/${dan.id}/availability`, { available: false })).status).toBe(200);
      await eventually(async () => {
        const row = await stack.db
          .selectFrom('conversations')
          .select('assignee_id')
          .where('id', '=', conversationId)
          .executeTakeFirstOrThrow();
        return row.assignee_id !== dan.id ? row : undefined;
      });
      expect((await api(admin.apiKey, 'DELETE', `/v1/users/${dan.id}`)).status).toBe(204);
      expect((await api(dan.apiKey, 'GET', '/v1/me')).status).toBe(401);
    });
  });

  describe('API keys', () => {
    it('a user creates keys for themselves: shown once, listed without the key, lastUsedAt set on use', async () => {
      const created = await api(alice.apiKey, 'POST', `/v1/users/${alice.id}/api-keys`, { name: 'CI' });
      expect(created).toMatchObject({
        status: 201,
        body: { id: expect.any(String), name: 'CI', key: expect.stringMatching(/^mr_/), lastUsedAt: null, revokedAt: null },
      });
      const { key, id, prefix } = created.body;
      const listed = () => api(alice.apiKey, 'GET', `/v1/users/${alice.id}/api-keys`);
      let entry = (await listed()).body.data.find((k: { id: string }) => k.id === id);
      expect(entry).toEqual({ id, name: 'CI', prefix, createdAt: expect.any(String), lastUsedAt: null, revokedAt: null });
      expect(JSON.stringify((await listed()).body)).not.toContain(key);

      expect((await api(key, 'GET', '/v1/me')).body.id).toBe(alice.id);
      entry = (await listed()).body.data.find((k: { id: string }) => k.id === id);
      expect(Date.now() - Date.parse(entry.lastUsedAt)).toBeLessThan(60_000);
      // Newest first: the new key before the seeded default one.
      expect((await listed()).body.data.map((k: { name: string }) => k.name)).toEqual(['CI', 'default']);
    });

    it('revoking a key makes it answer 401 at once; revoking again is still 204', async () => {
      const { body } = await api(alice.apiKey, 'POST', `/v1/users/${alice.id}/api-keys`, { name: 'Short-lived' });
      expect((await api(body.key, 'GET', '/v1/me')).status).toBe(200);
      expect((await api(alice.apiKey, 'DELETE', `/v1/users/${alice.id}/api-keys/${body.id}`)).status).toBe(204);
      const refused = await api(body.key, 'GET', '/v1/me');
      expect(refused).toMatchObject({ status: 401, contentType: 'application/problem+json' });
      expect((await api(alice.apiKey, 'DELETE', `/v1/users/${alice.id}/api-keys/${body.id}`)).status).toBe(204);
      const listed = await api(alice.apiKey, 'GET', `/v1/users/${alice.id}/api-keys`);
      expect(listed.body.data.find((k: { id: string }) => k.id === body.id).revokedAt).toEqual(expect.any(String));

      // A key can revoke itself: the very next request with it is refused.
      const self = await api(alice.apiKey, 'POST', `/v1/users/${alice.id}/api-keys`, { name: 'Self' });
      expect((await api(self.body.key, 'DELETE', `/v1/users/${alice.id}/api-keys/${self.body.id}`)).status).toBe(204);
      expect((await api(self.body.key, 'GET', '/v1/me')).status).toBe(401);
    });

    it("agents manage only their own keys (403); an admin anyone's in the account; another account 404", async () => {
      expect((await api(alice.apiKey, 'GET', `/v1/users/${bob.id}/api-keys`)).status).toBe(403);
      expect((await api(alice.apiKey, 'POST', `/v1/users/${bob.id}/api-keys`, { name: 'Sneaky' })).status).toBe(403);
      const bobKeys = await api(admin.apiKey, 'GET', `/v1/users/${bob.id}/api-keys`);
      expect(bobKeys.status).toBe(200);
      const bobDefault = bobKeys.body.data[0].id;
      expect((await api(alice.apiKey, 'DELETE', `/v1/users/${bob.id}/api-keys/${bobDefault}`)).status).toBe(403);

      // The admin gives Bob a new key, then revokes his old one.
      const issued = await api(admin.apiKey, 'POST', `/v1/users/${bob.id}/api-keys`, { name: 'Issued by admin' });
      expect(issued.status).toBe(201);
      expect((await api(issued.body.key, 'GET', '/v1/me')).body.id).toBe(bob.id);
      expect((await api(admin.apiKey, 'DELETE', `/v1/users/${bob.id}/api-keys/${bobDefault}`)).status).toBe(204);
      expect((await api(bob.apiKey, 'GET', '/v1/me')).status).toBe(401);
      bob = { id: bob.id, apiKey: issued.body.key };

      // Another account: every route answers 404, as for a user that does not exist.
      const outsider = other.admin.apiKey;
      expect((await api(outsider, 'GET', `/v1/users/${alice.id}/api-keys`)).status).toBe(404);
      expect((await api(outsider, 'POST', `/v1/users/${alice.id}/api-keys`, { name: 'Mine' })).status).toBe(404);
      expect((await api(outsider, 'DELETE', `/v1/users/${bob.id}/api-keys/${issued.body.id}`)).status).toBe(404);
      expect((await api(bob.apiKey, 'GET', '/v1/me')).status).toBe(200);
    });

    it('answers 404 for a key of another user and 422 for an invalid name', async () => {
      const aliceKeys = await api(alice.apiKey, 'GET', `/v1/users/${alice.id}/api-keys`);
      const aliceKey = aliceKeys.body.data[0].id;
      // Bob's user with Alice's key id: no such key of Bob's.
      expect((await api(admin.apiKey, 'DELETE', `/v1/users/${bob.id}/api-keys/${aliceKey}`)).status).toBe(404);
      expect((await api(admin.apiKey, 'DELETE', `/v1/users/${bob.id}/api-keys/${randomUUID()}`)).status).toBe(404);
      const invalid = await api(alice.apiKey, 'POST', `/v1/users/${alice.id}/api-keys`, { name: '' });
      expect(invalid.status).toBe(422);
      expect(invalid.body.errors.map((e: { field: string }) => e.field)).toContain('name');
    });
  });
});
