import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/connection.js';
import { createChannel } from '../../src/db/seed.js';
import { callApi, eventually, postMail } from '../support/http.js';
import { seedSupportTeam, startTestStack, type TestStack } from '../support/stack.js';

// GET /v1/reports/csat over surveys that went through the whole path (resolve → survey mail → form
// submit) and over rows written directly for the aggregate-only cases (other channels, past periods,
// AI agents, another account).

const DAY = 86_400_000;

interface Group {
  channelId: string | null;
  agentId: string | null;
  aiAgentId: string | null;
  surveysSent: number;
  ratings: number;
  average: number | null;
  distribution: Record<'1' | '2' | '3' | '4' | '5', number>;
  responseRate: number | null;
}

/** A report group as the API answers it; `ratings` lists the ratings given, null for a survey nobody answered. */
function group(keys: Partial<Pick<Group, 'channelId' | 'agentId' | 'aiAgentId'>>, ratings: Array<number | null>): Group {
  const given = ratings.filter((rating): rating is number => rating !== null);
  const count = (n: number) => given.filter((rating) => rating === n).length;
  return {
    channelId: keys.channelId ?? null,
    agentId: keys.agentId ?? null,
    aiAgentId: keys.aiAgentId ?? null,
    surveysSent: ratings.length,
    ratings: given.length,
    average: given.length === 0 ? null : Math.round((given.reduce((a, b) => a + b, 0) / given.length) * 100) / 100,
    distribution: { 1: count(1), 2: count(2), 3: count(3), 4: count(4), 5: count(5) },
    responseRate: ratings.length === 0 ? null : Math.round((given.length / ratings.length) * 1000) / 1000,
  };
}

const groupKey = (g: Group) => `${g.channelId}/${g.agentId}/${g.aiAgentId}`;
const sorted = (groups: Group[]) => [...groups].sort((a, b) => groupKey(a).localeCompare(groupKey(b)));

/** A resolved conversation with a survey row, written directly. */
async function insertSurvey(
  db: Db,
  input: {
    accountId: string;
    channelId: string;
    agentId?: string;
    aiAgentId?: string;
    rating: number | null;
    sentAt?: Date;
  },
) {
  const sentAt = input.sentAt ?? new Date(Date.now() - 3_600_000);
  const contactId = randomUUID();
  const conversationId = randomUUID();
  await db
    .insertInto('contacts')
    .values({ id: contactId, account_id: input.accountId, email: `rated-${contactId}@example.com` })
    .execute();
  await db
    .insertInto('conversations')
    .values({
      id: conversationId,
      account_id: input.accountId,
      channel_id: input.channelId,
      contact_id: contactId,
      subject: 'Rated earlier',
      status: 'closed',
      stage: 'closed',
      assignee_id: input.agentId ?? null,
      updated_at: sentAt,
      resolved_at: sentAt,
    })
    .execute();
  await db
    .insertInto('csat_surveys')
    .values({
      id: randomUUID(),
      conversation_id: conversationId,
      channel_id: input.channelId,
      agent_id: input.agentId ?? null,
      ai_agent_id: input.aiAgentId ?? null,
      expires_at: new Date(sentAt.getTime() + 7 * DAY),
      rating: input.rating,
      rated_at: input.rating === null ? null : sentAt,
      created_at: sentAt,
    })
    .execute();
}

describe('GET /v1/reports/csat', () => {
  let stack: TestStack;
  let team: Awaited<ReturnType<typeof seedSupportTeam>>;
  let alice: { id: string; apiKey: string };
  let bob: { id: string; apiKey: string };
  let channelA: string;
  let channelB: string;
  let aiAgent: string;
  const tag = randomUUID().slice(0, 8);

  const report = (query: Record<string, string>, apiKey = team.admin.apiKey) =>
    callApi(stack.api.url, apiKey, 'GET', `/v1/reports/csat?${new URLSearchParams(query)}`);

  /** A customer mail on channel A, resolved through the API by `resolver`, surveyed, and rated through the form. */
  async function ratedThroughTheApi(n: number, resolver: { apiKey: string }, rating: number | null) {
    const sender = `rater-${n}.${tag}@example.com`;
    const posted = await postMail(
      stack.api.url,
      team.channel,
      [
        `From: Rater ${n} <${sender}>`,
        'To: support@acme.example',
        `Subject: Question ${n}`,
        `Message-ID: <rater-${n}.${tag}@mail.example.com>`,
        'Content-Type: text/plain; charset=utf-8',
        '',
        'Where is my parcel?',
        '',
      ].join('\r\n'),
    );
    expect(posted.status).toBe(202);
    const { conversationId } = posted.body as { conversationId: string };
    await eventually(async () => {
      const { body } = await callApi(stack.api.url, resolver.apiKey, 'GET', `/v1/conversations/${conversationId}`);
      return body.stage === 'assigned' ? true : undefined;
    });
    const resolved = await callApi(stack.api.url, resolver.apiKey, 'POST', `/v1/conversations/${conversationId}/resolve`);
    expect(resolved).toMatchObject({ status: 200, body: { status: 'resolved' } });
    const survey = await stack.capture.waitFor(
      (mail) => mail.envelope.to.includes(sender) && mail.subject.startsWith('How did we do?'),
    );
    if (rating === null) return;
    const link = /(http\S+\/csat\/\S+)/.exec(survey.text)?.[1];
    expect(link).toBeDefined();
    const submitted = await fetch(link!, { method: 'POST', body: new URLSearchParams({ rating: String(rating) }) });
    expect(submitted.status).toBe(200);
    await eventually(() =>
      stack.db
        .selectFrom('csat_surveys')
        .select('rating')
        .where('conversation_id', '=', conversationId)
        .where('rating', '=', rating)
        .executeTakeFirst(),
    );
  }

  beforeAll(async () => {
    stack = await startTestStack();
    team = await seedSupportTeam(stack.db, {
      name: 'Acme Support',
      emailAddress: 'support@acme.example',
      csat: { delaySeconds: 1, linkValiditySeconds: 3600 },
    });
    [alice, bob] = team.agents as [typeof alice, typeof bob];
    channelA = team.channel.id;

    // Through the whole path on channel A: Alice resolves three (rated 5, 4, unanswered), Bob one (rated 2).
    await Promise.all([
      ratedThroughTheApi(1, alice, 5),
      ratedThroughTheApi(2, alice, 4),
      ratedThroughTheApi(3, alice, null),
      ratedThroughTheApi(4, bob, 2),
    ]);

    // Channel B of the same account, written directly: Alice 3 and 1, Bob 3 and unanswered, an AI agent 5.
    channelB = (
      await createChannel(stack.db, { accountId: team.account.id, name: 'Acme Billing', emailAddress: 'billing@acme.example' })
    ).id;
    aiAgent = randomUUID();
    await stack.db
      .insertInto('ai_agents')
      .values({ id: aiAgent, channel_id: channelB, name: 'Billing bot', enabled: false, position: 0, provider: 'knowledge_base' })
      .execute();
    const accountId = team.account.id;
    for (const survey of [
      { agentId: alice.id, rating: 3 },
      { agentId: alice.id, rating: 1 },
      { agentId: bob.id, rating: 3 },
      { agentId: bob.id, rating: null },
      { aiAgentId: aiAgent, rating: 5 },
    ]) {
      await insertSurvey(stack.db, { accountId, channelId: channelB, ...survey });
    }
  });

  afterAll(async () => {
    await stack?.stop();
  });

  it('groupBy=agent: count, average, distribution and response rate per agent who resolved', async () => {
    const response = await report({ groupBy: 'agent', channelId: channelA });
    expect(response.status).toBe(200);
    expect(response.body.groupBy).toBe('agent');
    expect(sorted(response.body.groups)).toEqual(
      sorted([group({ agentId: alice.id }, [5, 4, null]), group({ agentId: bob.id }, [2])]),
    );
    // Spelled out once: 2 of Alice's 3 surveys were answered.
    expect(response.body.groups.find((g: Group) => g.agentId === alice.id)).toMatchObject({
      surveysSent: 3,
      ratings: 2,
      average: 4.5,
      distribution: { 1: 0, 2: 0, 3: 0, 4: 1, 5: 1 },
      responseRate: 0.667,
    });
  });

  it('groupBy=agent over all channels, with AI agents in groups of their own', async () => {
    const response = await report({ groupBy: 'agent' });
    expect(response.status).toBe(200);
    expect(sorted(response.body.groups)).toEqual(
      sorted([
        group({ agentId: alice.id }, [5, 4, null, 3, 1]),
        group({ agentId: bob.id }, [2, 3, null]),
        group({ aiAgentId: aiAgent }, [5]),
      ]),
    );
  });

  it('groupBy=channel, and groupBy=none for the whole account', async () => {
    const byChannel = await report({ groupBy: 'channel' });
    expect(byChannel.status).toBe(200);
    expect(sorted(byChannel.body.groups)).toEqual(
      sorted([group({ channelId: channelA }, [5, 4, null, 2]), group({ channelId: channelB }, [3, 1, 3, null, 5])]),
    );
    // The default grouping is by channel.
    expect(sorted((await report({})).body.groups)).toEqual(sorted(byChannel.body.groups));

    const overall = await report({ groupBy: 'none' });
    expect(overall.body.groups).toEqual([group({}, [5, 4, null, 2, 3, 1, 3, null, 5])]);
  });

  it('channelId and agentId filters', async () => {
    const onlyB = await report({ groupBy: 'channel', channelId: channelB });
    expect(onlyB.body.groups).toEqual([group({ channelId: channelB }, [3, 1, 3, null, 5])]);
    const agentsOnB = await report({ groupBy: 'agent', channelId: channelB });
    expect(sorted(agentsOnB.body.groups)).toEqual(
      sorted([group({ agentId: alice.id }, [3, 1]), group({ agentId: bob.id }, [3, null]), group({ aiAgentId: aiAgent }, [5])]),
    );
    const bobEverywhere = await report({ groupBy: 'channel', agentId: bob.id });
    expect(sorted(bobEverywhere.body.groups)).toEqual(
      sorted([group({ channelId: channelA }, [2]), group({ channelId: channelB }, [3, null])]),
    );
  });

  it('counts surveys sent in the period: from inclusive, to exclusive, the last 30 days by default', async () => {
    const accountId = team.account.id;
    const now = Date.now();
    const at = (daysAgo: number) => new Date(now - daysAgo * DAY);
    await insertSurvey(stack.db, { accountId, channelId: channelA, agentId: alice.id, rating: 1, sentAt: at(100) });
    await insertSurvey(stack.db, { accountId, channelId: channelA, agentId: bob.id, rating: 2, sentAt: at(50) });
    await insertSurvey(stack.db, { accountId, channelId: channelA, agentId: alice.id, rating: 3, sentAt: at(45) });
    await insertSurvey(stack.db, { accountId, channelId: channelA, agentId: alice.id, rating: 4, sentAt: at(40) });

    // By default only the last 30 days: the earlier surveys change nothing.
    const recent = await report({ groupBy: 'channel', channelId: channelA });
    expect(recent.body.groups).toEqual([group({ channelId: channelA }, [5, 4, null, 2])]);
    expect(Date.parse(recent.body.to) - Date.parse(recent.body.from)).toBe(30 * DAY);

    const from = at(50).toISOString();
    const to = at(40).toISOString();
    const period = await report({ groupBy: 'agent', channelId: channelA, from, to });
    expect(period.status).toBe(200);
    expect(period.body).toMatchObject({ from, to, groupBy: 'agent' });
    expect(sorted(period.body.groups)).toEqual(sorted([group({ agentId: bob.id }, [2]), group({ agentId: alice.id }, [3])]));

    // Only `to`: the 30 days before it.
    const before = await report({ groupBy: 'channel', channelId: channelA, to: at(20).toISOString() });
    expect(before.body.groups).toEqual([group({ channelId: channelA }, [2, 3, 4])]);
  });

  it('answers 422 problem+json for an empty or reversed period and for a malformed date', async () => {
    const instant = new Date().toISOString();
    for (const query of [
      { from: instant, to: instant },
      { from: instant, to: new Date(Date.now() - DAY).toISOString() },
    ]) {
      const response = await report(query);
      expect(response).toMatchObject({ status: 422, contentType: 'application/problem+json', body: { status: 422 } });
      expect(response.body.errors).toEqual([{ field: 'from', message: expect.any(String) }]);
    }
    const malformed = await report({ from: 'last tuesday' });
    expect(malformed).toMatchObject({ status: 422, contentType: 'application/problem+json' });
    expect(malformed.body.errors.map((e: { field: string }) => e.field)).toEqual(['from']);
    expect((await report({ groupBy: 'team' })).status).toBe(422);
  });

  it("never shows another account's surveys, nor ours to them", async () => {
    const other = await seedSupportTeam(stack.db, { name: 'Other', emailAddress: 'help@other.example' });
    const [theirAgent] = other.agents;
    await insertSurvey(stack.db, {
      accountId: other.account.id,
      channelId: other.channel.id,
      agentId: theirAgent!.id,
      rating: 1,
    });
    await insertSurvey(stack.db, {
      accountId: other.account.id,
      channelId: other.channel.id,
      agentId: theirAgent!.id,
      rating: 2,
    });

    for (const groupBy of ['channel', 'agent', 'none']) {
      const ours = await report({ groupBy });
      expect(ours.status).toBe(200);
      const ids = ours.body.groups.flatMap((g: Group) => [g.channelId, g.agentId]);
      expect(ids).not.toContain(other.channel.id);
      expect(ids).not.toContain(theirAgent!.id);
    }
    expect((await report({ groupBy: 'none' })).body.groups).toEqual([group({}, [5, 4, null, 2, 3, 1, 3, null, 5])]);

    const theirs = await report({ groupBy: 'channel' }, other.admin.apiKey);
    expect(theirs.body.groups).toEqual([group({ channelId: other.channel.id }, [1, 2])]);
    // Asking for our channel by id is a 404, as for any object of another account; for our agent, nothing.
    const ourChannel = await report({ groupBy: 'agent', channelId: channelA }, theirAgent!.apiKey);
    expect(ourChannel.status).toBe(404);
    expect(ourChannel.contentType).toBe('application/problem+json');
    expect((await report({ groupBy: 'channel', agentId: alice.id }, theirAgent!.apiKey)).body.groups).toEqual([]);
  });
});
