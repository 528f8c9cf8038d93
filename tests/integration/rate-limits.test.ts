import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../src/api/app.js';
import { createChannel } from '../../src/db/seed.js';
import { signCsatToken } from '../../src/domain/csat-token.js';
import { createIngest } from '../../src/ingest/ingest.js';
import { createLogger } from '../../src/logger.js';
import { customerMail } from '../support/mail.js';
import { seedSupportTeam, startTestStack, TEST_SECRET_KEY, type TestStack } from '../support/stack.js';

// The limits through the real app (src/api/rate-limit.ts): a channel, a survey visitor and an API key each
// get their own bucket; over it they are answered 429 with Retry-After, and nobody else notices.
// The limiters' clock is the test's: "a minute later" is a number, not a wait.

describe('rate limits', () => {
  const clock = { ms: Date.UTC(2030, 0, 7, 9, 0, 0) };
  let stack: TestStack;
  let team: Awaited<ReturnType<typeof seedSupportTeam>>;

  beforeAll(async () => {
    stack = await startTestStack({
      rateLimits: {
        RATE_LIMIT_INBOUND_PER_MINUTE: 5,
        RATE_LIMIT_API_KEY_PER_MINUTE: 10,
        RATE_LIMIT_SURVEY_PER_MINUTE: 3,
        clock: () => clock.ms,
      },
    });
    team = await seedSupportTeam(stack.db, { name: 'Acme Support', emailAddress: 'support@acme.example' });
  });

  afterAll(async () => {
    await stack?.stop();
  });

  async function post(channel: { id: string; forwarderSecret: string }, messageId: string) {
    const response = await fetch(`${stack.api.url}/v1/channels/${channel.id}/inbound`, {
      method: 'POST',
      headers: { authorization: `Bearer ${channel.forwarderSecret}`, 'content-type': 'message/rfc822' },
      body: customerMail({ messageId, subject: `Mail ${messageId}` }),
    });
    return { status: response.status, headers: response.headers, body: (await response.json()) as any };
  }

  async function call(apiKey: string, path: string) {
    const response = await fetch(`${stack.api.url}${path}`, { headers: { authorization: `Bearer ${apiKey}` } });
    return { status: response.status, headers: response.headers, body: (await response.json()) as any };
  }

  it('answers a channel over its limit 429 with Retry-After, leaves other channels alone, and loses no mail', async () => {
    const other = await createChannel(stack.db, {
      accountId: team.account.id,
      name: 'Billing',
      emailAddress: 'billing@acme.example',
    });
    const ids = Array.from({ length: 6 }, (_, n) => `burst-${n}-${randomUUID()}@example.com`);

    // Strangers without the secret use up nothing of the channel's limit.
    for (let n = 0; n < 20; n++) {
      expect((await post({ id: team.channel.id, forwarderSecret: 'not-the-secret' }, `x${n}@example.com`)).status).toBe(401);
    }
    for (const id of ids.slice(0, 5)) expect((await post(team.channel, id)).status).toBe(202);
    const refused = await post(team.channel, ids[5]!);
    expect(refused.status).toBe(429);
    expect(refused.headers.get('content-type')).toBe('application/problem+json');
    // 5 a minute: one every 12 s.
    expect(refused.headers.get('retry-after')).toBe('12');
    expect(refused.body).toMatchObject({
      type: 'https://mailroom.dev/problems/rate-limited',
      status: 429,
      detail: expect.stringContaining('at most 5 mails a minute to this channel; retry after 12 s'),
    });
    expect((await post(other, `other-${randomUUID()}@example.com`)).status).toBe(202);

    clock.ms += 12_000;
    const retried = await post(team.channel, ids[5]!);
    expect(retried.status).toBe(202);
    expect(retried.body.duplicate).toBe(false);

    const stored = await stack.db
      .selectFrom('inbound_messages')
      .select('message_id')
      .where('channel_id', '=', team.channel.id)
      .execute();
    expect(stored.map((row) => row.message_id).sort()).toEqual(ids.map((id) => `<${id}>`).sort());
    expect(new Set(stored.map((row) => row.message_id)).size).toBe(stored.length);
  });

  it('answers an API key over its limit 429 before any work, while another user’s key still works', async () => {
    const [alice] = team.agents;
    const lastUsed = async () =>
      (
        await stack.db
          .selectFrom('api_keys')
          .select('last_used_at')
          .where('user_id', '=', team.admin.id)
          .executeTakeFirstOrThrow()
      ).last_used_at;
    for (let n = 0; n < 10; n++) expect((await call(team.admin.apiKey, '/v1/channels')).status).toBe(200);
    expect(await lastUsed()).not.toBeNull();
    // A key never used: a request that got as far as looking the key up would write its last_used_at.
    await stack.db.updateTable('api_keys').set({ last_used_at: null }).where('user_id', '=', team.admin.id).execute();
    const refused = await call(team.admin.apiKey, '/v1/channels');
    expect(refused.status).toBe(429);
    // 10 a minute: one every 6 s.
    expect(refused.headers.get('retry-after')).toBe('6');
    expect(refused.headers.get('content-type')).toBe('application/problem+json');
    expect(refused.body.detail).toContain('at most 10 requests a minute with this API key; retry after 6 s');
    expect(await lastUsed()).toBeNull();

    expect((await call(alice!.apiKey, '/v1/channels')).status).toBe(200);
    clock.ms += 6_000;
    expect((await call(team.admin.apiKey, '/v1/channels')).status).toBe(200);
    expect((await call(team.admin.apiKey, '/v1/channels')).status).toBe(429);
  });

  describe('the survey pages, per client address', () => {
    let token: string;
    const surveyApp = (trustedProxies: string[]) =>
      createApp({
        db: stack.db,
        temporal: stack.temporal,
        ingest: createIngest({ db: stack.db, temporal: stack.temporal, taskQueue: stack.taskQueue }),
        taskQueue: stack.taskQueue,
        config: {
          SECRET_KEY: TEST_SECRET_KEY,
          MAX_INBOUND_BYTES: 1024 * 1024,
          PUBLIC_URL: 'http://unused',
          INBOUND_DOMAIN: 'inbound.mailroom.test',
          RATE_LIMIT_SURVEY_PER_MINUTE: 3,
          TRUSTED_PROXIES: trustedProxies,
        },
        logger: createLogger('silent'),
        clock: () => clock.ms,
      });
    // What @hono/node-server hands the app: the connection's socket.
    const visit = (app: ReturnType<typeof surveyApp>, remoteAddress: string, headers: Record<string, string> = {}) =>
      app.request(`/csat/${token}`, { headers }, { incoming: { socket: { remoteAddress } } });
    const submit = (app: ReturnType<typeof surveyApp>, remoteAddress: string) =>
      app.request(
        `/csat/${token}`,
        { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'rating=5' },
        { incoming: { socket: { remoteAddress } } },
      );

    beforeAll(async () => {
      const channel = await createChannel(stack.db, {
        accountId: team.account.id,
        name: 'Survey',
        emailAddress: 'survey@acme.example',
      });
      const delivered = await post(channel, `survey-${randomUUID()}@example.com`);
      const expiresAt = new Date(clock.ms + 30 * 24 * 3600 * 1000);
      const survey = await stack.db
        .insertInto('csat_surveys')
        .values({ id: randomUUID(), conversation_id: delivered.body.conversationId, expires_at: expiresAt })
        .returning('id')
        .executeTakeFirstOrThrow();
      token = signCsatToken({ surveyId: survey.id, expiresAt: Math.floor(expiresAt.getTime() / 1000) }, TEST_SECRET_KEY);
    });

    it('answers an address that hammers the page with a small HTML 429 and Retry-After; another address still gets its page', async () => {
      const app = surveyApp([]);
      for (let n = 0; n < 3; n++) expect((await visit(app, '192.0.2.7')).status).toBe(200);
      const refused = await visit(app, '192.0.2.7');
      expect(refused.status).toBe(429);
      expect(refused.headers.get('retry-after')).toBe('20');
      expect(refused.headers.get('content-type')).toMatch(/^text\/html/);
      expect(await refused.text()).toContain('try again in 20 seconds');
      // The submit counts against the same address, and is refused before its form is read.
      expect((await submit(app, '192.0.2.7')).status).toBe(429);
      // The same address written as IPv4-mapped IPv6 is the same client.
      expect((await visit(app, '::ffff:192.0.2.7')).status).toBe(429);

      const other = await visit(app, '198.51.100.9');
      expect(other.status).toBe(200);
      expect(await other.text()).toContain('How satisfied are you');

      clock.ms += 20_000;
      expect((await visit(app, '192.0.2.7')).status).toBe(200);
    });

    it('never reads X-Forwarded-For without TRUSTED_PROXIES: a spoofed header escapes nothing', async () => {
      const app = surveyApp([]);
      for (let n = 0; n < 3; n++) await visit(app, '192.0.2.8', { 'x-forwarded-for': `203.0.113.${n}` });
      expect((await visit(app, '192.0.2.8', { 'x-forwarded-for': '203.0.113.99' })).status).toBe(429);
    });

    it('behind a trusted proxy, counts the client the proxy names, not what the client wrote before it', async () => {
      const app = surveyApp(['10.0.0.0/8']);
      const viaProxy = (forwardedFor: string) => visit(app, '10.0.0.2', { 'x-forwarded-for': forwardedFor });
      for (let n = 0; n < 3; n++) expect((await viaProxy('203.0.113.5')).status).toBe(200);
      expect((await viaProxy('203.0.113.5')).status).toBe(429);
      // A forged address left of the one the proxy appended changes nothing, nor a second proxy hop.
      expect((await viaProxy('192.0.2.200, 203.0.113.5')).status).toBe(429);
      expect((await viaProxy('203.0.113.5, 10.1.2.3')).status).toBe(429);
      expect((await viaProxy('203.0.113.6')).status).toBe(200);
      // A client that reaches the API directly from elsewhere is not trusted to name itself.
      expect((await visit(app, '192.0.2.9', { 'x-forwarded-for': '203.0.113.7' })).status).toBe(200);
    });

    it('counts an IPv6 client by its /64', async () => {
      const app = surveyApp([]);
      for (let n = 1; n <= 3; n++) expect((await visit(app, `2001:db8:1:2::${n}`)).status).toBe(200);
      expect((await visit(app, '2001:db8:1:2:ffff:ffff:ffff:ffff')).status).toBe(429);
      expect((await visit(app, '2001:db8:1:3::1')).status).toBe(200);
    });
  });
});
