import { randomUUID } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { ApplicationFailure, Context } from '@temporalio/activity';
import type { Client } from '@temporalio/client';
import { sql, type Kysely } from 'kysely';
import type { Database, WebhookDeliveryStatus } from '../db/schema.js';
import { webhookDeliveries } from '../observability/metrics.js';
import { decryptCredential } from '../security/credentials.js';
import { wakeWebhookLane } from '../temporal/webhooks.js';
import { checkWebhookUrl, postWebhook, WebhookUrlError } from '../webhooks/http.js';
import { signWebhook } from '../webhooks/signing.js';
import type { WebhookLaneInput } from '../workflows/webhooks.js';
import type { ActivityDeps } from './deps.js';

// The two sides of webhook delivery: the dispatcher hands committed deliveries to their lanes (a workflow per
// subscription and conversation), and a lane sends one delivery at a time, recording every attempt.

/** How deliveries are retried and handed over; WEBHOOK_* settings, shorter in tests. */
export interface WebhookDeliverySettings {
  /** The dispatcher starts and wakes lanes with it; without it no delivery is handed over. */
  temporal?: Client;
  /** The first wait after a failed attempt, doubling up to retryMaxMs. */
  retryInitialMs?: number;
  retryMaxMs?: number;
  /** An event is given up this long after its first attempt; a subscription failing throughout this long is disabled. */
  retryWindowMs?: number;
  /** One POST's deadline. */
  timeoutMs?: number;
}

const DEFAULTS = {
  retryInitialMs: 5_000,
  retryMaxMs: 60 * 60_000,
  retryWindowMs: 24 * 60 * 60_000,
  timeoutMs: 15_000,
};

/** How long resolving a subscriber's host may take besides its POST (the destination policy's lookup deadline). */
const DNS_TIMEOUT_MS = 10_000;
/** Delivered or given-up deliveries (payloads and attempts) are kept this long, for the deliveries list. */
export const ENDED_DELIVERIES_KEPT_DAYS = 30;
/** Ended deliveries one dispatcher run forgets at most; the next run goes on. */
const FORGOTTEN_PER_RUN = 1000;
/** Lanes a dispatcher pass hands over at most; the next pass goes on. */
const LANES_PER_PASS = 200;
/** A handed-over delivery its lane has not touched for this long past the expected time is handed over again. */
const LANE_LOST_AFTER = '1 minute';

export type WebhookAttemptResult =
  | { outcome: 'delivered' }
  /** Failed; the lane waits retryInMs and tries again. `failure` is a status code or an error class, never content. */
  | { outcome: 'retry'; retryInMs: number; failure: string }
  /** Failed past the retry window: given up (it can be redelivered). */
  | { outcome: 'gave_up'; failure: string }
  /** Not to be sent now: delivered or given up meanwhile, deleted, or its subscription disabled. */
  | { outcome: 'skipped' };

export function createWebhookActivities({ db, secretKey, allowedPrivateNetworks, webhooks = {} }: ActivityDeps) {
  const settings = { ...DEFAULTS, ...webhooks };

  /** Marks the lane's pending deliveries as its own until `untilMs` from now, so the dispatcher leaves them alone. */
  async function holdLane(lane: WebhookLaneInput, untilMs: number, executor: Kysely<Database> = db) {
    await executor
      .updateTable('webhook_deliveries')
      .set({ dispatched_until: sql<Date>`now() + ${untilMs} * interval '1 millisecond'` })
      .where('subscription_id', '=', lane.subscriptionId)
      .where('conversation_id', '=', lane.conversationId)
      .where('status', '=', 'pending')
      .execute();
  }

  return {
    /**
     * For `runMs`, every `intervalMs`: finds lanes with deliveries never handed over (or whose lane was lost) and
     * wakes them, starting their workflow when none runs. Temporal away: they stay and the next pass tries again.
     */
    async dispatchWebhooks(input: {
      taskQueue: string;
      runMs: number;
      intervalMs: number;
    }): Promise<{ lanes: number; stoppedEarly?: string }> {
      const temporal = webhooks.temporal;
      if (!temporal) throw ApplicationFailure.nonRetryable('this worker was started without a Temporal client for webhooks');
      const context = Context.current();
      const end = Date.now() + input.runMs;
      let lanes = 0;
      let stoppedEarly: string | undefined;
      // The outbox does not grow without end: what ended long ago goes, its attempts with it.
      await db
        .deleteFrom('webhook_deliveries')
        .where(
          'id',
          'in',
          db
            .selectFrom('webhook_deliveries')
            .select('id')
            .where('status', '!=', 'pending')
            .where('created_at', '<', sql<Date>`now() - ${ENDED_DELIVERIES_KEPT_DAYS} * interval '1 day'`)
            .orderBy('created_at')
            .limit(FORGOTTEN_PER_RUN),
        )
        .execute();
      while (Date.now() < end && !context.cancellationSignal.aborted) {
        context.heartbeat({ lanes });
        const due = await db
          .selectFrom('webhook_deliveries as d')
          .innerJoin('webhook_subscriptions as s', 's.id', 'd.subscription_id')
          .select(['d.subscription_id', 'd.conversation_id'])
          .distinct()
          .where('d.status', '=', 'pending')
          .where('s.enabled', '=', true)
          .where((eb) =>
            eb.or([
              eb('d.dispatched_until', 'is', null),
              eb('d.dispatched_until', '<', sql<Date>`now() - interval ${sql.lit(LANE_LOST_AFTER)}`),
            ]),
          )
          .limit(LANES_PER_PASS)
          .execute();
        stoppedEarly = undefined;
        for (const row of due) {
          const lane = { subscriptionId: row.subscription_id, conversationId: row.conversation_id };
          try {
            context.heartbeat({ lanes });
            await wakeWebhookLane(temporal, input.taskQueue, lane);
          } catch (error) {
            stoppedEarly = `Temporal did not take the hand-over: ${(error as Error).message}`;
            break;
          }
          // The lane takes it within a minute, then holds it itself while it works and waits.
          await holdLane(lane, 60_000);
          lanes++;
        }
        await delay(input.intervalMs, undefined, { signal: context.cancellationSignal }).catch(() => undefined);
      }
      return stoppedEarly ? { lanes, stoppedEarly } : { lanes };
    },

    /** The lane's oldest pending delivery, unless its subscription is disabled or gone. */
    async takeNextWebhookDelivery(lane: WebhookLaneInput): Promise<{ deliveryId: string; eventType: string } | null> {
      const next = await db
        .selectFrom('webhook_deliveries as d')
        .innerJoin('webhook_subscriptions as s', 's.id', 'd.subscription_id')
        .select(['d.id', 'd.event_type'])
        .where('d.subscription_id', '=', lane.subscriptionId)
        .where('d.conversation_id', '=', lane.conversationId)
        .where('d.status', '=', 'pending')
        .where('s.enabled', '=', true)
        .orderBy('d.seq')
        .limit(1)
        .executeTakeFirst();
      if (!next) return null;
      await holdLane(lane, settings.timeoutMs + 60_000);
      return { deliveryId: next.id, eventType: next.event_type };
    },

    /**
     * One signed POST of a delivery, recorded as an attempt. A failure starts (or continues) the subscription's
     * failing period: failing throughout the retry window disables it with the reason; a delivery failing past
     * its window is given up. The URL is checked again first: DNS may point elsewhere now.
     */
    async attemptWebhookDelivery({ deliveryId }: { deliveryId: string }): Promise<WebhookAttemptResult> {
      const delivery = await db
        .selectFrom('webhook_deliveries as d')
        .innerJoin('webhook_subscriptions as s', 's.id', 'd.subscription_id')
        .where('d.id', '=', deliveryId)
        .where('d.status', '=', 'pending')
        .where('s.enabled', '=', true)
        .select([
          'd.id',
          'd.subscription_id',
          'd.conversation_id',
          'd.payload',
          'd.attempts',
          's.url',
          's.secret_encrypted',
          's.failing_since',
        ])
        .executeTakeFirst();
      if (!delivery) return { outcome: 'skipped' };
      const lane = { subscriptionId: delivery.subscription_id, conversationId: delivery.conversation_id };
      // While the subscriber fails, one lane at a time tries it (for its own timeout at most) and the others wait
      // for that outcome: a dead subscriber with a thousand conversations costs one request per wait, not a thousand.
      // A subscriber that answers is not touched here: its lanes go at once, without taking its row's lock.
      const turn =
        delivery.failing_since === null ||
        (await db
          .updateTable('webhook_subscriptions')
          .set({
            next_attempt_at: sql<Date | null>`case when failing_since is null then null
              else now() + ${settings.timeoutMs + DNS_TIMEOUT_MS} * interval '1 millisecond' end`,
          })
          .where('id', '=', delivery.subscription_id)
          .where((eb) =>
            eb.or([
              eb('failing_since', 'is', null),
              eb('next_attempt_at', 'is', null),
              eb('next_attempt_at', '<=', sql<Date>`now()`),
            ]),
          )
          .returning('id')
          .executeTakeFirst()) !== undefined;
      if (!turn) {
        const { wait_ms } = await db
          .selectFrom('webhook_subscriptions')
          .select(sql<number>`greatest(extract(epoch from next_attempt_at - now()) * 1000, 0)::int`.as('wait_ms'))
          .where('id', '=', delivery.subscription_id)
          .executeTakeFirstOrThrow();
        const retryInMs = Math.max(wait_ms ?? 0, settings.retryInitialMs);
        await holdLane(lane, retryInMs + settings.timeoutMs + 60_000);
        return { outcome: 'retry', retryInMs, failure: 'waiting: the subscriber is failing' };
      }
      const body = JSON.stringify(delivery.payload);
      const started = Date.now();
      let failure: string | null = null;
      let statusCode: number | null = null;
      let refused = false;
      try {
        const target = await checkWebhookUrl(delivery.url, allowedPrivateNetworks);
        const headers = signWebhook(
          decryptCredential(delivery.secret_encrypted, secretKey),
          delivery.id,
          Math.floor(Date.now() / 1000),
          body,
        );
        const result = await postWebhook(target, headers, body, settings.timeoutMs);
        if ('status' in result) {
          statusCode = result.status;
          // Only a 2xx counts: a redirect is not followed (it could lead anywhere), so it is a failure too.
          if (result.status < 200 || result.status > 299) failure = `HTTP ${result.status}`;
        } else failure = result.error;
      } catch (error) {
        if (!(error instanceof WebhookUrlError)) throw error;
        refused = true;
        failure = `destination refused: ${error.message}`.slice(0, 300);
      }
      const durationMs = Date.now() - started;
      const retryWindowEnd = sql<Date>`now() + ${settings.retryWindowMs} * interval '1 millisecond'`;
      const attempts = delivery.attempts + 1;
      const retryInMs = Math.min(settings.retryInitialMs * 2 ** Math.min(attempts - 1, 30), settings.retryMaxMs);
      webhookDeliveries.inc({ outcome: failure === null ? 'delivered' : refused ? 'refused' : 'failed' });
      return db.transaction().execute(async (trx): Promise<WebhookAttemptResult> => {
        await trx
          .insertInto('webhook_attempts')
          .values({
            id: randomUUID(),
            delivery_id: delivery.id,
            status_code: statusCode,
            error: failure,
            duration_ms: durationMs,
          })
          .execute();
        if (failure === null) {
          await trx
            .updateTable('webhook_deliveries')
            .set({
              status: 'delivered',
              retry_until: sql<Date>`coalesce(retry_until, ${retryWindowEnd})`,
              attempts,
              last_status_code: statusCode,
              last_error: null,
              delivered_at: sql<Date>`now()`,
            })
            .where('id', '=', delivery.id)
            .execute();
          const recovered = await trx
            .updateTable('webhook_subscriptions')
            .set({ failing_since: null, last_failure: null, next_attempt_at: null })
            .where('id', '=', delivery.subscription_id)
            // Only a subscriber that was failing is written to: a healthy one's row is no point of contention.
            .where('failing_since', 'is not', null)
            .executeTakeFirst();
          // It answers again: the lanes that waited for it are handed over anew, which wakes them at once.
          if (recovered.numUpdatedRows > 0n) {
            await trx
              .updateTable('webhook_deliveries')
              .set({ dispatched_until: null })
              .where('subscription_id', '=', delivery.subscription_id)
              .where('status', '=', 'pending')
              .execute();
          }
          return { outcome: 'delivered' };
        }
        const subscription = await trx
          .updateTable('webhook_subscriptions')
          .set({
            failing_since: sql<Date>`coalesce(failing_since, now())`,
            last_failure: failure,
            // The other lanes wait as long as this one.
            next_attempt_at: sql<Date>`now() + ${retryInMs} * interval '1 millisecond'`,
          })
          .where('id', '=', delivery.subscription_id)
          .returning(
            sql<boolean>`coalesce(failing_since, now()) <= now() - ${settings.retryWindowMs} * interval '1 millisecond'`.as(
              'failed_throughout',
            ),
          )
          .executeTakeFirst();
        const given = await trx
          .updateTable('webhook_deliveries')
          .set({
            attempts,
            last_status_code: statusCode,
            last_error: failure,
            // Its window starts at its first recorded attempt, in the transaction that may also start the
            // subscription's failing period: a subscriber failing throughout is disabled before any of its events
            // is given up (they wait for it to be enabled), while one event a working subscriber refuses is given up.
            retry_until: sql<Date>`coalesce(retry_until, ${retryWindowEnd})`,
            status: subscription?.failed_throughout
              ? 'pending'
              : sql<WebhookDeliveryStatus>`case when coalesce(retry_until, ${retryWindowEnd}) <= now() then 'failed' else 'pending' end`,
          })
          .where('id', '=', delivery.id)
          .returning('status')
          .executeTakeFirstOrThrow();
        if (subscription?.failed_throughout) {
          // Its deliveries stay pending: enabling it again sends them, in order.
          await trx
            .updateTable('webhook_subscriptions')
            .set({
              enabled: false,
              disabled_at: sql<Date>`now()`,
              disabled_reason: sql<string>`'every delivery failed since ' || to_char(failing_since at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') || '; the last: ' || ${failure}::text`,
              updated_at: sql<Date>`now()`,
            })
            .where('id', '=', delivery.subscription_id)
            .execute();
          return { outcome: 'skipped' };
        }
        if (given.status === 'failed') return { outcome: 'gave_up', failure };
        await holdLane(lane, retryInMs + settings.timeoutMs + 60_000, trx);
        return { outcome: 'retry', retryInMs, failure };
      });
    },
  };
}
