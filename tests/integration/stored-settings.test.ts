import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callApi, postMail } from '../support/http.js';
import { customerMail } from '../support/mail.js';
import { seedSupportTeam, startTestStack, type TestStack } from '../support/stack.js';

// What a tenant's admin configures is kept safe and within bounds, through the real API and PostgreSQL.
describe('channel settings as stored', () => {
  let stack: TestStack;
  let team: Awaited<ReturnType<typeof seedSupportTeam>>;
  const admin = (method: string, path: string, body?: unknown) => callApi(stack.api.url, team.admin.apiKey, method, path, body);

  beforeAll(async () => {
    stack = await startTestStack();
    team = await seedSupportTeam(stack.db, { name: 'Acme Support', emailAddress: 'support@acme.example' });
  });

  afterAll(async () => {
    await stack?.stop();
  });

  it('keeps forwarder secrets as their hash only, like API keys: a database dump posts no mail', async () => {
    const created = await admin('POST', '/v1/channels', { name: 'Sales', emailAddress: 'sales@acme.example' });
    expect(created.status).toBe(201);
    const secret: string = created.body.forwarderSecret;
    const row = await stack.db.selectFrom('channels').selectAll().where('id', '=', created.body.id).executeTakeFirstOrThrow();
    expect(JSON.stringify(row)).not.toContain(secret);
    expect(row.forwarder_secret_hash).toMatch(/^[0-9a-f]{64}$/);

    const channel = { id: created.body.id as string, forwarderSecret: secret };
    expect((await postMail(stack.api.url, channel, customerMail({ messageId: 'hash-1@example.com' }))).status).toBe(202);
    const withHash = { id: channel.id, forwarderSecret: row.forwarder_secret_hash };
    expect((await postMail(stack.api.url, withHash, customerMail({ messageId: 'hash-2@example.com' }))).status).toBe(401);
    // The migration hashed the secrets channels had with PostgreSQL's sha256: the same hash.
    const { rows } = await sql<{ hash: string }>`select encode(sha256(convert_to(${secret}, 'UTF8')), 'hex') as hash`.execute(
      stack.db,
    );
    expect(rows[0]!.hash).toBe(row.forwarder_secret_hash);
  });

  it('stores every number the schema allows (a confidence threshold of 2.2250738585072014e-308 is no 500)', async () => {
    for (const confidenceThreshold of [2.2250738585072014e-308, 5e-324, 1 - Number.EPSILON]) {
      const patched = await admin('PATCH', `/v1/channels/${team.channel.id}`, { ai: { confidenceThreshold } });
      expect(patched.status).toBe(200);
      expect(patched.body.ai.confidenceThreshold).toBe(confidenceThreshold);
    }
  });

  it('bounds the SLA target at 30 days of business time', async () => {
    const path = `/v1/channels/${team.channel.id}`;
    expect((await admin('PATCH', path, { sla: { firstResponseSeconds: 30 * 86_400 } })).status).toBe(200);
    const tooLong = await admin('PATCH', path, { sla: { firstResponseSeconds: 30 * 86_400 + 1 } });
    expect(tooLong.status).toBe(422);
    expect(tooLong.body.errors[0].field).toBe('sla.firstResponseSeconds');
  });
});
