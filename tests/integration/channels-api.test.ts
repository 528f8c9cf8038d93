import { randomUUID } from 'node:crypto';
import { createServer, type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAccount, createUser } from '../../src/db/seed.js';
import { decryptCredential } from '../../src/security/credentials.js';
import { mailboxWorkflowId } from '../../src/workflows/ids.js';
import { callApi, eventually, postMail } from '../support/http.js';
import { seedSupportTeam, startTestStack, TEST_SECRET_KEY, type TestStack } from '../support/stack.js';

// The channel resource through the HTTP API on the real stack: settings, access, removal, the
// forwarder secret, the forwarding address (A8) and the channel's own SMTP server.

const INBOUND_DOMAIN = 'inbound.mailroom.test';

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('channels API', () => {
  let stack: TestStack;
  let team: Awaited<ReturnType<typeof seedSupportTeam>>;
  let alice: { id: string; apiKey: string };
  let stranger: { id: string; apiKey: string };
  const tag = randomUUID().slice(0, 8);
  let mailCount = 0;

  const api = (apiKey: string, method: string, path: string, body?: unknown) =>
    callApi(stack.api.url, apiKey, method, path, body);
  const admin = (method: string, path: string, body?: unknown) => api(team.admin.apiKey, method, path, body);

  /** A new channel through the API, with the forwarder secret it answers. */
  async function newChannel(body: Record<string, unknown> = {}) {
    const created = await admin('POST', '/v1/channels', {
      name: `Channel ${++mailCount}`,
      emailAddress: `c${mailCount}@acme.example`,
      ...body,
    });
    expect(created.status).toBe(201);
    return created.body as { id: string; forwarderSecret: string } & Record<string, any>;
  }

  function mail(subject: string, to = 'support@acme.example') {
    const n = ++mailCount;
    return [
      `From: Customer ${n} <customer-${n}.${tag}@example.com>`,
      `To: ${to}`,
      `Subject: ${subject}`,
      `Message-ID: <mail-${n}.${tag}@mail.example.com>`,
      'Content-Type: text/plain; charset=utf-8',
      '',
      'Hello, I have a question.',
      '',
    ].join('\r\n');
  }

  const stageOf = (conversationId: string) =>
    stack.db
      .selectFrom('conversations')
      .select(['stage', 'assignee_id'])
      .where('id', '=', conversationId)
      .executeTakeFirstOrThrow();

  const problemFields = (body: any) => (body.errors ?? []).map((e: { field: string }) => e.field);

  beforeAll(async () => {
    stack = await startTestStack();
    team = await seedSupportTeam(stack.db, { name: 'Acme Support', emailAddress: 'support@acme.example' });
    alice = team.agents[0]!;
    const otherAccount = await createAccount(stack.db, 'Globex');
    stranger = await createUser(stack.db, {
      accountId: otherAccount.id,
      name: 'Gus Globex',
      email: 'gus@globex.example',
      role: 'admin',
    });
  });

  afterAll(async () => {
    await stack?.stop();
  });

  describe('create, read, list', () => {
    it('creates a channel with defaults and given settings; the secret is shown once', async () => {
      const created = await admin('POST', '/v1/channels', {
        name: 'Acme Billing',
        emailAddress: '  Billing@ACME.example ',
        greeting: { enabled: true, text: 'Thanks, we are on it.' },
        csat: { delaySeconds: 120 },
        languages: ['en', 'fr'],
      });
      expect(created.status).toBe(201);
      const channel = created.body;
      expect(channel).toMatchObject({
        name: 'Acme Billing',
        emailAddress: 'billing@acme.example',
        enabled: true,
        forwardingAddress: null,
        greeting: { enabled: true, text: 'Thanks, we are on it.' },
        csat: { enabled: false, delaySeconds: 120, linkValiditySeconds: 7 * 86_400 },
        businessHours: {
          enabled: false,
          timeZone: 'UTC',
          weekly: { monday: [], tuesday: [], wednesday: [], thursday: [], friday: [], saturday: [], sunday: [] },
          closedDates: [],
          outOfOfficeText: null,
        },
        outgoing: { defaultSubject: null, fromName: null },
        assignment: { strategy: 'round_robin', defaultAgentCapacity: null },
        sla: { firstResponseSeconds: null },
        ai: { confidenceThreshold: 0.6, maxTurns: 3, answerOutsideBusinessHours: true },
        languages: ['en', 'fr'],
        closeAfterSeconds: 7 * 86_400,
        limits: {
          maxInboundBytes: 25 * 1024 * 1024,
          maxAttachmentBytes: expect.any(Number),
          automaticMailLimitPerHour: expect.any(Number),
        },
      });
      expect(channel.forwarderSecret).toMatch(/^[\w-]{20,}$/);

      const read = await admin('GET', `/v1/channels/${channel.id}`);
      expect(read.status).toBe(200);
      const { forwarderSecret, ...withoutSecret } = channel;
      expect(read.body).toEqual(withoutSecret);
      expect(JSON.stringify(read.body)).not.toContain(forwarderSecret);

      // The secret works for the forwarder at once.
      expect(
        (await postMail(stack.api.url, { id: channel.id, forwarderSecret }, mail('First', 'billing@acme.example'))).status,
      ).toBe(202);
    });

    it('answers a repeated create with the same Idempotency-Key once', async () => {
      const key = randomUUID();
      const send = () =>
        fetch(`${stack.api.url}/v1/channels`, {
          method: 'POST',
          headers: { authorization: `Bearer ${team.admin.apiKey}`, 'content-type': 'application/json', 'idempotency-key': key },
          body: JSON.stringify({ name: 'Retried', emailAddress: 'retried@acme.example' }),
        });
      const first = await send();
      const second = await send();
      expect(first.status).toBe(201);
      expect(second.status).toBe(201);
      expect(second.headers.get('idempotent-replayed')).toBe('true');
      const [a, b] = [(await first.json()) as { id: string }, (await second.json()) as { id: string }];
      expect(b.id).toBe(a.id);
      const rows = await stack.db.selectFrom('channels').select('id').where('name', '=', 'Retried').execute();
      expect(rows).toHaveLength(1);
    });

    it.each([
      ['no email address', { name: 'X' }, 'emailAddress'],
      ['an invalid email address', { name: 'X', emailAddress: 'not-an-address' }, 'emailAddress'],
      ['an empty name', { name: '  ', emailAddress: 'x@acme.example' }, 'name'],
      ['a NUL in the name', { name: 'a\u0000b', emailAddress: 'x@acme.example' }, 'name'],
      [
        'an invalid settings group',
        { name: 'X', emailAddress: 'x@acme.example', csat: { delaySeconds: -1 } },
        'csat.delaySeconds',
      ],
      [
        'invalid business hours',
        { name: 'X', emailAddress: 'x@acme.example', businessHours: { timeZone: 'Mars/Olympus' } },
        'businessHours.timeZone',
      ],
    ])('refuses a create with %s: 422 naming the field', async (_case, body, field) => {
      const response = await admin('POST', '/v1/channels', body);
      expect(response.status).toBe(422);
      expect(response.contentType).toContain('application/problem+json');
      expect(problemFields(response.body)).toContain(field);
    });

    it('refuses a create with an unknown field, naming it', async () => {
      const response = await admin('POST', '/v1/channels', { name: 'X', emailAddress: 'x@acme.example', colour: 'blue' });
      expect(response).toMatchObject({ status: 422, contentType: 'application/problem+json' });
      expect(JSON.stringify(response.body.errors)).toContain('colour');
    });

    it('lets only admins create channels', async () => {
      const response = await api(alice.apiKey, 'POST', '/v1/channels', { name: 'Mine', emailAddress: 'mine@acme.example' });
      expect(response.status).toBe(403);
      expect(response.contentType).toContain('application/problem+json');
    });

    it('pages through the account’s channels with limit and nextCursor, newest first', async () => {
      await newChannel();
      await newChannel();
      const all = await stack.db
        .selectFrom('channels')
        .select('id')
        .where('account_id', '=', team.account.id)
        .where('deleted_at', 'is', null)
        .orderBy('created_at', 'desc')
        .orderBy('id', 'desc')
        .execute();
      const seen: string[] = [];
      let cursor: string | null = null;
      for (let pages = 0; pages < 50; pages++) {
        const query: string = cursor ? `?limit=1&cursor=${encodeURIComponent(cursor)}` : '?limit=1';
        const page = await admin('GET', `/v1/channels${query}`);
        expect(page.status).toBe(200);
        expect(page.body.data.length).toBeLessThanOrEqual(1);
        seen.push(...page.body.data.map((c: { id: string }) => c.id));
        cursor = page.body.nextCursor;
        if (!cursor) break;
      }
      expect(seen).toEqual(all.map((row) => row.id));
      expect(all.length).toBeGreaterThanOrEqual(3);

      const bad = await admin('GET', '/v1/channels?cursor=nonsense');
      expect(bad.status).toBe(422);
      expect(problemFields(bad.body)).toEqual(['cursor']);
      expect((await admin('GET', '/v1/channels?limit=0')).status).toBe(422);
    });

    it('shows an agent only their channels, and another account nothing of ours', async () => {
      const notMine = await newChannel();
      const agentList = await api(alice.apiKey, 'GET', '/v1/channels?limit=100');
      expect(agentList.status).toBe(200);
      expect(agentList.body.data.map((c: { id: string }) => c.id)).toEqual([team.channel.id]);
      expect((await api(alice.apiKey, 'GET', `/v1/channels/${team.channel.id}`)).status).toBe(200);
      expect((await api(alice.apiKey, 'GET', `/v1/channels/${notMine.id}`)).status).toBe(403);

      const strangerList = await api(stranger.apiKey, 'GET', '/v1/channels?limit=100');
      expect(strangerList).toMatchObject({ status: 200, body: { data: [], nextCursor: null } });
      const strangerRead = await api(stranger.apiKey, 'GET', `/v1/channels/${team.channel.id}`);
      expect(strangerRead.status).toBe(404);
      expect(strangerRead.contentType).toContain('application/problem+json');
      expect((await api(stranger.apiKey, 'GET', `/v1/channels/${randomUUID()}`)).status).toBe(404);
      expect((await admin('GET', '/v1/channels/not-a-uuid')).status).toBe(422);
    });
  });

  describe('PATCH', () => {
    it('changes each settings group, only the fields given', async () => {
      const channel = await newChannel({ csat: { enabled: true, delaySeconds: 60 } });
      const changes: Array<[Record<string, unknown>, Record<string, unknown>]> = [
        [
          { name: 'Renamed', emailAddress: 'Renamed@Acme.example' },
          { name: 'Renamed', emailAddress: 'renamed@acme.example' },
        ],
        [{ greeting: { enabled: true } }, { greeting: { enabled: true, text: null } }],
        [{ greeting: { text: 'Hello there' } }, { greeting: { enabled: true, text: 'Hello there' } }],
        [{ csat: { linkValiditySeconds: 3600 } }, { csat: { enabled: true, delaySeconds: 60, linkValiditySeconds: 3600 } }],
        [
          {
            businessHours: {
              enabled: true,
              timeZone: 'Europe/Berlin',
              weekly: { monday: [{ start: '09:00', end: '17:00' }], friday: [{ start: '22:00', end: '02:00' }] },
              closedDates: ['2026-12-25'],
              outOfOfficeText: 'We are out.',
            },
          },
          {
            businessHours: {
              enabled: true,
              timeZone: 'Europe/Berlin',
              weekly: {
                monday: [{ start: '09:00', end: '17:00' }],
                tuesday: [],
                wednesday: [],
                thursday: [],
                friday: [{ start: '22:00', end: '02:00' }],
                saturday: [],
                sunday: [],
              },
              closedDates: ['2026-12-25'],
              outOfOfficeText: 'We are out.',
            },
          },
        ],
        [
          { businessHours: { timeZone: 'America/New_York' } },
          {
            businessHours: {
              enabled: true,
              timeZone: 'America/New_York',
              closedDates: ['2026-12-25'],
              outOfOfficeText: 'We are out.',
            },
          },
        ],
        [
          { outgoing: { defaultSubject: 'Your request of {{conversation.started_at}}', fromName: '{{agent.name}} at Acme' } },
          { outgoing: { defaultSubject: 'Your request of {{conversation.started_at}}', fromName: '{{agent.name}} at Acme' } },
        ],
        [
          { outgoing: { fromName: null } },
          { outgoing: { defaultSubject: 'Your request of {{conversation.started_at}}', fromName: null } },
        ],
        [
          { assignment: { strategy: 'load', defaultAgentCapacity: 5 } },
          { assignment: { strategy: 'load', defaultAgentCapacity: 5 } },
        ],
        [{ sla: { firstResponseSeconds: 3600 } }, { sla: { firstResponseSeconds: 3600 } }],
        [
          { ai: { confidenceThreshold: 0.25, maxTurns: 5 } },
          { ai: { confidenceThreshold: 0.25, maxTurns: 5, answerOutsideBusinessHours: true } },
        ],
        [
          { ai: { answerOutsideBusinessHours: false } },
          { ai: { confidenceThreshold: 0.25, maxTurns: 5, answerOutsideBusinessHours: false } },
        ],
        [{ languages: ['de', 'en', 'de'] }, { languages: ['de', 'en'] }],
        [{ closeAfterSeconds: 0 }, { closeAfterSeconds: 0 }],
        [
          { limits: { maxAttachmentBytes: 1000, automaticMailLimitPerHour: 2 } },
          { limits: { maxInboundBytes: 25 * 1024 * 1024, maxAttachmentBytes: 1000, automaticMailLimitPerHour: 2 } },
        ],
        [{ enabled: false }, { enabled: false }],
      ];
      for (const [patch, expected] of changes) {
        const response = await admin('PATCH', `/v1/channels/${channel.id}`, patch);
        expect(response.status, JSON.stringify(patch)).toBe(200);
        expect(response.body).toMatchObject(expected);
        expect((await admin('GET', `/v1/channels/${channel.id}`)).body).toEqual(response.body);
      }
      // What the workflows read: the business hours as src/domain/business-hours.ts expects them.
      const row = await stack.db.selectFrom('channels').selectAll().where('id', '=', channel.id).executeTakeFirstOrThrow();
      expect(row.business_hours).toEqual({
        timeZone: 'America/New_York',
        weekly: { monday: [{ start: '09:00', end: '17:00' }], friday: [{ start: '22:00', end: '02:00' }] },
        closedDates: ['2026-12-25'],
      });
      expect(row).toMatchObject({
        business_hours_enabled: true,
        out_of_office_text: 'We are out.',
        greeting_text: 'Hello there',
      });

      // A disabled channel takes no mail.
      const refused = await postMail(stack.api.url, channel, mail('While disabled', 'renamed@acme.example'));
      expect(refused.status).toBe(409);
    });

    it('refuses an empty body and unknown fields, naming them, and changes nothing', async () => {
      const before = await admin('GET', `/v1/channels/${team.channel.id}`);
      const empty = await admin('PATCH', `/v1/channels/${team.channel.id}`, {});
      expect(empty).toMatchObject({ status: 422, contentType: 'application/problem+json' });
      expect(empty.body.errors).toEqual([{ field: 'json', message: expect.stringMatching(/^send at least one of: name, /) }]);
      for (const [patch, field, named] of [
        [{ nmae: 'Typo' }, 'json', 'nmae'],
        [{ name: 'Renamed', id: randomUUID() }, 'json', 'id'],
        [{ greeting: { enabeld: true } }, 'greeting', 'enabeld'],
        [{ businessHours: { timezone: 'Europe/Berlin' } }, 'businessHours', 'timezone'],
      ] as const) {
        const response = await admin('PATCH', `/v1/channels/${team.channel.id}`, patch);
        expect(response.status, JSON.stringify(patch)).toBe(422);
        expect(response.body.errors).toContainEqual({ field, message: expect.stringContaining(named) });
      }
      expect((await admin('GET', `/v1/channels/${team.channel.id}`)).body).toEqual(before.body);
      // The document says so too.
      const document = (await (await fetch(`${stack.api.url}/openapi.json`)).json()) as any;
      expect(document.components.schemas.ChannelPatchInput).toMatchObject({ minProperties: 1, additionalProperties: false });
      expect(document.components.schemas.ChannelCreateInput).toMatchObject({ additionalProperties: false });
    });

    it.each([
      ['an unknown time zone', { businessHours: { timeZone: 'Europe/Atlantis' } }, 'businessHours.timeZone'],
      [
        'a malformed time',
        { businessHours: { weekly: { monday: [{ start: '9:00', end: '17:00' }] } } },
        'businessHours.weekly.monday.0.start',
      ],
      [
        'an empty interval',
        { businessHours: { weekly: { monday: [{ start: '09:00', end: '09:00' }] } } },
        'businessHours.weekly.monday.0.end',
      ],
      [
        'an unknown weekday',
        { businessHours: { weekly: { funday: [{ start: '09:00', end: '17:00' }] } } },
        'businessHours.weekly',
      ],
      ['hours enabled without any interval', { businessHours: { enabled: true } }, 'businessHours.weekly'],
      ['an impossible closed date', { businessHours: { closedDates: ['2026-02-30'] } }, 'businessHours.closedDates.0'],
      ['an unknown subject token', { outgoing: { defaultSubject: 'Hi {{customer.name}}' } }, 'outgoing.defaultSubject'],
      ['an unknown From name token', { outgoing: { fromName: '{{agent.email}}' } }, 'outgoing.fromName'],
      ['a From name over two lines', { outgoing: { fromName: 'Acme\r\nBcc: x@evil.example' } }, 'outgoing.fromName'],
      ['an unknown strategy', { assignment: { strategy: 'random' } }, 'assignment.strategy'],
      ['a capacity of 0', { assignment: { defaultAgentCapacity: 0 } }, 'assignment.defaultAgentCapacity'],
      ['a zero SLA', { sla: { firstResponseSeconds: 0 } }, 'sla.firstResponseSeconds'],
      ['a threshold above 1', { ai: { confidenceThreshold: 1.5 } }, 'ai.confidenceThreshold'],
      ['zero AI turns', { ai: { maxTurns: 0 } }, 'ai.maxTurns'],
      ['an upper-case language', { languages: ['EN'] }, 'languages.0'],
      ['no language', { languages: [] }, 'languages'],
      ['a negative quiet period', { closeAfterSeconds: -1 }, 'closeAfterSeconds'],
      ['a number beyond the column', { csat: { delaySeconds: 1e12 } }, 'csat.delaySeconds'],
      ['a zero link validity', { csat: { linkValiditySeconds: 0 } }, 'csat.linkValiditySeconds'],
      ['a wrong type', { greeting: { enabled: 'yes' } }, 'greeting.enabled'],
      ['an invalid email address', { emailAddress: 'nope' }, 'emailAddress'],
    ])('refuses %s: 422 naming the field, nothing changed', async (_case, patch, field) => {
      const before = await admin('GET', `/v1/channels/${team.channel.id}`);
      const response = await admin('PATCH', `/v1/channels/${team.channel.id}`, patch);
      expect(response.status).toBe(422);
      expect(response.contentType).toContain('application/problem+json');
      expect(problemFields(response.body)).toContain(field);
      expect((await admin('GET', `/v1/channels/${team.channel.id}`)).body).toEqual(before.body);
    });

    it('is for admins: an agent of the channel gets 403, another account 404', async () => {
      const agentPatch = await api(alice.apiKey, 'PATCH', `/v1/channels/${team.channel.id}`, { name: 'Mine now' });
      expect(agentPatch.status).toBe(403);
      expect(agentPatch.contentType).toContain('application/problem+json');
      expect((await api(stranger.apiKey, 'PATCH', `/v1/channels/${team.channel.id}`, { name: 'Ours now' })).status).toBe(404);
      expect((await admin('GET', `/v1/channels/${team.channel.id}`)).body.name).toBe('Acme Support');
    });

    it('serves queued conversations at once when the default capacity rises', async () => {
      const channel = await newChannel({ assignment: { defaultAgentCapacity: 1 } });
      // {} adds the agent with the channel's default capacity; an unknown field is refused.
      const typo = await admin('PUT', `/v1/channels/${channel.id}/agents/${alice.id}`, { capacty: 3 });
      expect(typo).toMatchObject({ status: 422, contentType: 'application/problem+json' });
      expect(JSON.stringify(typo.body.errors)).toContain('capacty');
      expect((await admin('GET', `/v1/channels/${channel.id}/agents`)).body.data).toEqual([]);
      expect((await admin('PUT', `/v1/channels/${channel.id}/agents/${alice.id}`, {})).status).toBe(200);
      const first = await postMail(stack.api.url, channel, mail('Capacity one', channel.emailAddress));
      const second = await postMail(stack.api.url, channel, mail('Capacity two', channel.emailAddress));
      expect([first.status, second.status]).toEqual([202, 202]);
      const ids = [first.body.conversationId as string, second.body.conversationId as string];
      await eventually(async () => {
        const stages = (await Promise.all(ids.map(stageOf))).map((c) => c.stage).sort();
        return stages.join() === 'assigned,queued' ? true : undefined;
      });
      const raised = await admin('PATCH', `/v1/channels/${channel.id}`, { assignment: { defaultAgentCapacity: 2 } });
      expect(raised.status).toBe(200);
      await eventually(async () => {
        const conversations = await Promise.all(ids.map(stageOf));
        return conversations.every((c) => c.stage === 'assigned' && c.assignee_id === alice.id) ? true : undefined;
      });
    });

    it('applies to a running conversation at its next step: CSAT enabled after the mail came in', async () => {
      const posted = await postMail(stack.api.url, team.channel, mail('Survey later'));
      expect(posted.status).toBe(202);
      const conversationId = posted.body.conversationId as string;
      await eventually(async () => ((await stageOf(conversationId)).stage === 'assigned' ? true : undefined));
      const patched = await admin('PATCH', `/v1/channels/${team.channel.id}`, { csat: { enabled: true, delaySeconds: 0 } });
      expect(patched.status).toBe(200);
      expect((await admin('POST', `/v1/conversations/${conversationId}/resolve`)).status).toBe(200);
      const customer = `customer-${mailCount}.${tag}@example.com`;
      const survey = await stack.capture.waitFor(
        (m) => m.envelope.to.includes(customer) && m.subject.startsWith('How did we do?'),
      );
      expect(survey.text).toContain('/csat/');
      expect((await admin('PATCH', `/v1/channels/${team.channel.id}`, { csat: { enabled: false } })).status).toBe(200);
    });
  });

  describe('DELETE', () => {
    it('removes the channel from every list and route; its conversations stay', async () => {
      const channel = await newChannel();
      const posted = await postMail(stack.api.url, channel, mail('Before removal', channel.emailAddress));
      expect(posted.status).toBe(202);

      expect((await api(alice.apiKey, 'DELETE', `/v1/channels/${channel.id}`)).status).toBe(403);
      expect((await api(stranger.apiKey, 'DELETE', `/v1/channels/${channel.id}`)).status).toBe(404);
      const removed = await admin('DELETE', `/v1/channels/${channel.id}`);
      expect(removed).toMatchObject({ status: 204, body: undefined });

      expect((await admin('GET', `/v1/channels/${channel.id}`)).status).toBe(404);
      const list = await admin('GET', '/v1/channels?limit=100');
      expect(list.body.data.map((c: { id: string }) => c.id)).not.toContain(channel.id);
      const refused = await postMail(stack.api.url, channel, mail('After removal', channel.emailAddress));
      expect(refused.status).toBe(404);
      expect(refused.contentType).toContain('application/problem+json');
      expect((await admin('PATCH', `/v1/channels/${channel.id}`, { name: 'Back' })).status).toBe(404);
      expect((await admin('POST', `/v1/channels/${channel.id}/forwarder-secret`)).status).toBe(404);
      expect((await admin('GET', `/v1/channels/${channel.id}/smtp`)).status).toBe(404);
      expect((await admin('GET', `/v1/channels/${channel.id}/imap`)).status).toBe(404);
      expect((await admin('DELETE', `/v1/channels/${channel.id}`)).status).toBe(404);

      const conversation = await stack.db
        .selectFrom('conversations')
        .select('id')
        .where('id', '=', posted.body.conversationId)
        .executeTakeFirst();
      expect(conversation).toBeDefined();
    });
  });

  describe('IMAP mailbox of a disabled or removed channel', () => {
    it('stops the mailbox sync when the channel is disabled, starts it again when enabled, and stops it on removal', async () => {
      const channel = await newChannel();
      const handle = stack.temporal.workflow.getHandle(mailboxWorkflowId(channel.id));
      const status = async () => (await handle.describe()).status.name;
      // A server that refuses connections: the sync keeps retrying, so the workflow runs until told otherwise.
      const imap = await admin('PUT', `/v1/channels/${channel.id}/imap`, {
        enabled: true,
        host: '127.0.0.1',
        port: await closedPort(),
        tls: false,
        username: 'support',
        password: 'imap-secret',
      });
      expect(imap.status).toBe(200);
      await eventually(async () => ((await status()) === 'RUNNING' ? true : undefined));

      expect((await admin('PATCH', `/v1/channels/${channel.id}`, { enabled: false })).status).toBe(200);
      await eventually(async () => ((await status()) === 'COMPLETED' ? true : undefined), 60_000);

      expect((await admin('PATCH', `/v1/channels/${channel.id}`, { enabled: true })).status).toBe(200);
      await eventually(async () => ((await status()) === 'RUNNING' ? true : undefined));

      expect((await admin('DELETE', `/v1/channels/${channel.id}`)).status).toBe(204);
      await eventually(async () => ((await status()) === 'COMPLETED' ? true : undefined), 60_000);
    }, 120_000);
  });

  describe('forwarder secret', () => {
    it('rotates: the old secret stops working at once, the new one works', async () => {
      const channel = await newChannel();
      expect((await postMail(stack.api.url, channel, mail('Old secret', channel.emailAddress))).status).toBe(202);
      expect((await api(alice.apiKey, 'POST', `/v1/channels/${channel.id}/forwarder-secret`)).status).toBe(403);
      const rotated = await admin('POST', `/v1/channels/${channel.id}/forwarder-secret`);
      expect(rotated.status).toBe(200);
      const newSecret = rotated.body.forwarderSecret as string;
      expect(newSecret).not.toBe(channel.forwarderSecret);

      const withOld = await postMail(stack.api.url, channel, mail('Old secret again', channel.emailAddress));
      expect(withOld.status).toBe(401);
      const withNew = await postMail(
        stack.api.url,
        { id: channel.id, forwarderSecret: newSecret },
        mail('New secret', channel.emailAddress),
      );
      expect(withNew.status).toBe(202);
      expect(JSON.stringify((await admin('GET', `/v1/channels/${channel.id}`)).body)).not.toContain(newSecret);
    });
  });

  describe('forwarding address', () => {
    it('is set once; the same again is fine, another is refused', async () => {
      const channel = await newChannel();
      const path = `/v1/channels/${channel.id}/forwarding-address`;
      expect((await api(alice.apiKey, 'PUT', path, { username: 'help', subdomain: 'acme' })).status).toBe(403);
      expect((await api(stranger.apiKey, 'PUT', path, { username: 'help', subdomain: 'acme' })).status).toBe(404);

      const set = await admin('PUT', path, { username: 'help', subdomain: `acme-${tag}` });
      const address = `help@acme-${tag}.${INBOUND_DOMAIN}`;
      expect(set).toMatchObject({
        status: 200,
        body: { forwardingAddress: address, username: 'help', subdomain: `acme-${tag}` },
      });
      expect((await admin('GET', `/v1/channels/${channel.id}`)).body.forwardingAddress).toBe(address);

      expect(await admin('PUT', path, { username: 'Help', subdomain: `ACME-${tag}` })).toMatchObject({
        status: 200,
        body: { forwardingAddress: address },
      });

      const changed = await admin('PUT', path, { username: 'other', subdomain: `acme-${tag}` });
      expect(changed.status).toBe(409);
      expect(changed.contentType).toContain('application/problem+json');
      expect(changed.body.type).toBe('https://mailroom.dev/problems/forwarding-address-immutable');
      expect(changed.body.detail).toContain(address);

      // Taken by another channel.
      const second = await newChannel();
      const taken = await admin('PUT', `/v1/channels/${second.id}/forwarding-address`, {
        username: 'help',
        subdomain: `acme-${tag}`,
      });
      expect(taken.status).toBe(409);
      expect(taken.body.type).toBe('https://mailroom.dev/problems/forwarding-address-taken');
      expect((await admin('GET', `/v1/channels/${second.id}`)).body.forwardingAddress).toBeNull();
    });

    it('lets only one of two concurrent first writes win', async () => {
      const channel = await newChannel();
      const path = `/v1/channels/${channel.id}/forwarding-address`;
      const answers = await Promise.all(
        ['first', 'second', 'third'].map((username) => admin('PUT', path, { username, subdomain: `race-${tag}` })),
      );
      expect(answers.map((a) => a.status).sort()).toEqual([200, 409, 409]);
      const winner = answers.find((a) => a.status === 200)!.body.forwardingAddress;
      expect((await admin('GET', `/v1/channels/${channel.id}`)).body.forwardingAddress).toBe(winner);
    });

    it.each([
      ['a username with a space', { username: 'a b', subdomain: 'acme' }, 'username'],
      ['a username with two dots in a row', { username: 'a..b', subdomain: 'acme' }, 'username'],
      ['a username of 65 characters', { username: 'a'.repeat(65), subdomain: 'acme' }, 'username'],
      ['an empty username', { username: '', subdomain: 'acme' }, 'username'],
      ['a subdomain with an underscore', { username: 'help', subdomain: 'ac_me' }, 'subdomain'],
      ['a subdomain with a dot', { username: 'help', subdomain: 'a.cme' }, 'subdomain'],
      ['a subdomain ending in a hyphen', { username: 'help', subdomain: 'acme-' }, 'subdomain'],
      ['a subdomain of 64 characters', { username: 'help', subdomain: 'a'.repeat(64) }, 'subdomain'],
    ])('refuses %s: 422 naming the field', async (_case, body, field) => {
      const response = await admin('PUT', `/v1/channels/${team.channel.id}/forwarding-address`, body);
      expect(response.status).toBe(422);
      expect(problemFields(response.body)).toEqual([field]);
    });
  });

  describe('SMTP server', () => {
    const capturePort = () => Number(new URL(stack.smtpUrl).port);

    it('stores settings with a write-only encrypted password, tests them, and goes back to the default', async () => {
      const channel = await newChannel();
      const path = `/v1/channels/${channel.id}/smtp`;
      expect(await admin('GET', path)).toMatchObject({
        status: 200,
        body: { usesDefault: true, host: null, port: null, secure: false, username: null, passwordSet: false },
      });
      expect((await admin('POST', `${path}/test`, {})).status).toBe(422);

      // The stack's capture: loopback, no authentication.
      const saved = await admin('PUT', path, { host: '127.0.0.1', port: capturePort() });
      expect(saved).toMatchObject({
        status: 200,
        body: { usesDefault: false, host: '127.0.0.1', port: capturePort(), secure: false, username: null, passwordSet: false },
      });
      expect(await admin('POST', `${path}/test`)).toMatchObject({ status: 200, body: { ok: true } });
      expect(await admin('POST', `${path}/test`, {})).toMatchObject({ status: 200, body: { ok: true } });

      const failing = await admin('POST', `${path}/test`, { port: await closedPort() });
      expect(failing).toMatchObject({
        status: 200,
        body: { ok: false, reason: 'refused', message: 'the connection was refused or closed: check host and port' },
      });

      // With a login: the password is never answered, stored encrypted.
      const withLogin = await admin('PUT', path, {
        host: 'smtp.acme.example',
        port: 587,
        username: 'mailer',
        password: 'pa55-w0rd',
      });
      expect(withLogin).toMatchObject({
        status: 200,
        body: { usesDefault: false, host: 'smtp.acme.example', port: 587, username: 'mailer', passwordSet: true },
      });
      expect(JSON.stringify(withLogin.body)).not.toContain('pa55-w0rd');
      const read = await admin('GET', path);
      expect(read.body).toEqual(withLogin.body);
      expect(JSON.stringify((await admin('GET', `/v1/channels/${channel.id}`)).body)).not.toContain('pa55');
      const row = await stack.db
        .selectFrom('channels')
        .select('smtp_password_encrypted')
        .where('id', '=', channel.id)
        .executeTakeFirstOrThrow();
      expect(row.smtp_password_encrypted).not.toContain('pa55-w0rd');
      expect(decryptCredential(row.smtp_password_encrypted!, TEST_SECRET_KEY)).toBe('pa55-w0rd');

      // Left out, the password is kept while the server and user stay the same; another server needs it again.
      const kept = await admin('PUT', path, { host: 'smtp.acme.example', port: 587, username: 'mailer' });
      expect(kept.body).toMatchObject({ port: 587, secure: false, passwordSet: true });
      // Implicit TLS defaults to port 465.
      const secured = await admin('PUT', path, { host: 'smtp.acme.example', secure: true, username: 'mailer' });
      expect(problemFields(secured.body)).toEqual(['password']);
      const resent = await admin('PUT', path, {
        host: 'smtp.acme.example',
        secure: true,
        username: 'mailer',
        password: 'pa55-w0rd',
      });
      expect(resent.body).toMatchObject({ port: 465, secure: true, passwordSet: true });
      const elsewhere = await admin('POST', `${path}/test`, { host: '127.0.0.1', port: capturePort(), secure: false });
      expect(elsewhere.status).toBe(422);
      expect(problemFields(elsewhere.body)).toEqual(['password']);

      // The capture has no AUTH over plain connections: a login fails as a result, not an error.
      const loginFails = await admin('POST', `${path}/test`, {
        host: '127.0.0.1',
        port: capturePort(),
        secure: false,
        password: 'pa55-w0rd',
      });
      expect(loginFails).toMatchObject({ status: 200, body: { ok: false, reason: 'auth' } });
      expect(Object.keys(loginFails.body).sort()).toEqual(['message', 'ok', 'reason']);

      expect(await admin('DELETE', path)).toMatchObject({ status: 204 });
      expect((await admin('GET', path)).body).toEqual({
        usesDefault: true,
        host: null,
        port: null,
        secure: false,
        username: null,
        passwordSet: false,
        oauth: false,
      });
    });

    it('refuses invalid settings and callers who are not admins', async () => {
      const path = `/v1/channels/${team.channel.id}/smtp`;
      const noPassword = await admin('PUT', path, { host: 'smtp.acme.example', username: 'mailer' });
      expect(noPassword.status).toBe(422);
      expect(problemFields(noPassword.body)).toEqual(['password']);
      expect(problemFields((await admin('PUT', path, { host: 'smtp.acme.example', port: 70000 })).body)).toEqual(['port']);
      expect(problemFields((await admin('PUT', path, { port: 25 })).body)).toEqual(['host']);
      expect(problemFields((await admin('POST', `${path}/test`, { host: 'a b' })).body)).toEqual(['host']);

      for (const [method, suffix, body] of [
        ['GET', '', undefined],
        ['PUT', '', { host: 'smtp.acme.example' }],
        ['DELETE', '', undefined],
        ['POST', '/test', {}],
      ] as const) {
        expect((await api(alice.apiKey, method, `${path}${suffix}`, body)).status, `${method} ${suffix}`).toBe(403);
        expect((await api(stranger.apiKey, method, `${path}${suffix}`, body)).status, `${method} ${suffix}`).toBe(404);
      }
      expect((await admin('GET', path)).body.usesDefault).toBe(true);
    });
  });
});
