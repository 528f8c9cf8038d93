import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAssignmentActivities, type QueueResult } from '../../src/activities/assignment.js';
import { createConversationActivities } from '../../src/activities/conversation.js';
import type { ActivityDeps } from '../../src/activities/deps.js';
import type { Db } from '../../src/db/connection.js';
import type { ConversationStage, ConversationStatus } from '../../src/domain/conversation.js';
import { addAgentToChannel, createAccount, createChannel, createUser } from '../../src/db/seed.js';
import type { AssignmentStrategy } from '../../src/domain/assignment.js';
import { conversationWorkflowId } from '../../src/workflows/ids.js';
import { conversationSnapshotQuery } from '../../src/workflows/messages.js';
import { createTestDatabase } from '../support/database.js';
import { callApi, eventually, postMail } from '../support/http.js';
import { seedSupportTeam, startTestStack, type TestStack } from '../support/stack.js';

// Who gets which conversation, and that nobody ever goes over capacity: through the API, the worker's
// workflows and PostgreSQL together, then at the database alone with the activities racing each other.

interface ConversationRow {
  id: string;
  status: ConversationStatus;
  stage: ConversationStage;
  assignee_id: string | null;
  queued_at: Date | null;
  created_at: Date;
}

interface Agent {
  userId: string;
  capacity: number | null;
  available: boolean;
}

/** Runs `task` over `items`, at most `limit` at a time; results in the order of `items`. */
async function inParallel<T, R>(items: readonly T[], limit: number, task: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const lane = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await task(items[index]!, index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  return results;
}

function customerMail(tag: string, n: number, to: string) {
  return [
    `From: "Customer ${n}" <customer-${n}.${tag}@example.com>`,
    `To: ${to}`,
    `Subject: Question ${n} about my order`,
    'Date: Mon, 16 Nov 2026 10:00:00 +0100',
    `Message-ID: <question-${n}.${tag}@mail.example.com>`,
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    '',
    `Hello, this is question number ${n}.`,
    '',
  ].join('\r\n');
}

async function conversationsOf(db: Db, channelId: string): Promise<ConversationRow[]> {
  return db
    .selectFrom('conversations')
    .select(['id', 'status', 'stage', 'assignee_id', 'queued_at', 'created_at'])
    .where('channel_id', '=', channelId)
    .execute();
}

async function agentsOf(db: Db, channelId: string): Promise<Agent[]> {
  const rows = await db
    .selectFrom('channel_agents as ca')
    .innerJoin('users as u', 'u.id', 'ca.user_id')
    .innerJoin('channels as ch', 'ch.id', 'ca.channel_id')
    .select((eb) => ['u.id', 'u.available', eb.fn.coalesce('ca.capacity', 'ch.default_agent_capacity').as('capacity')])
    .where('ca.channel_id', '=', channelId)
    .execute();
  return rows.map((row) => ({ userId: row.id, capacity: row.capacity, available: row.available }));
}

/** The channel's queue in the order it is served: priority, then waiting time, then id. */
async function queueOf(db: Db, channelId: string): Promise<string[]> {
  const rows = await db
    .selectFrom('conversations')
    .select('id')
    .where('channel_id', '=', channelId)
    .where('status', '=', 'open')
    .where('assignee_id', 'is', null)
    .where('queued_at', 'is not', null)
    .orderBy(sql`case priority when 'urgent' then 0 when 'high' then 1 when 'normal' then 2 else 3 end`)
    .orderBy('queued_at')
    .orderBy('id')
    .execute();
  return rows.map((row) => row.id);
}

/** Open conversations per assignee. */
function loadOf(rows: readonly ConversationRow[]): Map<string, number> {
  const load = new Map<string, number>();
  for (const row of rows) {
    if (row.status === 'open' && row.assignee_id) load.set(row.assignee_id, (load.get(row.assignee_id) ?? 0) + 1);
  }
  return load;
}

function openWith(rows: readonly ConversationRow[], userId: string): string[] {
  return rows.filter((row) => row.status === 'open' && row.assignee_id === userId).map((row) => row.id);
}

// The assignment's facts, written in its transaction: the stage follows when the workflow records it (expectWorkflowsAgree).
function withAgent(row: ConversationRow): boolean {
  return row.status === 'open' && row.assignee_id !== null && row.queued_at === null;
}

function inQueue(row: ConversationRow): boolean {
  return row.status === 'open' && row.assignee_id === null && row.queued_at !== null;
}

/** An open conversation is either with an agent or waiting in the queue, never in between. */
function isSettled(row: ConversationRow): boolean {
  return row.status !== 'open' || withAgent(row) || inQueue(row);
}

/** Every open conversation assigned or queued, nobody over capacity, nothing with someone who is not an agent. */
function expectConsistent(rows: readonly ConversationRow[], agents: readonly Agent[]) {
  expect(rows.filter((row) => !isSettled(row))).toEqual([]);
  const capacities = new Map(agents.map((agent) => [agent.userId, agent.capacity]));
  for (const [userId, open] of loadOf(rows)) {
    expect(capacities.has(userId), `open conversations with ${userId}, who is not an agent of the channel`).toBe(true);
    const capacity = capacities.get(userId);
    if (capacity !== null) expect(open, `open conversations of ${userId}`).toBeLessThanOrEqual(capacity!);
  }
}

/** Waits until the channel has `count` conversations and every open one is assigned or queued. */
async function settled(db: Db, channelId: string, count: number, timeoutMs = 60_000): Promise<ConversationRow[]> {
  return eventually(
    async () => {
      const rows = await conversationsOf(db, channelId);
      return rows.length === count && rows.every(isSettled) ? rows : undefined;
    },
    timeoutMs,
    250,
  );
}

/** Polls until `find` reports nothing, then asserts so that a failure shows what was left. */
async function untilNone<T>(find: () => Promise<T[]>, timeoutMs = 60_000): Promise<void> {
  let last: T[] = [];
  try {
    await eventually(
      async () => {
        last = await find();
        return last.length === 0 ? true : undefined;
      },
      timeoutMs,
      250,
    );
  } catch {
    // The assertion below shows what was left.
  }
  expect(last).toEqual([]);
}

describe('assignment through the API, the workflows and PostgreSQL', () => {
  let stack: TestStack;
  const tag = randomUUID().slice(0, 8);

  beforeAll(async () => {
    stack = await startTestStack();
  });

  afterAll(async () => {
    await stack?.stop();
  });

  /** The workflows of these conversations agree with the database on stage and assignee. */
  async function expectWorkflowsAgree(conversationIds: readonly string[]) {
    await untilNone(async () => {
      const rows = await stack.db
        .selectFrom('conversations')
        .select(['id', 'stage', 'assignee_id'])
        .where('id', 'in', [...conversationIds])
        .execute();
      const snapshots = await inParallel(rows, 20, (row) =>
        stack.temporal.workflow.getHandle(conversationWorkflowId(row.id)).query(conversationSnapshotQuery),
      );
      return rows.flatMap((row, i) => {
        const snapshot = snapshots[i]!;
        return snapshot.stage === row.stage && snapshot.assigneeId === row.assignee_id
          ? []
          : [{ id: row.id, database: [row.stage, row.assignee_id], workflow: [snapshot.stage, snapshot.assigneeId] }];
      });
    });
  }

  async function postMails(channel: { id: string; forwarderSecret: string }, address: string, from: number, count: number) {
    const posted = await inParallel(
      Array.from({ length: count }, (_, i) => from + i),
      25,
      (n) => postMail(stack.api.url, channel, customerMail(tag, n, address)),
    );
    expect(posted.filter((response) => response.status !== 202)).toEqual([]);
    const ids = posted.map((response) => response.body.conversationId as string);
    expect(new Set(ids).size).toBe(count);
    return ids;
  }

  async function addAgent(accountId: string, channelId: string, name: string) {
    const email = `${name.toLowerCase().replace(/\W+/g, '.')}@acme.example`;
    const user = await createUser(stack.db, { accountId, name, email, role: 'agent' });
    await addAgentToChannel(stack.db, channelId, user.id);
    return user;
  }

  describe('200 conversations arriving at once on a channel assigned by load, agents with capacities 20, 15 and 10', () => {
    const address = 'load@acme.example';
    let team: Awaited<ReturnType<typeof seedSupportTeam>>;
    let alice: { id: string; apiKey: string };
    let bob: { id: string; apiKey: string };
    let carol: { id: string; apiKey: string };
    let channelId: string;
    let admin: string;
    let conversationIds: string[];

    const setCapacity = async (userId: string, capacity: number) => {
      const response = await callApi(stack.api.url, admin, 'PUT', `/v1/channels/${channelId}/agents/${userId}`, { capacity });
      expect(response).toMatchObject({ status: 200, body: { userId, capacity, effectiveCapacity: capacity } });
    };

    beforeAll(async () => {
      team = await seedSupportTeam(stack.db, { name: 'Load', emailAddress: address });
      [alice, bob] = team.agents as [typeof alice, typeof bob];
      channelId = team.channel.id;
      admin = team.admin.apiKey;
      carol = await addAgent(team.account.id, channelId, 'Carol Agent');
      await stack.db.updateTable('channels').set({ assignment_strategy: 'load' }).where('id', '=', channelId).execute();
      await setCapacity(alice.id, 20);
      await setCapacity(bob.id, 15);
      await setCapacity(carol.id, 10);
    });

    it(
      'assigns exactly the total capacity (45), queues the other 155, and no agent goes over capacity',
      { timeout: 300_000 },
      async () => {
        conversationIds = await postMails(team.channel, address, 1, 200);
        const rows = await settled(stack.db, channelId, 200, 180_000);
        const agents = await agentsOf(stack.db, channelId);
        expectConsistent(rows, agents);

        const assigned = rows.filter((row) => withAgent(row));
        const queued = rows.filter((row) => inQueue(row));
        expect(assigned).toHaveLength(45);
        expect(queued).toHaveLength(155);
        expect(Object.fromEntries(loadOf(rows))).toEqual({ [alice.id]: 20, [bob.id]: 15, [carol.id]: 10 });

        const listed = await callApi(stack.api.url, alice.apiKey, 'GET', `/v1/channels/${channelId}/agents`);
        expect(listed.status).toBe(200);
        expect(
          Object.fromEntries(
            listed.body.data.map((a: { userId: string; openConversations: number }) => [a.userId, a.openConversations]),
          ),
        ).toEqual({ [alice.id]: 20, [bob.id]: 15, [carol.id]: 10 });

        await expectWorkflowsAgree(conversationIds);
      },
    );

    it('hands as many queued conversations, oldest first, to agents as are resolved: at once, without a timer', async () => {
      const before = await conversationsOf(stack.db, channelId);
      const toResolve = [alice.id, bob.id, carol.id].flatMap((userId) => openWith(before, userId).slice(0, 2));
      const next = (await queueOf(stack.db, channelId)).slice(0, toResolve.length);

      const resolved = await Promise.all(
        toResolve.map((id) => callApi(stack.api.url, admin, 'POST', `/v1/conversations/${id}/resolve`)),
      );
      expect(resolved.map((response) => response.status)).toEqual(toResolve.map(() => 200));

      // The resolve answered after the queue was served in the same transaction: no waiting here.
      const after = await conversationsOf(stack.db, channelId);
      const byId = new Map(after.map((row) => [row.id, row]));
      expect(toResolve.map((id) => byId.get(id)!.status)).toEqual(toResolve.map(() => 'resolved'));
      expect(next.map((id) => withAgent(byId.get(id)!))).toEqual(next.map(() => true));
      expect(after.filter((row) => inQueue(row))).toHaveLength(155 - toResolve.length);
      expectConsistent(after, await agentsOf(stack.db, channelId));
      expect(Object.fromEntries(loadOf(after))).toEqual({ [alice.id]: 20, [bob.id]: 15, [carol.id]: 10 });

      await expectWorkflowsAgree([...toResolve, ...next]);
    });

    it("assigns from the queue at once when an agent's capacity is raised", async () => {
      const next = (await queueOf(stack.db, channelId)).slice(0, 4);
      await setCapacity(alice.id, 24);

      const rows = await eventually(async () => {
        const rows = await conversationsOf(stack.db, channelId);
        return openWith(rows, alice.id).length === 24 ? rows : undefined;
      });
      expect(openWith(rows, alice.id)).toEqual(expect.arrayContaining(next));
      expectConsistent(rows, await agentsOf(stack.db, channelId));
      expect(Object.fromEntries(loadOf(rows))).toEqual({ [alice.id]: 24, [bob.id]: 15, [carol.id]: 10 });
      await expectWorkflowsAgree(next);
    });

    let bobsConversations: string[];

    it('puts the open conversations of an agent who becomes unavailable first in line; the others take them as capacity allows', async () => {
      bobsConversations = openWith(await conversationsOf(stack.db, channelId), bob.id);
      expect(bobsConversations).toHaveLength(15);

      const response = await callApi(stack.api.url, admin, 'PUT', `/v1/users/${bob.id}/availability`, { available: false });
      expect(response).toMatchObject({ status: 200, body: { userId: bob.id, available: false } });

      const rows = await eventually(async () => {
        const rows = await conversationsOf(stack.db, channelId);
        return openWith(rows, bob.id).length === 0 ? rows : undefined;
      });
      expectConsistent(rows, await agentsOf(stack.db, channelId));
      // Alice and Carol have no free capacity: all of Bob's wait, ahead of everything queued before.
      expect(Object.fromEntries(loadOf(rows))).toEqual({ [alice.id]: 24, [carol.id]: 10 });
      const queue = await queueOf(stack.db, channelId);
      expect(new Set(queue.slice(0, 15))).toEqual(new Set(bobsConversations));
      await expectWorkflowsAgree(bobsConversations);

      // Capacity for four more: four of Bob's go to Carol, before anything that waited in the queue before.
      await setCapacity(carol.id, 14);
      const served = await eventually(async () => {
        const rows = await conversationsOf(stack.db, channelId);
        return openWith(rows, carol.id).length === 14 ? rows : undefined;
      });
      expect(openWith(served, carol.id)).toEqual(expect.arrayContaining(queue.slice(0, 4)));
      expectConsistent(served, await agentsOf(stack.db, channelId));
      await expectWorkflowsAgree(queue.slice(0, 4));
    });

    it('gives a returning agent conversations from the queue up to their capacity', async () => {
      const next = (await queueOf(stack.db, channelId)).slice(0, 15);
      const response = await callApi(stack.api.url, bob.apiKey, 'PUT', `/v1/users/${bob.id}/availability`, { available: true });
      expect(response).toMatchObject({ status: 200, body: { userId: bob.id, available: true } });

      const rows = await eventually(async () => {
        const rows = await conversationsOf(stack.db, channelId);
        return openWith(rows, bob.id).length === 15 ? rows : undefined;
      });
      expect(new Set(openWith(rows, bob.id))).toEqual(new Set(next));
      expectConsistent(rows, await agentsOf(stack.db, channelId));
      expect(Object.fromEntries(loadOf(rows))).toEqual({ [alice.id]: 24, [bob.id]: 15, [carol.id]: 14 });
      await expectWorkflowsAgree(next);
    });

    it('leaves none of the open conversations of an agent removed from the channel with them', async () => {
      const carolsConversations = openWith(await conversationsOf(stack.db, channelId), carol.id);
      expect(carolsConversations).toHaveLength(14);

      const response = await callApi(stack.api.url, admin, 'DELETE', `/v1/channels/${channelId}/agents/${carol.id}`);
      expect(response.status).toBe(204);

      const rows = await eventually(async () => {
        const rows = await conversationsOf(stack.db, channelId);
        return openWith(rows, carol.id).length === 0 ? rows : undefined;
      });
      const agents = await agentsOf(stack.db, channelId);
      expect(agents.map((agent) => agent.userId).sort()).toEqual([alice.id, bob.id].sort());
      expectConsistent(rows, agents);
      const byId = new Map(rows.map((row) => [row.id, row]));
      expect(carolsConversations.map((id) => inQueue(byId.get(id)!))).toEqual(carolsConversations.map(() => true));
      const listed = await callApi(stack.api.url, admin, 'GET', `/v1/channels/${channelId}/agents`);
      expect(listed.body.data.map((agent: { userId: string }) => agent.userId)).not.toContain(carol.id);
      await expectWorkflowsAgree(carolsConversations);
    });
  });

  it('hands the conversations of an agent who becomes unavailable to agents with free capacity; the rest waits first in line', async () => {
    const address = 'small@acme.example';
    const team = await seedSupportTeam(stack.db, { name: 'Small', emailAddress: address });
    const [alice, bob] = team.agents as [{ id: string; apiKey: string }, { id: string; apiKey: string }];
    const channelId = team.channel.id;
    const carol = await addAgent(team.account.id, channelId, 'Carol Agent');
    await stack.db
      .updateTable('channels')
      .set({ assignment_strategy: 'load', default_agent_capacity: 3 })
      .where('id', '=', channelId)
      .execute();

    await postMails(team.channel, address, 1001, 7);
    const rows = await settled(stack.db, channelId, 7);
    expect(rows.filter((row) => withAgent(row))).toHaveLength(7);
    const bobs = rows.filter((row) => row.assignee_id === bob.id);
    expect(bobs.length).toBeGreaterThanOrEqual(2);

    const away = await callApi(stack.api.url, bob.apiKey, 'PUT', `/v1/users/${bob.id}/availability`, { available: false });
    expect(away.status).toBe(200);
    // Alice and Carol have room for all but one of Bob's; the newest of his waits, first in line.
    const handedOn = await eventually(async () => {
      const rows = await conversationsOf(stack.db, channelId);
      return openWith(rows, bob.id).length === 0 && rows.every(isSettled) && (await queueOf(stack.db, channelId)).length === 1
        ? rows
        : undefined;
    });
    expectConsistent(handedOn, await agentsOf(stack.db, channelId));
    expect(Object.fromEntries(loadOf(handedOn))).toEqual({ [alice.id]: 3, [carol.id]: 3 });
    // The newest of his in the queue's own order: created_at to the microsecond (a Date keeps milliseconds), then id.
    const { id: waiting } = await stack.db
      .selectFrom('conversations')
      .select('id')
      .where(
        'id',
        'in',
        bobs.map((row) => row.id),
      )
      .orderBy('created_at', 'desc')
      .orderBy('id', 'desc')
      .executeTakeFirstOrThrow();
    expect(await queueOf(stack.db, channelId)).toEqual([waiting]);
    await expectWorkflowsAgree(bobs.map((row) => row.id));

    const back = await callApi(stack.api.url, bob.apiKey, 'PUT', `/v1/users/${bob.id}/availability`, { available: true });
    expect(back.status).toBe(200);
    const served = await eventually(async () => {
      const rows = await conversationsOf(stack.db, channelId);
      return openWith(rows, bob.id).length === 1 ? rows : undefined;
    });
    expect(openWith(served, bob.id)).toEqual([waiting]);
    await expectWorkflowsAgree([waiting]);
  });

  it('spreads 12 conversations arriving at once evenly over three agents by round robin (difference at most 1)', async () => {
    const address = 'round-robin@acme.example';
    const team = await seedSupportTeam(stack.db, { name: 'Round robin', emailAddress: address });
    const channelId = team.channel.id;
    await addAgent(team.account.id, channelId, 'Carol Agent');
    await stack.db
      .updateTable('channels')
      .set({ assignment_strategy: 'round_robin', default_agent_capacity: 10 })
      .where('id', '=', channelId)
      .execute();

    const ids = await postMails(team.channel, address, 2001, 12);
    const rows = await settled(stack.db, channelId, 12);
    const agents = await agentsOf(stack.db, channelId);
    expectConsistent(rows, agents);
    expect(rows.filter((row) => withAgent(row))).toHaveLength(12);
    const counts = agents.map((agent) => loadOf(rows).get(agent.userId) ?? 0);
    expect(Math.max(...counts) - Math.min(...counts), `conversations per agent: ${counts.join(', ')}`).toBeLessThanOrEqual(1);
    await expectWorkflowsAgree(ids);
  });

  describe('manual assignment through PUT /v1/conversations/{id}/assignment', () => {
    const address = 'manual@acme.example';
    let team: Awaited<ReturnType<typeof seedSupportTeam>>;
    let alice: { id: string; apiKey: string };
    let bob: { id: string; apiKey: string };
    let next = 3001;

    const assign = (apiKey: string, conversationId: string, assigneeId: string | null) =>
      callApi(stack.api.url, apiKey, 'PUT', `/v1/conversations/${conversationId}/assignment`, { assigneeId });
    const row = (conversationId: string) =>
      stack.db
        .selectFrom('conversations')
        .select(['id', 'status', 'stage', 'assignee_id', 'queued_at', 'created_at'])
        .where('id', '=', conversationId)
        .executeTakeFirstOrThrow();
    /** One new conversation, once it is assigned or queued and its workflow has recorded that stage. */
    const arrives = async () => {
      const [conversationId] = await postMails(team.channel, address, next++, 1);
      const recorded = (found: ConversationRow) =>
        (withAgent(found) && found.stage === 'assigned') || (inQueue(found) && found.stage === 'queued');
      await eventually(async () => (recorded(await row(conversationId!)) ? true : undefined));
      return row(conversationId!);
    };

    beforeAll(async () => {
      team = await seedSupportTeam(stack.db, { name: 'Manual', emailAddress: address });
      [alice, bob] = team.agents as [typeof alice, typeof bob];
      await stack.db
        .updateTable('channels')
        .set({ assignment_strategy: 'round_robin', default_agent_capacity: 2 })
        .where('id', '=', team.channel.id)
        .execute();
    });

    it('unassigning gives the conversation to another agent with free capacity, or queues it; assigning by hand ignores capacity', async () => {
      const first = await arrives();
      const second = await arrives();
      expect([first.assignee_id, second.assignee_id]).toEqual([alice.id, bob.id]);

      // Alice gives hers up: Bob has room for it.
      const unassigned = await assign(alice.apiKey, first.id, null);
      expect(unassigned).toMatchObject({ status: 200, body: { assigneeId: bob.id } });
      expect(await row(first.id)).toMatchObject({ stage: 'assigned', assignee_id: bob.id });
      await expectWorkflowsAgree([first.id]);

      // Bob is full (2 of 2): the next two go to Alice, the one after waits.
      const third = await arrives();
      const fourth = await arrives();
      const fifth = await arrives();
      expect([third.assignee_id, fourth.assignee_id, fifth.assignee_id]).toEqual([alice.id, alice.id, null]);
      expect(fifth.stage).toBe('queued');

      // By hand, Bob takes a third conversation although his capacity is 2.
      const manual = await assign(team.admin.apiKey, fifth.id, bob.id);
      expect(manual).toMatchObject({ status: 200, body: { assigneeId: bob.id } });
      expect(await row(fifth.id)).toMatchObject({ stage: 'assigned', assignee_id: bob.id, queued_at: null });
      expect(openWith(await conversationsOf(stack.db, team.channel.id), bob.id)).toHaveLength(3);
      await expectWorkflowsAgree([fifth.id]);

      // Alice gives one up, and nobody else has room (Bob is over capacity): it waits in the queue.
      const queued = await assign(alice.apiKey, third.id, null);
      expect(queued).toMatchObject({ status: 200, body: { assigneeId: null } });
      const waiting = await row(third.id);
      expect(waiting).toMatchObject({ stage: 'queued', assignee_id: null });
      expect(waiting.queued_at).not.toBeNull();
      await expectWorkflowsAgree([third.id]);
    });

    it('answers 422 naming assigneeId for someone who is not an agent of the channel', async () => {
      const conversation = await arrives();
      const outsider = await seedSupportTeam(stack.db, { name: 'Elsewhere', emailAddress: 'elsewhere@other.example' });
      for (const assigneeId of [team.admin.id, outsider.agents[0]!.id, randomUUID()]) {
        const response = await assign(alice.apiKey, conversation.id, assigneeId);
        expect(response).toMatchObject({ status: 422, contentType: 'application/problem+json' });
        expect(response.body.errors).toEqual([{ field: 'assigneeId', message: expect.stringContaining(assigneeId) }]);
      }
      expect(await row(conversation.id)).toEqual(conversation);
    });

    it("answers 404 for another account's conversation, as for a missing one", async () => {
      const conversation = await arrives();
      const outsider = await seedSupportTeam(stack.db, { name: 'Elsewhere 2', emailAddress: 'elsewhere-2@other.example' });
      const theirAgent = outsider.agents[0]!;
      for (const [apiKey, assigneeId] of [
        [theirAgent.apiKey, theirAgent.id],
        [theirAgent.apiKey, null],
        [outsider.admin.apiKey, bob.id],
      ] as const) {
        const response = await assign(apiKey, conversation.id, assigneeId);
        expect(response).toMatchObject({ status: 404, contentType: 'application/problem+json' });
      }
      expect((await assign(alice.apiKey, randomUUID(), bob.id)).status).toBe(404);
      expect(await row(conversation.id)).toEqual(conversation);
    });
  });
});

// The activities on their own against PostgreSQL, with enough pooled connections that their transactions
// really run at the same time: only the channel row lock keeps agents within capacity.
describe('assignment racing at the database (no Temporal)', () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;

  beforeAll(async () => {
    database = await createTestDatabase();
  });

  afterAll(async () => {
    await database?.drop();
  });

  async function seedChannel(strategy: AssignmentStrategy, capacities: Array<number | null>) {
    const { db } = database;
    const account = await createAccount(db, 'Race');
    const channel = await createChannel(db, {
      accountId: account.id,
      name: `Race ${strategy}`,
      emailAddress: 'race@acme.example',
    });
    await db.updateTable('channels').set({ assignment_strategy: strategy }).where('id', '=', channel.id).execute();
    const agents: string[] = [];
    for (const [i, capacity] of capacities.entries()) {
      const user = await createUser(db, {
        accountId: account.id,
        name: `Agent ${i}`,
        email: `agent-${i}@race.example`,
        role: 'agent',
      });
      await addAgentToChannel(db, channel.id, user.id);
      await db
        .updateTable('channel_agents')
        .set({ capacity })
        .where('channel_id', '=', channel.id)
        .where('user_id', '=', user.id)
        .execute();
      agents.push(user.id);
    }
    const contactId = randomUUID();
    await db.insertInto('contacts').values({ id: contactId, account_id: account.id, email: 'customer@race.example' }).execute();
    const newConversations = async (count: number) => {
      const ids = Array.from({ length: count }, () => randomUUID());
      await db
        .insertInto('conversations')
        .values(
          ids.map((id, i) => ({
            id,
            account_id: account.id,
            channel_id: channel.id,
            contact_id: contactId,
            subject: `Question ${i}`,
            status: 'open' as const,
            stage: 'triage' as const,
            updated_at: new Date(),
          })),
        )
        .execute();
      return ids;
    };
    return { channelId: channel.id, agents, newConversations };
  }

  const activities = () => {
    const deps = { db: database.db } as unknown as ActivityDeps;
    return { ...createAssignmentActivities(deps), ...createConversationActivities(deps) };
  };

  /** What the calls answered agrees with the database: who got their own conversation, and nothing else moved. */
  function expectAnswersAgree(ids: readonly string[], results: readonly QueueResult[], rows: readonly ConversationRow[]) {
    const byId = new Map(rows.map((row) => [row.id, row]));
    expect(ids.map((id, i) => results[i]!.assignee?.id ?? null)).toEqual(ids.map((id) => byId.get(id)!.assignee_id));
    expect(results.flatMap((result) => result.othersAssigned)).toEqual([]);
  }

  for (const strategy of ['load', 'round_robin'] as const) {
    it(`${strategy}: 200 concurrent assignments give out exactly the total capacity (45), nobody over it, the rest queued`, async () => {
      const { channelId, agents, newConversations } = await seedChannel(strategy, [20, 15, 10]);
      const ids = await newConversations(200);
      const { assignFromQueue } = activities();

      const results = await Promise.all(ids.map((conversationId) => assignFromQueue({ conversationId })));

      const rows = await conversationsOf(database.db, channelId);
      expectConsistent(rows, await agentsOf(database.db, channelId));
      expect(rows.filter((row) => withAgent(row))).toHaveLength(45);
      expect(rows.filter((row) => inQueue(row))).toHaveLength(155);
      expect(agents.map((id) => loadOf(rows).get(id) ?? 0)).toEqual([20, 15, 10]);
      expectAnswersAgree(ids, results, rows);
    });
  }

  it('round_robin gives the first conversation to who joined first, also when both joined within one millisecond', async () => {
    const { channelId, agents, newConversations } = await seedChannel('round_robin', [null, null]);
    // Joined 0.8 ms apart, the first with the larger user id: a millisecond clock would see a tie and pick by id.
    const [first, second] = [...agents].sort().reverse();
    for (const [userId, joined] of [
      [first!, '2026-01-01T00:00:00.000100Z'],
      [second!, '2026-01-01T00:00:00.000900Z'],
    ] as const) {
      await sql`update channel_agents set created_at = ${joined} where channel_id = ${channelId} and user_id = ${userId}`.execute(
        database.db,
      );
    }
    const [conversationId] = await newConversations(1);
    const result = await activities().assignFromQueue({ conversationId: conversationId! });
    expect(result.assignee?.id).toBe(first);
  });

  it('round_robin without capacity limits spreads 200 concurrent assignments evenly (difference at most 1)', async () => {
    const { channelId, agents, newConversations } = await seedChannel('round_robin', [null, null, null]);
    const ids = await newConversations(200);
    const { assignFromQueue } = activities();

    const results = await Promise.all(ids.map((conversationId) => assignFromQueue({ conversationId })));

    const rows = await conversationsOf(database.db, channelId);
    expectConsistent(rows, await agentsOf(database.db, channelId));
    expect(rows.filter((row) => withAgent(row))).toHaveLength(200);
    const counts = agents.map((id) => loadOf(rows).get(id) ?? 0);
    expect(Math.max(...counts) - Math.min(...counts), `conversations per agent: ${counts.join(', ')}`).toBeLessThanOrEqual(1);
    expectAnswersAgree(ids, results, rows);
  });

  it('resolutions racing new arrivals: every freed slot goes to the queue, oldest first, and nobody goes over capacity', async () => {
    const { channelId, agents, newConversations } = await seedChannel('load', [20, 15, 10]);
    const { assignFromQueue, markResolved } = activities();
    const first = await newConversations(100);
    await Promise.all(first.map((conversationId) => assignFromQueue({ conversationId })));
    const before = await conversationsOf(database.db, channelId);
    const queueBefore = await queueOf(database.db, channelId);
    const toResolve = agents.flatMap((userId) => openWith(before, userId).slice(0, 5));
    const arriving = await newConversations(30);

    const [resolutions, arrivals] = await Promise.all([
      Promise.all(
        toResolve.map((conversationId) => markResolved({ conversationId, resolvedBy: { kind: 'agent', id: agents[0]! } })),
      ),
      Promise.all(arriving.map((conversationId) => assignFromQueue({ conversationId }))),
    ]);

    const rows = await conversationsOf(database.db, channelId);
    expectConsistent(rows, await agentsOf(database.db, channelId));
    // The queue was never empty: every agent is full again.
    expect(agents.map((id) => loadOf(rows).get(id) ?? 0)).toEqual([20, 15, 10]);
    expect(
      rows
        .filter((row) => row.status === 'resolved')
        .map((row) => row.id)
        .sort(),
    ).toEqual([...toResolve].sort());
    // The freed slots went to the conversations that waited longest, reported to whoever must tell their workflows.
    const newlyAssigned = rows.filter((row) => withAgent(row) && !openWith(before, row.assignee_id!).includes(row.id));
    expect(new Set(newlyAssigned.map((row) => row.id))).toEqual(new Set(queueBefore.slice(0, toResolve.length)));
    const reported = [
      ...resolutions.flatMap((result) => result.othersAssigned),
      ...arrivals.flatMap((result, i) => (result.assignee ? [arriving[i]!] : [])),
      ...arrivals.flatMap((result) => result.othersAssigned),
    ];
    expect(new Set(reported)).toEqual(new Set(newlyAssigned.map((row) => row.id)));
    expect(reported).toHaveLength(newlyAssigned.length);
  });
});
