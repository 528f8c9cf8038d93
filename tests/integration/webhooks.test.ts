import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import type { z } from '@hono/zod-openapi';
import { createApp } from '../../src/api/app.js';
import { WEBHOOK_EVENT_PAYLOADS } from '../../src/api/schemas/webhook-events.js';
import { createLogger } from '../../src/logger.js';
import type { WebhookEventType } from '../../src/webhooks/events.js';
import { callApi, eventually, postMail } from '../support/http.js';
import { customerMail } from '../support/mail.js';
import { seedSupportTeam, startTestStack, TEST_INBOUND_DOMAIN, TEST_SECRET_KEY, type TestStack } from '../support/stack.js';

// Issue 13: backend services learn of every change by a signed webhook. A receiver on loopback that is down for
// the first attempts gets every event exactly once (by webhook-id) and in order per conversation once it is back,
// and checks each signature with the Standard Webhooks reference implementation; a subscriber failing throughout
// the retry window is disabled with the reason; URLs the destination policy refuses never get a request.

/**
 * The retry window of this stack: a day in production, seconds here so that the disabling can be watched; long enough
 * that on a busy machine an agent's reply still reaches a subscriber within it (the give-up test needs that success).
 */
const RETRY_WINDOW_MS = 30_000;
const ALL_EVENTS = [
  'message.received',
  'message.sent',
  'message.failed',
  'conversation.created',
  'conversation.assigned',
  'conversation.stage_changed',
  'conversation.resolved',
  'conversation.reopened',
  'conversation.sla_breached',
  'csat.rated',
];

interface Receipt {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  /** What the receiver answered. */
  status: number;
}

/** A subscriber's HTTP server on loopback: /hook fails its first `failFirst` requests, /down fails until it is up. */
async function startReceiver() {
  const receipts: Receipt[] = [];
  const state = { failFirst: 0, downIsUp: false };
  /** Requests to /down being answered right now, and the most at once of those that came after its first failure. */
  const down = { inFlight: 0, failed: false, mostAtOnceOnceFailing: 0 };
  const server: Server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const path = new URL(request.url ?? '/', 'http://receiver').pathname;
      let status = 200;
      if (path === '/hook' && state.failFirst > 0) {
        state.failFirst--;
        status = 503;
      }
      if (path === '/down' && !state.downIsUp) status = 503;
      // A subscriber that takes everything but a new conversation's announcement.
      if (path === '/picky' && JSON.parse(Buffer.concat(chunks).toString('utf8')).type === 'conversation.created') status = 422;
      receipts.push({ path, headers: request.headers, body: Buffer.concat(chunks).toString('utf8'), status });
      if (path === '/moved') {
        response.writeHead(302, { location: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook` });
        response.end();
        return;
      }
      const answer = () => {
        response.writeHead(status, { 'content-type': 'text/plain' });
        response.end(status === 200 ? 'ok' : 'unavailable');
      };
      if (path !== '/down' || status === 200) return answer();
      // A struggling subscriber answers slowly: attempts of several lanes at once would overlap here.
      down.inFlight++;
      if (down.failed) down.mostAtOnceOnceFailing = Math.max(down.mostAtOnceOnceFailing, down.inFlight);
      setTimeout(() => {
        down.inFlight--;
        down.failed = true;
        answer();
      }, 300);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    receipts,
    state,
    down,
    url: (path: string) => `${base}${path}`,
    accepted: (path: string) => receipts.filter((receipt) => receipt.path === path && receipt.status === 200),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe('webhooks', () => {
  let stack: TestStack;
  let team: Awaited<ReturnType<typeof seedSupportTeam>>;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  const admin = () => team.admin.apiKey;
  const api = (method: string, path: string, body?: unknown) => callApi(stack.api.url, admin(), method, path, body);

  beforeAll(async () => {
    stack = await startTestStack({ webhooks: { retryInitialMs: 100, retryMaxMs: 1_000, retryWindowMs: RETRY_WINDOW_MS } });
    team = await seedSupportTeam(stack.db, {
      name: 'Acme Support',
      emailAddress: 'support@acme.example',
      greeting: { text: 'Thanks for writing!' },
    });
    receiver = await startReceiver();
  });

  afterAll(async () => {
    await receiver?.close();
    await stack?.stop();
  });

  /** The subscription's deliveries in the order their lanes send them. */
  async function deliveriesOf(webhookId: string) {
    return stack.db
      .selectFrom('webhook_deliveries')
      .select(['id', 'conversation_id', 'event_type', 'status', 'seq'])
      .where('subscription_id', '=', webhookId)
      .orderBy('seq')
      .execute();
  }

  async function openConversation(messageId: string, from: string) {
    const posted = await postMail(stack.api.url, team.channel, customerMail({ messageId, from, subject: `About ${messageId}` }));
    expect(posted.status).toBe(202);
    return posted.body.conversationId as string;
  }

  /**
   * Checks each of the path's receipts with the reference verifier, that its body is the stored delivery's, and that
   * it is what the OpenAPI document's `webhooks` section declares for its type (no field the document does not name).
   */
  async function expectSigned(path: string, secret: string) {
    const verifier = new Webhook(secret);
    const receipts = receiver.receipts.filter((receipt) => receipt.path === path);
    expect(receipts.length).toBeGreaterThan(0);
    for (const receipt of receipts) {
      const event = verifier.verify(receipt.body, {
        'webhook-id': String(receipt.headers['webhook-id']),
        'webhook-timestamp': String(receipt.headers['webhook-timestamp']),
        'webhook-signature': String(receipt.headers['webhook-signature']),
      }) as { type: string; timestamp: string; data: { conversationId: string; channelId: string } };
      const stored = await stack.db
        .selectFrom('webhook_deliveries')
        .select(['event_type', 'conversation_id'])
        .where('id', '=', String(receipt.headers['webhook-id']))
        .executeTakeFirstOrThrow();
      expect(event).toMatchObject({
        type: stored.event_type,
        data: { conversationId: stored.conversation_id, channelId: team.channel.id },
      });
      const declared = WEBHOOK_EVENT_PAYLOADS[event.type as WebhookEventType];
      expect(declared.safeParse(event).error, event.type).toBeUndefined();
      const fields = Object.keys((declared.shape.data as z.ZodObject).shape);
      expect(
        Object.keys(event.data).filter((field) => !fields.includes(field)),
        event.type,
      ).toEqual([]);
    }
  }

  it('delivers every event exactly once and in order per conversation to a receiver that was down at first, signed', async () => {
    const created = await api('POST', '/v1/webhooks', {
      url: receiver.url('/hook'),
      events: ALL_EVENTS,
      description: 'inbox backend',
    });
    expect(created.status).toBe(201);
    expect(created.body.secret).toMatch(/^whsec_/);
    const webhookId = created.body.id as string;
    // The secret is shown once: never in a read or a list, and kept encrypted.
    expect((await api('GET', `/v1/webhooks/${webhookId}`)).body).not.toHaveProperty('secret');
    expect(JSON.stringify((await api('GET', '/v1/webhooks')).body)).not.toContain(created.body.secret);
    const stored = await stack.db
      .selectFrom('webhook_subscriptions')
      .select('secret_encrypted')
      .where('id', '=', webhookId)
      .executeTakeFirstOrThrow();
    expect(stored.secret_encrypted).not.toContain(created.body.secret.slice('whsec_'.length));

    receiver.state.failFirst = 3;
    const first = await openConversation('webhook-1@example.com', '"Ann Example" <ann@example.com>');
    const second = await openConversation('webhook-2@example.com', '"Ben Example" <ben@example.com>');
    const conversation = await eventually(async () => {
      const detail = await api('GET', `/v1/conversations/${first}`);
      return detail.body.assigneeId ? detail.body : undefined;
    });
    const agent = team.agents.find((candidate) => candidate.id === conversation.assigneeId)!;
    expect(
      (await callApi(stack.api.url, agent.apiKey, 'POST', `/v1/conversations/${first}/replies`, { text: 'Here you go.' })).status,
    ).toBe(201);
    await eventually(async () => {
      const sent = await stack.db
        .selectFrom('outbound_messages')
        .select('id')
        .where('conversation_id', '=', first)
        .where('kind', '=', 'reply')
        .where('delivery_status', '=', 'sent')
        .executeTakeFirst();
      return sent ? true : undefined;
    });
    expect((await callApi(stack.api.url, agent.apiKey, 'POST', `/v1/conversations/${first}/resolve`)).status).toBe(200);

    // Every delivery made so far is delivered (the last one being the resolution of the first conversation).
    const deliveries = await eventually(async () => {
      const rows = await deliveriesOf(webhookId);
      const resolved = rows.some((row) => row.conversation_id === first && row.event_type === 'conversation.resolved');
      return resolved && rows.every((row) => row.status === 'delivered') ? rows : undefined;
    }, 120_000);
    const types = new Set(deliveries.map((row) => row.event_type));
    for (const type of [
      'conversation.created',
      'message.received',
      'conversation.stage_changed',
      'conversation.assigned',
      'message.sent',
      'conversation.resolved',
    ]) {
      expect(types).toContain(type);
    }
    expect(deliveries.filter((row) => row.conversation_id === second).length).toBeGreaterThan(2);

    // Exactly once: one accepted request per delivery, none for anything else.
    const accepted = receiver.accepted('/hook');
    const acceptedIds = accepted.map((receipt) => String(receipt.headers['webhook-id']));
    const deliveredIds = new Set(deliveries.map((row) => row.id));
    for (const id of deliveredIds) expect(acceptedIds.filter((acceptedId) => acceptedId === id)).toHaveLength(1);
    const extra = acceptedIds.filter((id) => !deliveredIds.has(id));
    // Events after the snapshot (a later stage) may have arrived meanwhile: they are this subscription's too.
    const later = await deliveriesOf(webhookId);
    expect(extra.every((id) => later.some((row) => row.id === id))).toBe(true);
    expect(new Set(acceptedIds).size).toBe(acceptedIds.length);

    // In order per conversation: what the receiver accepted is the order the changes were committed in.
    for (const conversationId of [first, second]) {
      const committed = later
        .filter((row) => row.conversation_id === conversationId && deliveredIds.has(row.id))
        .map((row) => row.id);
      const received = acceptedIds.filter((id) => committed.includes(id));
      expect(received).toEqual(committed);
      const events = later.filter((row) => row.conversation_id === conversationId).map((row) => row.event_type);
      expect(events.slice(0, 2)).toEqual(['conversation.created', 'message.received']);
    }

    // Each stage change is told once, in the order the conversation went through them: the queue's assignment and the
    // resolution write the stage in their own transaction, with its delivery.
    const stages = await stack.db
      .selectFrom('webhook_deliveries')
      .select(sql<string>`payload->'data'->>'stage'`.as('stage'))
      .where('subscription_id', '=', webhookId)
      .where('conversation_id', '=', first)
      .where('event_type', '=', 'conversation.stage_changed')
      .orderBy('seq')
      .execute();
    expect(stages.map((row) => row.stage)).toEqual(['assigned', 'resolved']);

    // Every request, the refused ones too, verifies with the reference algorithm; the first three were refused.
    await expectSigned('/hook', created.body.secret);
    expect(receiver.receipts.filter((receipt) => receipt.path === '/hook' && receipt.status === 503)).toHaveLength(3);

    // The payload: the event's type, time and data, with what a backend needs of the received mail.
    const received = accepted.find(
      (receipt) => JSON.parse(receipt.body).type === 'message.received' && JSON.parse(receipt.body).data.conversationId === first,
    )!;
    expect(JSON.parse(received.body)).toMatchObject({
      type: 'message.received',
      timestamp: expect.any(String),
      data: {
        conversationId: first,
        channelId: team.channel.id,
        subject: 'About webhook-1@example.com',
        from: { address: 'ann@example.com', name: 'Ann Example' },
        receivedVia: 'forwarder',
        imported: false,
      },
    });

    // The attempts are listed: the refused ones with their status, then the success, on the same webhook-id.
    const listed = await api('GET', `/v1/webhooks/${webhookId}/deliveries?limit=100`);
    expect(listed.status).toBe(200);
    const retried = (listed.body.data as any[]).filter((delivery) =>
      delivery.attempts.some((attempt: any) => attempt.statusCode === 503),
    );
    expect(retried.length).toBeGreaterThan(0);
    expect(retried.flatMap((delivery) => delivery.attempts).filter((attempt: any) => attempt.statusCode === 503)).toHaveLength(3);
    for (const delivery of retried) {
      expect(delivery).toMatchObject({ status: 'delivered', lastStatusCode: 200, attemptCount: delivery.attempts.length });
      expect(delivery.attempts.at(-1)).toMatchObject({ statusCode: 200, error: null });
      expect(delivery.attempts[0]).toMatchObject({ statusCode: 503, error: 'HTTP 503' });
    }
    const page = await api('GET', `/v1/webhooks/${webhookId}/deliveries?limit=2`);
    expect(page.body.data).toHaveLength(2);
    const next = await api('GET', `/v1/webhooks/${webhookId}/deliveries?limit=2&cursor=${page.body.nextCursor}`);
    expect(next.body.data.map((d: any) => d.id)).not.toContain(page.body.data[0].id);

    // A redelivery goes out again with the same webhook-id and body: the receiver dedupes on the id.
    const again = deliveries.find((row) => row.event_type === 'conversation.created' && row.conversation_id === first)!;
    const redelivered = await api('POST', `/v1/webhooks/${webhookId}/deliveries/${again.id}/redeliver`);
    expect(redelivered).toMatchObject({ status: 202, body: { id: again.id, status: 'pending' } });
    const copies = await eventually(async () => {
      const found = receiver.accepted('/hook').filter((receipt) => receipt.headers['webhook-id'] === again.id);
      return found.length === 2 ? found : undefined;
    });
    expect(copies[1]!.body).toBe(copies[0]!.body);
    await expectSigned('/hook', created.body.secret);
    const afterRedelivery = await api('GET', `/v1/webhooks/${webhookId}/deliveries?limit=100`);
    expect((afterRedelivery.body.data as any[]).find((d) => d.id === again.id)).toMatchObject({ status: 'delivered' });

    // Agents do not manage webhooks.
    expect((await callApi(stack.api.url, agent.apiKey, 'GET', '/v1/webhooks')).status).toBe(403);
  });

  it('disables a subscriber that failed throughout the retry window, says why, and sends what waited once enabled', async () => {
    const created = await api('POST', '/v1/webhooks', {
      url: receiver.url('/down'),
      events: ['conversation.created', 'message.received'],
    });
    expect(created.status).toBe(201);
    const webhookId = created.body.id as string;
    const conversations = [
      await openConversation('webhook-down-1@example.com', '"Cy Example" <cy@example.com>'),
      await openConversation('webhook-down-2@example.com', '"Dora Example" <dora@example.com>'),
      await openConversation('webhook-down-3@example.com', '"Ed Example" <ed@example.com>'),
    ];

    const disabled = await eventually(async () => {
      const webhook = await api('GET', `/v1/webhooks/${webhookId}`);
      return webhook.body.enabled === false ? webhook.body : undefined;
    }, RETRY_WINDOW_MS + 120_000);
    expect(disabled.disabledReason).toMatch(/^every delivery failed since \d{4}-\d\d-\d\dT.*; the last: HTTP 503$/);
    expect(disabled.disabledAt).not.toBeNull();
    // Once it was known to fail, its three lanes tried it one at a time: a dead subscriber is not hammered by each
    // conversation (only the first attempts, made before any had failed, went at once).
    expect(receiver.down.mostAtOnceOnceFailing).toBe(1);
    const failedRequests = receiver.receipts.filter((receipt) => receipt.path === '/down').length;
    const { recorded } = await stack.db
      .selectFrom('webhook_attempts as a')
      .innerJoin('webhook_deliveries as d', 'd.id', 'a.delivery_id')
      .select((eb) => eb.fn.countAll<string>().as('recorded'))
      .where('d.subscription_id', '=', webhookId)
      .executeTakeFirstOrThrow();
    expect(Number(recorded)).toBe(failedRequests);
    // Nothing was lost: the events wait, and a redelivery is refused while it is disabled.
    const waiting = await deliveriesOf(webhookId);
    expect(waiting).toHaveLength(6);
    expect(waiting.every((row) => row.status === 'pending')).toBe(true);
    for (const conversationId of conversations) {
      expect(waiting.filter((row) => row.conversation_id === conversationId).map((row) => row.event_type)).toEqual([
        'conversation.created',
        'message.received',
      ]);
    }
    expect((await api('POST', `/v1/webhooks/${webhookId}/deliveries/${waiting[0]!.id}/redeliver`)).status).toBe(409);

    receiver.state.downIsUp = true;
    const enabled = await api('PATCH', `/v1/webhooks/${webhookId}`, { enabled: true });
    expect(enabled.body).toMatchObject({ enabled: true, disabledReason: null, failingSince: null });
    await eventually(
      async () => ((await deliveriesOf(webhookId)).every((row) => row.status === 'delivered') ? true : undefined),
      60_000,
    );
    const accepted = receiver.accepted('/down').map((receipt) => String(receipt.headers['webhook-id']));
    expect([...accepted].sort()).toEqual(waiting.map((row) => row.id).sort());
    for (const conversationId of conversations) {
      const inOrder = waiting.filter((row) => row.conversation_id === conversationId).map((row) => row.id);
      expect(accepted.filter((id) => inOrder.includes(id))).toEqual(inOrder);
    }
    await expectSigned('/down', created.body.secret);
  });

  it('gives up an event the subscriber keeps refusing after the retry window, while it takes the others', async () => {
    // A conversation from before the subscription, whose later events it does take.
    const taken = await openConversation('webhook-picky-1@example.com', '"Hal Example" <hal@example.com>');
    const { assigneeId } = await eventually(async () => {
      const detail = await api('GET', `/v1/conversations/${taken}`);
      return detail.body.assigneeId ? detail.body : undefined;
    });
    const agent = team.agents.find((candidate) => candidate.id === assigneeId)!;
    // Its greeting goes out after the assignment: sent before the subscription exists, it is not one of its events.
    await eventually(() =>
      stack.db
        .selectFrom('conversation_events')
        .select('id')
        .where('conversation_id', '=', taken)
        .where('type', '=', 'greeting_sent')
        .executeTakeFirst(),
    );
    const created = await api('POST', '/v1/webhooks', {
      url: receiver.url('/picky'),
      events: ['conversation.created', 'message.sent'],
    });
    const webhookId = created.body.id as string;
    // The agent keeps answering the other conversation, every 2 s until the refused event is given up. The subscriber
    // takes those, so it is not failing throughout (which disables it instead of giving one event up), however long a
    // busy machine takes from a reply to its delivery: the successes are flowing before the refused event's first try.
    let answering = true;
    const answers = (async () => {
      while (answering) {
        const reply = await callApi(stack.api.url, agent.apiKey, 'POST', `/v1/conversations/${taken}/replies`, {
          text: 'Noted.',
        });
        expect(reply.status).toBe(201);
        await sleep(2_000);
      }
    })();
    const takenDeliveries = async () => (await deliveriesOf(webhookId)).filter((row) => row.conversation_id === taken);
    let given;
    try {
      await eventually(async () => (await takenDeliveries()).find((row) => row.status === 'delivered'), 60_000);
      const refused = await openConversation('webhook-picky-2@example.com', '"Ida Example" <ida@example.com>');
      const refusedDelivery = await eventually(async () => {
        const rows = await deliveriesOf(webhookId);
        return rows.find((delivery) => delivery.conversation_id === refused && delivery.event_type === 'conversation.created');
      });
      given = await eventually(async () => {
        const rows = await deliveriesOf(webhookId);
        return rows.find((row) => row.id === refusedDelivery!.id && row.status === 'failed');
      }, RETRY_WINDOW_MS + 60_000);
      expect(given).toMatchObject({ event_type: 'conversation.created', conversation_id: refused });
    } finally {
      answering = false;
      await answers;
    }
    const sent = await takenDeliveries();
    expect(new Set(sent.map((row) => row.event_type))).toEqual(new Set(['message.sent']));
    expect(sent.filter((row) => row.status === 'failed')).toEqual([]);
    const webhook = await api('GET', `/v1/webhooks/${webhookId}`);
    expect(webhook.body).toMatchObject({ enabled: true, disabledReason: null });
    const listed = await api('GET', `/v1/webhooks/${webhookId}/deliveries?status=failed`);
    expect(listed.body.data.map((delivery: { id: string }) => delivery.id)).toEqual([given!.id]);
    expect(listed.body.data[0]).toMatchObject({ status: 'failed', lastStatusCode: 422, lastError: 'HTTP 422' });
    await api('DELETE', `/v1/webhooks/${webhookId}`);
  });

  it('delivers what was committed while no worker ran, once one is back', async () => {
    const created = await api('POST', '/v1/webhooks', { url: receiver.url('/later'), events: ['conversation.created'] });
    expect(created.status).toBe(201);
    const webhookId = created.body.id as string;
    let conversationId = '';
    await stack.runWithoutWorker(async () => {
      // The change and its delivery are committed; nobody is there to hand it over.
      conversationId = await openConversation('webhook-later@example.com', '"Flo Example" <flo@example.com>');
      const [delivery] = await deliveriesOf(webhookId);
      expect(delivery).toMatchObject({ event_type: 'conversation.created', status: 'pending', conversation_id: conversationId });
    });
    const [delivered] = await eventually(async () => {
      const rows = await deliveriesOf(webhookId);
      return rows[0]?.status === 'delivered' ? rows : undefined;
    }, 60_000);
    const accepted = receiver.accepted('/later');
    expect(accepted.map((receipt) => receipt.headers['webhook-id'])).toEqual([delivered!.id]);
    expect(JSON.parse(accepted[0]!.body).data.conversationId).toBe(conversationId);
  });

  it('forgets deliveries 30 days after they ended, never one still waiting', async () => {
    const created = await api('POST', '/v1/webhooks', { url: receiver.url('/old'), events: ['csat.rated'] });
    const webhookId = created.body.id as string;
    // The subscription has since been disabled: its waiting delivery stays however old it is.
    await api('PATCH', `/v1/webhooks/${webhookId}`, { enabled: false });
    const conversationId = await openConversation('webhook-old@example.com', '"Gus Example" <gus@example.com>');
    const row = (status: 'pending' | 'delivered' | 'failed', daysAgo: number) => ({
      id: randomUUID(),
      subscription_id: webhookId,
      account_id: team.account.id,
      conversation_id: conversationId,
      event_type: 'csat.rated',
      payload: JSON.stringify({ type: 'csat.rated', timestamp: new Date().toISOString(), data: {} }),
      status,
      created_at: new Date(Date.now() - daysAgo * 24 * 60 * 60_000),
    });
    const [oldDelivered, oldFailed, recentDelivered, oldPending] = [
      row('delivered', 31),
      row('failed', 40),
      row('delivered', 29),
      row('pending', 60),
    ];
    await stack.db.insertInto('webhook_deliveries').values([oldDelivered!, oldFailed!, recentDelivered!, oldPending!]).execute();
    await stack.db
      .insertInto('webhook_attempts')
      .values({ id: randomUUID(), delivery_id: oldDelivered!.id, status_code: 200, error: null, duration_ms: 3 })
      .execute();
    const left = await eventually(async () => {
      const ids = (await deliveriesOf(webhookId)).map((delivery) => delivery.id);
      return ids.includes(oldDelivered!.id) || ids.includes(oldFailed!.id) ? undefined : ids;
    }, 60_000);
    expect(left.sort()).toEqual([recentDelivered!.id, oldPending!.id].sort());
    const attempts = await stack.db
      .selectFrom('webhook_attempts')
      .select('id')
      .where('delivery_id', '=', oldDelivered!.id)
      .execute();
    expect(attempts).toEqual([]);
  });

  it('follows no redirect, and refuses at delivery a destination the policy forbids', async () => {
    const created = await api('POST', '/v1/webhooks', { url: receiver.url('/moved'), events: ['conversation.created'] });
    expect(created.status).toBe(201);
    const webhookId = created.body.id as string;
    await openConversation('webhook-moved@example.com', '"Di Example" <di@example.com>');
    const [delivery] = await eventually(async () => {
      const listed = await api('GET', `/v1/webhooks/${webhookId}/deliveries`);
      return listed.body.data[0]?.attempts.length > 0 ? listed.body.data : undefined;
    });
    expect(delivery.attempts[0]).toMatchObject({ statusCode: 302, error: 'HTTP 302' });
    expect(
      receiver.receipts.filter((receipt) => receipt.path === '/hook' && receipt.headers['webhook-id'] === delivery.id),
    ).toEqual([]);

    // The name now points inside the network (as a changed DNS answer would): the next attempt is refused, unsent.
    await stack.db
      .updateTable('webhook_subscriptions')
      .set({ url: 'http://10.255.255.1/hook' })
      .where('id', '=', webhookId)
      .execute();
    const refused = await eventually(async () => {
      const listed = await api('GET', `/v1/webhooks/${webhookId}/deliveries`);
      return listed.body.data[0].attempts.find((attempt: any) => attempt.error?.startsWith('destination refused'));
    });
    expect(refused).toMatchObject({
      statusCode: null,
      error: 'destination refused: 10.255.255.1 is a private address, which is not allowed',
    });
    expect((await api('DELETE', `/v1/webhooks/${webhookId}`)).status).toBe(204);
    expect(
      await stack.db.selectFrom('webhook_deliveries').select('id').where('subscription_id', '=', webhookId).execute(),
    ).toEqual([]);
  });

  it('refuses URLs the destination policy forbids when saved, as 422 naming url', async () => {
    const refusals = [
      'ftp://example.com/hook',
      'http://10.0.0.1/hook',
      'https://user:secret@example.com/hook',
      'https://[fd00::1]/hook',
      'not a url',
      `https://example.com/${'a'.repeat(2000)}`,
    ];
    for (const url of refusals) {
      const answer = await api('POST', '/v1/webhooks', { url, events: ['message.received'] });
      expect(answer, url).toMatchObject({ status: 422, contentType: 'application/problem+json' });
      expect(answer.body.errors[0].field).toBe('url');
    }
    const badEvents = await api('POST', '/v1/webhooks', { url: receiver.url('/hook'), events: ['message.deleted'] });
    expect(badEvents.status).toBe(422);
    expect(badEvents.body.errors[0].field).toMatch(/^events/);

    // With production's policy (no private network allowed) loopback is refused, by address and by name.
    const production = createApp({
      db: stack.db,
      temporal: stack.temporal,
      ingest: undefined as never,
      logger: createLogger('silent'),
      config: {
        SECRET_KEY: TEST_SECRET_KEY,
        MAX_INBOUND_BYTES: 1024 * 1024,
        PUBLIC_URL: 'https://mailroom.example',
        INBOUND_DOMAIN: TEST_INBOUND_DOMAIN,
        RATE_LIMIT_API_KEY_PER_MINUTE: 0,
      },
    });
    const save = async (url: string) => {
      const response = await production.request('/v1/webhooks', {
        method: 'POST',
        headers: { authorization: `Bearer ${admin()}`, 'content-type': 'application/json' },
        body: JSON.stringify({ url, events: ['message.received'] }),
      });
      return { status: response.status, body: (await response.json()) as any };
    };
    expect(await save(receiver.url('/hook'))).toMatchObject({
      status: 422,
      body: { errors: [{ field: 'url', message: 'must be https' }] },
    });
    expect(await save('https://127.0.0.1/hook')).toMatchObject({
      status: 422,
      body: { errors: [{ field: 'url', message: '127.0.0.1 is a private address, which is not allowed' }] },
    });
    // The cloud metadata service, an IPv4-mapped loopback, "this host" and loopback written as one number.
    for (const url of [
      'https://169.254.169.254/latest/meta-data/',
      'https://[::ffff:127.0.0.1]/hook',
      'https://0.0.0.0/hook',
      'https://2130706433/hook',
    ]) {
      const refused = await save(url);
      expect(refused, url).toMatchObject({ status: 422, body: { errors: [{ field: 'url' }] } });
      expect(refused.body.errors[0].message, url).toMatch(/is a private address, which is not allowed$/);
    }
    const byName = await save('https://localhost/hook');
    expect(byName).toMatchObject({ status: 422, body: { errors: [{ field: 'url' }] } });
    expect(byName.body.errors[0].message).toMatch(/^localhost resolves to a private address \(loopback\)/);
  });

  it('allows at most 20 subscriptions per account', async () => {
    const existing = (await api('GET', '/v1/webhooks?limit=100')).body.data.length as number;
    for (let index = existing; index < 20; index++) {
      expect((await api('POST', '/v1/webhooks', { url: receiver.url(`/spare-${index}`), events: ['csat.rated'] })).status).toBe(
        201,
      );
    }
    const over = await api('POST', '/v1/webhooks', { url: receiver.url('/one-too-many'), events: ['csat.rated'] });
    expect(over).toMatchObject({ status: 409, contentType: 'application/problem+json' });
    expect(over.body.type).toMatch(/webhook-limit$/);
  });
});
