import { sql } from 'kysely';
import type { Db } from './connection.js';
import type { InboundSource } from '../domain/conversation.js';

/**
 * The ways mail reaches a channel (the forwarder endpoint, the SMTP receiver, the IMAP mailbox) and leaves it
 * (SMTP sending, the copy in the mailbox's Sent folder), each with a health record of its own.
 */
export type MailPath = 'forwarder' | 'smtp_receiver' | 'imap' | 'smtp' | 'sent_folder';

/**
 * The ways in whose successes are their mail itself: the last mail handed to its conversation is read from
 * inbound_messages, so that no mail pays a write for its path's health; only their failures are written.
 */
const MAIL_IS_THE_SUCCESS: Partial<Record<MailPath, InboundSource>> = { forwarder: 'forwarder', smtp_receiver: 'smtp' };

/** A failure as an operator reads it: a coarse reason to act on, and one line of what happened. */
export interface PathFailure {
  reason: string;
  message: string;
}

// Bounded: a server's or provider's words may be long and are not ours.
const MAX_MESSAGE_CHARS = 500;

// How many of a way in's latest mails are looked at for the last one handed over: a bounded index range.
const RECENT_MAILS = 100;

/**
 * When the latest mail of a way in was handed to its conversation, among its RECENT_MAILS latest arrivals (through
 * inbound_messages_channel_path_received_idx). A mail stored while Temporal was away and handed over when its sender
 * tried again counts when it was handed over.
 */
function lastHandedOver(channelId: unknown, via: unknown) {
  return sql<Date | null>`(select max(recent.signalled_at) from (
    select m.signalled_at from inbound_messages m where m.channel_id = ${channelId} and m.received_via = ${via}
      order by m.received_at desc limit ${sql.lit(RECENT_MAILS)}) as recent)`;
}

/** The path worked (a sync, a send, a copy). */
export async function recordPathSuccess(db: Db, channelId: string, path: MailPath, at = new Date()): Promise<void> {
  await db
    .insertInto('channel_health')
    .values({ channel_id: channelId, path, last_success_at: at })
    .onConflict((oc) => oc.columns(['channel_id', 'path']).doUpdateSet({ last_success_at: at }))
    .execute();
}

/**
 * The path failed. It has been failing since the first failure with no success after it, which is answered: a
 * success in between (a sync, a send, a mail handed over) starts a new failing period.
 */
export async function recordPathFailure(
  db: Db,
  channelId: string,
  path: MailPath,
  failure: PathFailure,
  at = new Date(),
): Promise<Date> {
  const message =
    failure.message.length > MAX_MESSAGE_CHARS ? `${failure.message.slice(0, MAX_MESSAGE_CHARS)}…` : failure.message;
  const via = MAIL_IS_THE_SUCCESS[path];
  const succeededSince = via
    ? sql<boolean>`${lastHandedOver(sql.ref('channel_health.channel_id'), sql.lit(via))} > channel_health.failing_since`
    : sql<boolean>`channel_health.last_success_at > channel_health.failing_since`;
  const row = await db
    .insertInto('channel_health')
    .values({
      channel_id: channelId,
      path,
      last_error_at: at,
      last_error_reason: failure.reason,
      last_error_message: message,
      failing_since: at,
    })
    .onConflict((oc) =>
      oc.columns(['channel_id', 'path']).doUpdateSet({
        last_error_at: at,
        last_error_reason: failure.reason,
        last_error_message: message,
        failing_since: sql`case when channel_health.failing_since is null or ${succeededSince}
          then excluded.failing_since else channel_health.failing_since end`,
      }),
    )
    .returning('failing_since')
    .executeTakeFirstOrThrow();
  return new Date(row.failing_since ?? at);
}

export interface PathHealth {
  lastMailAt: Date | null;
  lastSuccessAt: Date | null;
  lastError: (PathFailure & { at: Date }) | null;
  /** Only while failing: its last failure came after its last success. */
  failingSince: Date | null;
}

/** How each path of the channel is doing; a way in's last mail and (forwarder, receiver) last success come from its mail. */
export async function readChannelHealth(db: Db, channelId: string): Promise<Record<MailPath, PathHealth>> {
  const [records, mail] = await Promise.all([
    db.selectFrom('channel_health').selectAll().where('channel_id', '=', channelId).execute(),
    // Bounded index ranges per way in (inbound_messages_channel_path_received_idx), never a scan of the channel's mail.
    sql<{ received_via: InboundSource; last_mail_at: Date | null; last_handed_over_at: Date | null }>`
      select v.received_via,
        (select max(m.received_at) from inbound_messages m
          where m.channel_id = ${channelId} and m.received_via = v.received_via) as last_mail_at,
        ${lastHandedOver(channelId, sql.ref('v.received_via'))} as last_handed_over_at
      from (values ('forwarder'), ('smtp'), ('imap')) as v(received_via)`.execute(db),
  ]);
  const byPath = new Map(records.map((record) => [record.path, record]));
  const byVia = new Map(mail.rows.map((row) => [row.received_via, row]));
  const date = (value: Date | string | null | undefined) => (value ? new Date(value) : null);
  const healthOf = (path: MailPath, via?: InboundSource): PathHealth => {
    const record = byPath.get(path);
    const ofMail = via ? byVia.get(via) : undefined;
    const lastSuccessAt = MAIL_IS_THE_SUCCESS[path] ? date(ofMail?.last_handed_over_at) : date(record?.last_success_at);
    const lastErrorAt = date(record?.last_error_at);
    const failing = lastErrorAt !== null && (lastSuccessAt === null || lastErrorAt > lastSuccessAt);
    return {
      lastMailAt: date(ofMail?.last_mail_at),
      lastSuccessAt,
      lastError:
        lastErrorAt && record?.last_error_reason
          ? { reason: record.last_error_reason, message: record.last_error_message ?? '', at: lastErrorAt }
          : null,
      failingSince: failing ? date(record?.failing_since) : null,
    };
  };
  return {
    forwarder: healthOf('forwarder', 'forwarder'),
    smtp_receiver: healthOf('smtp_receiver', 'smtp'),
    imap: healthOf('imap', 'imap'),
    smtp: healthOf('smtp'),
    sent_folder: healthOf('sent_folder'),
  };
}
