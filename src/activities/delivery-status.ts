import { randomUUID } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import type { Database } from '../db/schema.js';
import type { DeliveryStatus, OutboundKind, SentCopyStatus } from '../domain/conversation.js';
import { readDeliveryReport } from '../mail/delivery-report.js';
import type { ParsedMail } from '../mail/parsed-mail.js';
import { recordEvent, type TimelineEventType } from './timeline.js';

// Where an outbox row stands (queued → sent | failed | bounced) and the lease a send holds on it, so
// that a retry, or a second delivery of the same row at the same time, never sends it again while the
// first can still send it. Each change of state is written with its timeline event, once.

/**
 * How long a send's claim on its row lasts unless the send renews it (it does, on its heartbeat clock, until it
 * ends): a bit above the transport's longest step timeout. A send that dies with its worker frees the row
 * within this, to be taken up again with the same row and Message-ID; one that lives ends (or is cut off) at
 * the transport's deadline for a whole send, SEND_DEADLINE_MS.
 */
export const DELIVERY_LEASE_MS = 25_000;

const SENT_EVENT: Record<OutboundKind, TimelineEventType> = {
  greeting: 'greeting_sent',
  reply: 'agent_reply_sent',
  csat_survey: 'csat_survey_sent',
  out_of_office: 'out_of_office_sent',
  ai_reply: 'ai_reply_sent',
  handover: 'handover_sent',
  mailbox_reply: 'answered_from_mailbox',
};

export type DeliveryClaim =
  | { claimed: true; token: string }
  /** Sent, failed or bounced already, or queued under another send's lease for leaseLeftMs more. */
  | { claimed: false; status: DeliveryStatus; error: string | null; leaseLeftMs: number };

/** Takes the lease on a queued row nobody holds; undefined when the row does not exist. */
export async function claimDelivery(db: Kysely<Database>, outboxId: string): Promise<DeliveryClaim | undefined> {
  const token = randomUUID();
  // Two claims at once: the second waits for the first's row lock, then finds the lease taken.
  const claimed = await db
    .updateTable('outbound_messages')
    .set({ claim_token: token, claimed_until: sql<Date>`now() + ${DELIVERY_LEASE_MS} * interval '1 millisecond'` })
    .where('id', '=', outboxId)
    .where('delivery_status', '=', 'queued')
    .where((eb) => eb.or([eb('claimed_until', 'is', null), eb('claimed_until', '<', sql<Date>`now()`)]))
    .returning('id')
    .executeTakeFirst();
  if (claimed) return { claimed: true, token };
  const row = await db
    .selectFrom('outbound_messages')
    .select([
      'delivery_status',
      'delivery_error',
      sql<number>`greatest(0, coalesce(extract(epoch from claimed_until - now()) * 1000, 0))::float8`.as('lease_left_ms'),
    ])
    .where('id', '=', outboxId)
    .executeTakeFirst();
  if (!row) return undefined;
  return { claimed: false, status: row.delivery_status, error: row.delivery_error, leaseLeftMs: Number(row.lease_left_ms) };
}

/** The send holding the row is still at it: its lease runs DELIVERY_LEASE_MS from now. */
export async function renewClaim(db: Kysely<Database>, input: { outboxId: string; token: string }): Promise<void> {
  await db
    .updateTable('outbound_messages')
    .set({ claimed_until: sql<Date>`now() + ${DELIVERY_LEASE_MS} * interval '1 millisecond'` })
    .where('id', '=', input.outboxId)
    .where('delivery_status', '=', 'queued')
    .where('claim_token', '=', input.token)
    .execute();
}

/** The server took the mail: sent, with its timeline event, unless it was marked before (or bounced meanwhile). */
export async function markSent(db: Kysely<Database>, outboxId: string, refusedRecipients: string | null = null): Promise<void> {
  await db.transaction().execute(async (trx) => {
    const sent = await trx
      .updateTable('outbound_messages')
      .set({
        delivery_status: 'sent',
        sent_at: sql<Date>`now()`,
        delivery_error: refusedRecipients,
        claimed_until: null,
        claim_token: null,
        // The mailbox sync appends it to the Sent folder when the channel has a mailbox and copies this kind.
        sent_copy_status: sql<SentCopyStatus | null>`(
          select 'pending' from conversations c join channels ch on ch.id = c.channel_id
            where c.id = outbound_messages.conversation_id and ch.imap_enabled
              and ch.sent_copy_kinds @> jsonb_build_array(outbound_messages.kind))`,
      })
      .where('id', '=', outboxId)
      .where('delivery_status', '=', 'queued')
      .returning(['id', 'conversation_id', 'kind', 'author_id', 'ai_agent_id'])
      .executeTakeFirst();
    if (sent) {
      await recordEvent(trx, sent.conversation_id, SENT_EVENT[sent.kind], {
        outboundMessageId: sent.id,
        authorId: sent.author_id,
        aiAgentId: sent.ai_agent_id,
      });
    }
  });
}

/** The server refused the mail for good: failed, with the reason, and delivery_failed on the timeline. */
export async function markFailed(
  db: Kysely<Database>,
  input: { outboxId: string; token: string; reason: string },
): Promise<void> {
  await db.transaction().execute(async (trx) => {
    const failed = await trx
      .updateTable('outbound_messages')
      .set({ delivery_status: 'failed', delivery_error: input.reason, claimed_until: null, claim_token: null })
      .where('id', '=', input.outboxId)
      .where('delivery_status', '=', 'queued')
      .where('claim_token', '=', input.token)
      .returning(['id', 'conversation_id', 'kind'])
      .executeTakeFirst();
    if (failed) {
      await recordEvent(trx, failed.conversation_id, 'delivery_failed', {
        outboundMessageId: failed.id,
        kind: failed.kind,
        reason: input.reason,
      });
    }
  });
}

/** The attempt failed in a way a retry may get past: the lease is given up at once, the reason kept for people to see. */
export async function releaseClaim(
  db: Kysely<Database>,
  input: { outboxId: string; token: string; reason: string },
): Promise<void> {
  await db
    .updateTable('outbound_messages')
    .set({ delivery_error: input.reason, claimed_until: null, claim_token: null })
    .where('id', '=', input.outboxId)
    .where('delivery_status', '=', 'queued')
    .where('claim_token', '=', input.token)
    .execute();
}

/**
 * A bounce returning mail this channel sent marks that mail bounced, with the report's diagnostic, and
 * puts delivery_bounced on its conversation's timeline. A report that only announces a delay changes
 * nothing; so does a second report for the same mail. Call it in the transaction that files the bounce.
 */
export async function markBounced(
  db: Kysely<Database>,
  input: {
    channelId: string;
    /** The bounce, as stored. */
    inboundMessageId: string;
    mail: Pick<ParsedMail, 'classification' | 'returnedMessageIds' | 'attachments' | 'text'>;
  },
): Promise<void> {
  const { mail } = input;
  if (mail.classification !== 'bounce' || mail.returnedMessageIds.length === 0) return;
  const report = readDeliveryReport(mail.attachments, mail.text);
  if (report && !report.failed) return;
  const reason = report?.reason ?? null;
  const bounced = await db
    .updateTable('outbound_messages')
    .set({ delivery_status: 'bounced', delivery_error: reason, claimed_until: null, claim_token: null })
    .where('message_id', 'in', mail.returnedMessageIds)
    // Queued too: a send whose answer was lost (the connection dropped after the message) did go out.
    .where('delivery_status', 'in', ['queued', 'sent'])
    .where('conversation_id', 'in', (eb) => eb.selectFrom('conversations').select('id').where('channel_id', '=', input.channelId))
    .returning(['id', 'conversation_id', 'kind'])
    .execute();
  for (const row of bounced) {
    await recordEvent(db, row.conversation_id, 'delivery_bounced', {
      outboundMessageId: row.id,
      kind: row.kind,
      reason,
      inboundMessageId: input.inboundMessageId,
    });
  }
}
