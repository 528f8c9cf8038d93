import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/connection.js';
import { addAgentToChannel, createChannel } from '../../src/db/seed.js';
import { callApi, eventually, postMail } from '../support/http.js';
import { seedSupportTeam, startTestStack, type TestStack } from '../support/stack.js';

// GET /v1/reports/conversations: conversations that went through the real path (inbound mail, an agent's
// reply through the API, resolution) for today's figures, and rows written directly for past periods,
// where every count and first-response figure is known in advance.

interface FirstResponse {
  count: number;
  medianSeconds: number | null;
  p90Seconds: number | null;
  averageSeconds: number | null;
}
interface Period {
  start: string;
  end: string;
  created: number;
  resolved: number;
  openAtEnd: number;
  firstResponse: FirstResponse;
}
interface Group {
  channelId: string | null;
  periods: Period[];
}

const noResponse: FirstResponse = { count: 0, medianSeconds: null, p90Seconds: null, averageSeconds: null };
const responses = (count: number, medianSeconds: number, p90Seconds: number, averageSeconds: number): FirstResponse => ({
  count,
  medianSeconds,
  p90Seconds,
  averageSeconds,
});
const period = (
  start: string,
  end: string,
  created: number,
  resolved: number,
  openAtEnd: number,
  firstResponse = noResponse,
) => ({
  start: new Date(start).toISOString(),
  end: new Date(end).toISOString(),
  created,
  resolved,
  openAtEnd,
  firstResponse,
});

/** A conversation written directly, at a time of the test's choosing. */
async function insertConversation(
  db: Db,
  input: { accountId: string; channelId: string; createdAt: string; respondedAfterSeconds?: number; resolvedAt?: string },
) {
  const contactId = randomUUID();
  const createdAt = new Date(input.createdAt);
  await db
    .insertInto('contacts')
    .values({ id: contactId, account_id: input.accountId, email: `past-${contactId}@example.com` })
    .execute();
  await db
    .insertInto('conversations')
    .values({
      id: randomUUID(),
      account_id: input.accountId,
      channel_id: input.channelId,
      contact_id: contactId,
      subject: 'Earlier',
      status: input.resolvedAt ? 'resolved' : 'open',
      stage: input.resolvedAt ? 'resolved' : 'assigned',
      created_at: createdAt,
      updated_at: createdAt,
      resolved_at: input.resolvedAt ?? null,
      first_response_at:
        input.respondedAfterSeconds === undefined ? null : new Date(createdAt.getTime() + input.respondedAfterSeconds * 1000),
    })
    .execute();
}

describe('GET /v1/reports/conversations', () => {
  let stack: TestStack;
  let team: Awaited<ReturnType<typeof seedSupportTeam>>;
  let other: Awaited<ReturnType<typeof seedSupportTeam>>;
  let alice: { id: string; apiKey: string };
  let bob: { id: string; apiKey: string };
  let channelA: string;
  let channelB: string;
  const tag = randomUUID().slice(0, 8);

  const report = (query: Record<string, string>, apiKey = team.admin.apiKey) =>
    callApi(stack.api.url, apiKey, 'GET', `/v1/reports/conversations?${new URLSearchParams(query)}`);
  const groupOf = (groups: Group[], channelId: string | null) => groups.find((g) => g.channelId === channelId);

  beforeAll(async () => {
    stack = await startTestStack();
    team = await seedSupportTeam(stack.db, { name: 'Acme Support', emailAddress: 'support@acme.example' });
    other = await seedSupportTeam(stack.db, { name: 'Other Support', emailAddress: 'help@other.example' });
    [alice, bob] = team.agents as [typeof alice, typeof bob];
    channelA = team.channel.id;
    // Channel B: Bob works it, Alice does not.
    channelB = (
      await createChannel(stack.db, { accountId: team.account.id, name: 'Acme Billing', emailAddress: 'billing@acme.example' })
    ).id;
    await addAgentToChannel(stack.db, channelB, bob.id);

    const accountId = team.account.id;
    // Channel A, March 2025 (UTC): one conversation open from before, then six in the week of Monday 3 March.
    for (const conversation of [
      { createdAt: '2025-02-20T10:00:00Z' },
      { createdAt: '2025-03-03T09:00:00Z', respondedAfterSeconds: 60, resolvedAt: '2025-03-03T12:00:00Z' },
      // Monday 23:30 UTC is already Tuesday in Berlin.
      { createdAt: '2025-03-03T23:30:00Z', respondedAfterSeconds: 120, resolvedAt: '2025-03-05T10:00:00Z' },
      { createdAt: '2025-03-04T10:00:00Z', respondedAfterSeconds: 180 },
      { createdAt: '2025-03-05T10:00:00Z', respondedAfterSeconds: 240, resolvedAt: '2025-03-12T10:00:00Z' },
      { createdAt: '2025-03-06T10:00:00Z', respondedAfterSeconds: 600 },
      { createdAt: '2025-03-06T11:00:00Z' },
    ]) {
      await insertConversation(stack.db, { accountId, channelId: channelA, ...conversation });
    }
    // Channel B: one answered and resolved on 4 March, one after the first week.
    await insertConversation(stack.db, {
      accountId,
      channelId: channelB,
      createdAt: '2025-03-04T08:00:00Z',
      respondedAfterSeconds: 30,
      resolvedAt: '2025-03-04T09:00:00Z',
    });
    await insertConversation(stack.db, { accountId, channelId: channelB, createdAt: '2025-03-10T08:00:00Z' });
    // Another account, same days: never in our figures.
    for (const createdAt of ['2025-03-03T10:00:00Z', '2025-03-04T10:00:00Z']) {
      await insertConversation(stack.db, {
        accountId: other.account.id,
        channelId: other.channel.id,
        createdAt,
        respondedAfterSeconds: 5,
      });
    }
  });

  afterAll(async () => {
    await stack?.stop();
  });

  it("today's figures from conversations that went through the real path: mail in, an agent's reply, resolution", async () => {
    const from = new Date(Date.now() - 60_000).toISOString();
    const ids: string[] = [];
    for (const n of [1, 2, 3]) {
      const posted = await postMail(
        stack.api.url,
        team.channel,
        [
          `From: Customer ${n} <customer-${n}.${tag}@example.com>`,
          'To: support@acme.example',
          `Subject: Question ${n}`,
          `Message-ID: <report-${n}.${tag}@mail.example.com>`,
          'Content-Type: text/plain; charset=utf-8',
          '',
          'Where is my parcel?',
          '',
        ].join('\r\n'),
      );
      expect(posted.status).toBe(202);
      ids.push(posted.body.conversationId);
    }
    const keyOf = new Map([alice, bob].map((agent) => [agent.id, agent.apiKey]));
    const assignees = await Promise.all(
      ids.map((id) =>
        eventually(async () => {
          const { body } = await callApi(stack.api.url, team.admin.apiKey, 'GET', `/v1/conversations/${id}`);
          return body.stage === 'assigned' ? (body.assigneeId as string) : undefined;
        }),
      ),
    );
    // The agents who have them answer the first two; the second is resolved too.
    for (const i of [0, 1]) {
      const replied = await callApi(stack.api.url, keyOf.get(assignees[i]!)!, 'POST', `/v1/conversations/${ids[i]}/replies`, {
        text: 'It is on its way.',
      });
      expect(replied.status).toBe(201);
    }
    const resolved = await callApi(stack.api.url, keyOf.get(assignees[1]!)!, 'POST', `/v1/conversations/${ids[1]}/resolve`);
    expect(resolved.status).toBe(200);
    await eventually(async () => {
      const row = await stack.db
        .selectFrom('conversations')
        .select('resolved_at')
        .where('id', '=', ids[1]!)
        .executeTakeFirstOrThrow();
      return row.resolved_at ?? undefined;
    });

    const rows = await stack.db
      .selectFrom('conversations')
      .select(['created_at', 'first_response_at'])
      .where('id', 'in', ids)
      .where('first_response_at', 'is not', null)
      .execute();
    const seconds = rows.map((row) => (row.first_response_at!.getTime() - row.created_at.getTime()) / 1000).sort((a, b) => a - b);
    expect(seconds).toHaveLength(2);
    const [low, high] = seconds as [number, number];

    const to = new Date(Date.now() + 60_000).toISOString();
    const response = await report({ from, to, interval: 'none' });
    expect(response.status).toBe(200);
    expect(response.body).toMatchObject({ from, to, groupBy: 'channel', interval: 'none', timeZone: 'UTC' });
    const [periodA] = groupOf(response.body.groups, channelA)!.periods;
    // Open at the end: the two still open, and the four of earlier periods never resolved (one in February, three in March).
    expect(periodA).toMatchObject({ start: from, end: to, created: 3, resolved: 1, openAtEnd: 2 + 4 });
    expect(periodA!.firstResponse.count).toBe(2);
    expect(periodA!.firstResponse.medianSeconds).toBeCloseTo((low + high) / 2, 2);
    expect(periodA!.firstResponse.averageSeconds).toBeCloseTo((low + high) / 2, 2);
    expect(periodA!.firstResponse.p90Seconds).toBeCloseTo(low + 0.9 * (high - low), 2);
    expect(groupOf(response.body.groups, channelB)!.periods).toEqual([period(from, to, 0, 0, 1)]);
  });

  it('per channel and day: created, resolved, open at the end, and first-response median, p90 and average', async () => {
    const response = await report({ from: '2025-03-03T00:00:00Z', to: '2025-03-10T00:00:00Z', interval: 'day' });
    expect(response.status).toBe(200);
    const day = (d: number) => `2025-03-0${d}T00:00:00Z`;
    const later = (d: number) => `2025-03-${String(d).padStart(2, '0')}T00:00:00Z`;
    expect(groupOf(response.body.groups, channelA)!.periods).toEqual([
      // Open at the end counts the conversation from February too.
      period(day(3), day(4), 2, 1, 2, responses(2, 90, 114, 90)),
      period(day(4), day(5), 1, 0, 3, responses(1, 180, 180, 180)),
      period(day(5), day(6), 1, 1, 3, responses(1, 240, 240, 240)),
      period(day(6), day(7), 2, 0, 5, responses(1, 600, 600, 600)),
      period(day(7), day(8), 0, 0, 5),
      period(day(8), day(9), 0, 0, 5),
      period(day(9), later(10), 0, 0, 5),
    ]);
    expect(groupOf(response.body.groups, channelB)!.periods).toEqual([
      period(day(3), day(4), 0, 0, 0),
      period(day(4), day(5), 1, 1, 0, responses(1, 30, 30, 30)),
      ...[5, 6, 7, 8].map((d) => period(day(d), day(d + 1), 0, 0, 0)),
      period(day(9), later(10), 0, 0, 0),
    ]);
    expect(response.body.groups).toHaveLength(2);
  });

  it('groupBy=none, interval=none: the whole account in one figure, percentiles over every channel', async () => {
    const response = await report({
      from: '2025-03-03T00:00:00Z',
      to: '2025-03-10T00:00:00Z',
      interval: 'none',
      groupBy: 'none',
    });
    expect(response.status).toBe(200);
    // First responses 30, 60, 120, 180, 240, 600 s: median 150, p90 240 + 0.5 × 360, average 205.
    expect(response.body.groups).toEqual([
      {
        channelId: null,
        periods: [period('2025-03-03T00:00:00Z', '2025-03-10T00:00:00Z', 7, 3, 5, responses(6, 150, 420, 205))],
      },
    ]);
  });

  it('weeks from Monday, cut to from and to', async () => {
    const response = await report({
      from: '2025-03-01T00:00:00Z',
      to: '2025-03-15T00:00:00Z',
      interval: 'week',
      channelId: channelA,
    });
    expect(response.status).toBe(200);
    expect(response.body.groups).toEqual([
      {
        channelId: channelA,
        periods: [
          period('2025-03-01T00:00:00Z', '2025-03-03T00:00:00Z', 0, 0, 1),
          period('2025-03-03T00:00:00Z', '2025-03-10T00:00:00Z', 6, 2, 5, responses(5, 180, 456, 240)),
          period('2025-03-10T00:00:00Z', '2025-03-15T00:00:00Z', 0, 1, 4),
        ],
      },
    ]);
  });

  it('days and months in the time zone asked for, across a daylight-saving change', async () => {
    const days = await report({
      from: '2025-03-03T00:00:00+01:00',
      to: '2025-03-05T00:00:00+01:00',
      interval: 'day',
      timeZone: 'Europe/Berlin',
      channelId: channelA,
    });
    expect(days.status).toBe(200);
    expect(days.body.timeZone).toBe('Europe/Berlin');
    // 23:30 UTC on Monday is Tuesday in Berlin.
    expect(days.body.groups[0].periods).toEqual([
      period('2025-03-02T23:00:00Z', '2025-03-03T23:00:00Z', 1, 1, 1, responses(1, 60, 60, 60)),
      period('2025-03-03T23:00:00Z', '2025-03-04T23:00:00Z', 2, 0, 3, responses(2, 150, 174, 150)),
    ]);

    const months = await report({
      from: '2025-01-15T00:00:00Z',
      to: '2025-04-10T00:00:00Z',
      interval: 'month',
      timeZone: 'Europe/Berlin',
      channelId: channelA,
    });
    expect(months.status).toBe(200);
    // April starts at 22:00 UTC: Berlin is on summer time by then.
    expect(months.body.groups[0].periods).toEqual([
      period('2025-01-15T00:00:00Z', '2025-01-31T23:00:00Z', 0, 0, 0),
      period('2025-01-31T23:00:00Z', '2025-02-28T23:00:00Z', 1, 0, 1),
      period('2025-02-28T23:00:00Z', '2025-03-31T22:00:00Z', 6, 3, 4, responses(5, 180, 456, 240)),
      period('2025-03-31T22:00:00Z', '2025-04-10T00:00:00Z', 0, 0, 4),
    ]);
  });

  it("agents see only their channels' figures; asking for another channel answers 403", async () => {
    const query = { from: '2025-03-03T00:00:00Z', to: '2025-03-10T00:00:00Z', interval: 'none' };
    const asAlice = await report(query, alice.apiKey);
    expect(asAlice.status).toBe(200);
    expect(asAlice.body.groups.map((g: Group) => g.channelId)).toEqual([channelA]);
    const totalOfAlice = await report({ ...query, groupBy: 'none' }, alice.apiKey);
    expect(totalOfAlice.body.groups[0].periods[0]).toMatchObject({ created: 6, resolved: 2, openAtEnd: 5 });

    const forbidden = await report({ ...query, channelId: channelB }, alice.apiKey);
    expect(forbidden).toMatchObject({ status: 403, contentType: 'application/problem+json' });

    const asBob = await report(query, bob.apiKey);
    expect(asBob.body.groups.map((g: Group) => g.channelId).sort()).toEqual([channelA, channelB].sort());
  });

  it('another account never appears, and its channel answers 404', async () => {
    const query = { from: '2025-03-03T00:00:00Z', to: '2025-03-10T00:00:00Z', interval: 'none' };
    const ours = await report(query);
    expect(ours.body.groups.map((g: Group) => g.channelId)).not.toContain(other.channel.id);
    expect((await report({ ...query, channelId: other.channel.id })).status).toBe(404);
    expect((await report({ ...query, channelId: randomUUID() })).status).toBe(404);

    const theirs = await report(query, other.admin.apiKey);
    expect(theirs.body.groups).toEqual([
      {
        channelId: other.channel.id,
        periods: [period(query.from, query.to, 2, 0, 2, responses(2, 5, 5, 5))],
      },
    ]);
    expect((await report({ ...query, channelId: channelA }, other.admin.apiKey)).status).toBe(404);
  });

  it('defaults to the last 30 days by day, in UTC', async () => {
    const response = await report({});
    expect(response.status).toBe(200);
    expect(response.body).toMatchObject({ groupBy: 'channel', interval: 'day', timeZone: 'UTC' });
    expect(Date.parse(response.body.to) - Date.parse(response.body.from)).toBe(30 * 86_400_000);
    const periods = groupOf(response.body.groups, channelA)!.periods;
    expect(periods.length).toBeGreaterThanOrEqual(30);
    expect(periods[0]!.start).toBe(response.body.from);
    expect(periods.at(-1)!.end).toBe(response.body.to);
    // Consecutive periods, no gaps.
    for (let i = 1; i < periods.length; i++) expect(periods[i]!.start).toBe(periods[i - 1]!.end);
  });

  it('answers 422 problem+json naming the field for an empty, reversed or too long period and bad parameters', async () => {
    const fieldsOf = async (query: Record<string, string>) => {
      const response = await report(query);
      expect(response).toMatchObject({ status: 422, contentType: 'application/problem+json', body: { status: 422 } });
      return response.body.errors.map((e: { field: string }) => e.field);
    };
    const instant = '2025-03-03T00:00:00Z';
    expect(await fieldsOf({ from: instant, to: instant })).toEqual(['from']);
    expect(await fieldsOf({ from: '2025-03-04T00:00:00Z', to: instant })).toEqual(['from']);
    expect(await fieldsOf({ from: '2024-01-01T00:00:00Z', to: '2025-01-02T00:00:00Z' })).toEqual(['to']);
    expect(await fieldsOf({ from: 'yesterday' })).toEqual(['from']);
    expect(await fieldsOf({ timeZone: 'Mars/Olympus_Mons' })).toEqual(['timeZone']);
    expect(await fieldsOf({ timeZone: '+05:00' })).toEqual(['timeZone']);
    expect(await fieldsOf({ interval: 'year' })).toEqual(['interval']);
    expect(await fieldsOf({ groupBy: 'agent' })).toEqual(['groupBy']);
    expect(await fieldsOf({ channelId: 'not-a-uuid' })).toEqual(['channelId']);
    // Exactly 366 days is allowed.
    expect((await report({ from: '2024-01-01T00:00:00Z', to: '2025-01-01T00:00:00Z', interval: 'month' })).status).toBe(200);
  });
});
