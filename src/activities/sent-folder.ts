import { randomUUID } from 'node:crypto';
import { Context } from '@temporalio/activity';
import type { ImapFlow, MailboxObject } from 'imapflow';
import { sql } from 'kysely';
import { recordPathFailure, recordPathSuccess } from '../db/channel-health.js';
import type { Db } from '../db/connection.js';
import type { Channel } from '../db/schema.js';
import { isSendingIdentity } from '../domain/sending-identity.js';
import { referencedMessageIds } from '../domain/threading.js';
import { describeImapFailure, fetchMailHeads, type MailHead } from '../mail/imap-connection.js';
import { parseMail, ParserBusyError, UnparseableMailError, type ParsedMail } from '../mail/parse.js';
import { recordEvent } from './timeline.js';

// The shared mailbox shows the team's answers, in both directions: what Mailroom sent is appended to the
// mailbox's Sent folder (once, the exact bytes, \Seen), and what someone wrote in the mailbox itself (found
// in its Sent folder, answering a conversation of the channel) is recorded in that conversation. Both run as
// a pass of the mailbox session, on its connection, so an IMAP outage never touches a send.

// Copies appended per pass and Sent mails read per pass: the session's other folders wait for no more than this.
const COPIES_PER_PASS = 50;
const REPLIES_PER_PASS = 200;
const FETCH_BATCH = 25;
// A session appending a copy holds it this long: far beyond one APPEND, short enough for a retry after a crash.
const COPY_LEASE_SECONDS = 120;
// A Sent mail's header section read when its whole is over the channel's size limit; larger ones are not read.
const MAX_HEADER_BYTES = 256 * 1024;
const PARSER_BUSY_PAUSE_MS = 500;
// A reply names its conversation in its newest references and writes to a few people: the rest is not looked at.
const MAX_REFERENCES = 50;
const MAX_RECIPIENTS = 50;

export const NO_SENT_FOLDER = 'the mailbox has no folder marked \\Sent: name the Sent folder in the IMAP settings (sentFolder)';

/** The outcome of one pass, for the session's report. */
export interface SentFolderPass {
  appended: number;
  failed: number;
  recorded: number;
}

/**
 * The Sent folder's work for one IMAP session: `pass` appends the copies waiting and reads the replies written
 * in the mailbox since the last pass. The folder is looked up once per session (the settings' name, else the
 * folder the server marks \Sent).
 */
export function openSentFolderSession(db: Db, client: ImapFlow) {
  const folders = new Map<string | null, Promise<string | undefined>>();
  const sentFolderOf = (channel: Channel) => {
    const configured = channel.imap_sent_folder;
    if (!folders.has(configured)) folders.set(configured, configured ? Promise.resolve(configured) : findSentFolder(client));
    return folders.get(configured)!;
  };

  async function pass(channel: Channel, report: (doing: string) => void): Promise<SentFolderPass> {
    const outcome = { appended: 0, failed: 0, recorded: 0 };
    const pending = await pendingCopies(db, channel.id);
    const folder = await sentFolderOf(channel);
    if (pending.length > 0) {
      if (!folder) {
        outcome.failed += await failCopies(db, pending, NO_SENT_FOLDER);
        await recordPathFailure(db, channel.id, 'sent_folder', { reason: 'folder_missing', message: NO_SENT_FOLDER });
      } else {
        report(`${folder}: appending ${pending.length} sent mail`);
        Object.assign(outcome, await appendCopies(db, client, folder, pending));
        if (outcome.failed > 0) {
          const message = `${outcome.failed} cop${outcome.failed === 1 ? 'y' : 'ies'} could not be appended to "${folder}": the conversations' timelines say why`;
          await recordPathFailure(db, channel.id, 'sent_folder', { reason: 'append_failed', message });
        } else if (outcome.appended > 0) {
          await recordPathSuccess(db, channel.id, 'sent_folder');
        }
      }
    }
    if (folder && channel.record_mailbox_replies) {
      report(`${folder}: reading replies written in the mailbox`);
      outcome.recorded = await readMailboxReplies(db, client, channel, folder);
    }
    return outcome;
  }

  return { pass };
}

/** The folder the server marks \Sent (RFC 6154; imapflow also knows the usual names on servers without the flags). */
async function findSentFolder(client: ImapFlow): Promise<string | undefined> {
  const list = await client.list();
  return list.find((entry) => entry.specialUse === '\\Sent')?.path;
}

interface PendingCopy {
  id: string;
  conversation_id: string;
  kind: string;
  message_id: string;
  sent_at: Date | null;
}

/** Copies waiting for this channel's Sent folder, oldest first, that no other session holds. */
function pendingCopies(db: Db, channelId: string): Promise<PendingCopy[]> {
  return db
    .selectFrom('outbound_messages as o')
    .innerJoin('conversations as c', 'c.id', 'o.conversation_id')
    .select(['o.id', 'o.conversation_id', 'o.kind', 'o.message_id', 'o.sent_at'])
    .where('c.channel_id', '=', channelId)
    .where('o.sent_copy_status', '=', 'pending')
    .where((eb) => eb.or([eb('o.sent_copy_claimed_until', 'is', null), eb('o.sent_copy_claimed_until', '<', sql<Date>`now()`)]))
    .orderBy('o.created_at')
    .limit(COPIES_PER_PASS)
    .execute();
}

/** Copies that cannot be made (no Sent folder): failed with the reason, on the row and the timeline. */
async function failCopies(db: Db, copies: PendingCopy[], reason: string): Promise<number> {
  let failed = 0;
  for (const copy of copies) {
    await db.transaction().execute(async (trx) => {
      const row = await trx
        .updateTable('outbound_messages')
        .set({ sent_copy_status: 'failed', sent_copy_error: reason, sent_copy_claimed_until: null })
        .where('id', '=', copy.id)
        .where('sent_copy_status', '=', 'pending')
        .returning('id')
        .executeTakeFirst();
      if (!row) return;
      failed++;
      await recordEvent(trx, copy.conversation_id, 'sent_copy_failed', { outboundMessageId: copy.id, kind: copy.kind, reason });
    });
  }
  return failed;
}

/**
 * Appends each copy unless the folder holds its Message-ID already (an append whose record was lost with a
 * crash), then records it: the row's claim keeps a second session off it meanwhile.
 */
async function appendCopies(
  db: Db,
  client: ImapFlow,
  folder: string,
  copies: PendingCopy[],
): Promise<{ appended: number; failed: number }> {
  let lock;
  try {
    lock = await client.getMailboxLock(folder);
  } catch (error) {
    if (!client.usable) throw error; // the connection broke: the session is retried
    return { appended: 0, failed: await failCopies(db, copies, `the Sent folder "${folder}" cannot be opened on the server`) };
  }
  let appended = 0;
  let failed = 0;
  try {
    for (const copy of copies) {
      Context.current().cancellationSignal.throwIfAborted();
      const claimed = await db
        .updateTable('outbound_messages')
        .set({ sent_copy_claimed_until: sql<Date>`now() + ${COPY_LEASE_SECONDS} * interval '1 second'` })
        .where('id', '=', copy.id)
        .where('sent_copy_status', '=', 'pending')
        .where((eb) => eb.or([eb('sent_copy_claimed_until', 'is', null), eb('sent_copy_claimed_until', '<', sql<Date>`now()`)]))
        .returning('mime')
        .executeTakeFirst();
      if (!claimed) continue;
      if (!claimed.mime) {
        failed += await failCopies(db, [copy], 'the mail was sent before Mailroom kept the bytes it sends');
        continue;
      }
      try {
        if (!(await holdsMessageId(client, copy.message_id))) {
          await client.append(folder, Buffer.from(claimed.mime), ['\\Seen'], copy.sent_at ?? new Date());
        }
      } catch (error) {
        if (!client.usable) {
          await releaseCopy(db, copy.id);
          throw error; // the connection broke: the session is retried, and this copy with it
        }
        failed += await failCopies(db, [copy], `the server refused the copy: ${describeImapFailure(error).message}`);
        continue;
      }
      try {
        await db
          .updateTable('outbound_messages')
          .set({
            sent_copy_status: 'appended',
            sent_copy_folder: folder,
            sent_copy_at: sql<Date>`now()`,
            sent_copy_claimed_until: null,
          })
          .where('id', '=', copy.id)
          .where('sent_copy_status', '=', 'pending')
          .execute();
      } catch (error) {
        // Appended but not recorded: the retry finds its Message-ID in the folder and records it without a second copy.
        await releaseCopy(db, copy.id);
        throw error;
      }
      appended++;
    }
  } finally {
    lock.release();
  }
  return { appended, failed };
}

/** Gives up the claim on a copy at once (best effort: otherwise it runs out), so the retry need not wait for it. */
async function releaseCopy(db: Db, outboundMessageId: string): Promise<void> {
  await db
    .updateTable('outbound_messages')
    .set({ sent_copy_claimed_until: null })
    .where('id', '=', outboundMessageId)
    .execute()
    .catch(() => undefined);
}

/** Whether the selected folder holds a mail with this Message-ID. */
async function holdsMessageId(client: ImapFlow, messageId: string): Promise<boolean> {
  const found = await client.search({ header: { 'message-id': messageId } }, { uid: true });
  return Array.isArray(found) && found.length > 0;
}

/**
 * Reads the Sent folder above its cursor and records each reply written in the mailbox. A folder seen for the
 * first time (or renumbered, or another folder named in the settings) starts at its end: years of Sent mail
 * never become replies. The cursor advances per mail, after its record is committed.
 */
async function readMailboxReplies(db: Db, client: ImapFlow, channel: Channel, folder: string): Promise<number> {
  let lock;
  try {
    lock = await client.getMailboxLock(folder);
  } catch (error) {
    if (!client.usable) throw error;
    return 0; // a folder that cannot be opened: its copies say so
  }
  try {
    const mailbox = client.mailbox as MailboxObject;
    const stored = await db.selectFrom('sent_folder_cursors').selectAll().where('channel_id', '=', channel.id).executeTakeFirst();
    if (!stored || stored.folder !== folder || BigInt(stored.uid_validity) !== mailbox.uidValidity) {
      await moveCursor(db, channel.id, folder, mailbox.uidValidity, await lastUidIn(client, mailbox));
      return 0;
    }
    if (mailbox.exists === 0) return 0;
    const lastUid = Number(stored.last_uid);
    const found = (await client.search({ uid: `${lastUid + 1}:*` }, { uid: true })) || [];
    const uids = found
      .filter((uid) => uid > lastUid)
      .sort((a, b) => a - b)
      .slice(0, REPLIES_PER_PASS);
    let recorded = 0;
    for (let start = 0; start < uids.length; start += FETCH_BATCH) {
      const heads = await fetchMailHeads(client, uids.slice(start, start + FETCH_BATCH));
      for (const head of heads) {
        Context.current().cancellationSignal.throwIfAborted();
        // Downloaded only when it may be a reply from the mailbox: From the channel, with a Message-ID we did not send.
        const candidate = head.from !== undefined && sentByChannel(head.from, channel) && head.messageId !== undefined;
        if (candidate && !(await sentByMailroom(db, channel.id, head.messageId!))) {
          const mail = await readSentMail(client, channel, head);
          if (mail && (await recordMailboxReply(db, channel, folder, mail, head.internalDate))) recorded++;
        }
        await moveCursor(db, channel.id, folder, mailbox.uidValidity, head.uid);
      }
    }
    return recorded;
  } finally {
    lock.release();
  }
}

async function moveCursor(db: Db, channelId: string, folder: string, uidValidity: bigint, lastUid: number): Promise<void> {
  const values = { folder, uid_validity: uidValidity.toString(), last_uid: lastUid, updated_at: sql<Date>`now()` };
  await db
    .insertInto('sent_folder_cursors')
    .values({ channel_id: channelId, ...values })
    .onConflict((oc) => oc.column('channel_id').doUpdateSet(values))
    .execute();
}

async function lastUidIn(client: ImapFlow, mailbox: MailboxObject): Promise<number> {
  const newest = mailbox.exists > 0 ? await client.fetchOne('*', { uid: true }) : undefined;
  return newest ? newest.uid : Number(mailbox.uidNext) - 1;
}

/** The Message-ID is one of the mails Mailroom sent (or recorded) in this channel: our own copy, nothing to record. */
async function sentByMailroom(db: Db, channelId: string, messageId: string): Promise<boolean> {
  const row = await db
    .selectFrom('outbound_messages as o')
    .innerJoin('conversations as c', 'c.id', 'o.conversation_id')
    .select('o.id')
    .where('c.channel_id', '=', channelId)
    .where('o.message_id', '=', messageId)
    .executeTakeFirst();
  return row !== undefined;
}

/** The Sent mail parsed, its header section alone when the whole is over the channel's size limit; undefined when unreadable. */
async function readSentMail(client: ImapFlow, channel: Channel, head: MailHead): Promise<ParsedMail | undefined> {
  const whole = head.size <= channel.max_inbound_bytes;
  const fetched = await client.fetchOne(String(head.uid), whole ? { uid: true, source: true } : { uid: true, headers: true }, {
    uid: true,
  });
  const raw = fetched ? (whole ? fetched.source : fetched.headers) : undefined;
  if (!raw || raw.length > (whole ? channel.max_inbound_bytes : MAX_HEADER_BYTES)) return undefined;
  const bytes = whole ? raw : Buffer.concat([raw, Buffer.from('\r\n')]);
  for (;;) {
    try {
      const mail = await parseMail(bytes, head.messageId!);
      return whole ? mail : { ...mail, text: null, replyText: `(not read: ${head.size} bytes, over the channel's size limit)` };
    } catch (error) {
      if (error instanceof ParserBusyError) {
        await Context.current().sleep(PARSER_BUSY_PAUSE_MS);
        continue;
      }
      if (error instanceof UnparseableMailError) return undefined;
      throw error;
    }
  }
}

/** The channel's sending identity, as the domain rule reads a channel row. */
function sentByChannel(address: string, channel: Channel): boolean {
  return isSendingIdentity(address, { emailAddress: channel.email_address, imapUsername: channel.imap_username });
}

/**
 * Records a Sent mail as the team's reply in the conversation it answers: From the channel, a person's mail
 * (no auto-reply), threading by In-Reply-To/References into a conversation of this channel, addressed to someone
 * who takes part in it. Anything else is left alone. Never sent, never starts or wakes a conversation.
 * True when recorded now.
 */
async function recordMailboxReply(
  db: Db,
  channel: Channel,
  folder: string,
  mail: ParsedMail,
  internalDate: Date | undefined,
): Promise<boolean> {
  if (!sentByChannel(mail.from.address, channel) || mail.classification !== 'ordinary') return false;
  const recipients = [...mail.to, ...mail.cc]
    .map((r) => r.address)
    .filter((address) => !sentByChannel(address, channel))
    .slice(0, MAX_RECIPIENTS);
  const referenced = referencedMessageIds(mail.inReplyTo, mail.references).slice(0, MAX_REFERENCES);
  if (recipients.length === 0 || referenced.length === 0) return false;
  return db.transaction().execute(async (trx) => {
    const answered = await answeredConversation(trx, channel.id, referenced, recipients);
    if (!answered) return false;
    const written = mail.date && mail.date.getTime() <= Date.now() ? mail.date : (internalDate ?? new Date());
    const id = randomUUID();
    const inserted = await trx
      .insertInto('outbound_messages')
      .values({
        id,
        conversation_id: answered.conversationId,
        kind: 'mailbox_reply',
        message_id: mail.messageId,
        author_id: null,
        from_name: mail.from.name,
        from_address: mail.from.address,
        to_address: answered.recipient,
        subject: mail.subject,
        text_body: mail.replyText ?? mail.text ?? '',
        in_reply_to: mail.inReplyTo ?? null,
        reference_ids: JSON.stringify(mail.references),
        reply_to: null,
        created_at: written,
        sent_at: written,
        delivery_status: 'sent',
        sent_copy_status: 'found',
        sent_copy_folder: folder,
        sent_copy_at: internalDate ?? written,
      })
      // Message-IDs of outgoing mail are unique: a mail recorded before (or another's id) is left alone.
      .onConflict((oc) => oc.doNothing())
      .returning('id')
      .executeTakeFirst();
    if (!inserted) return false;
    await recordEvent(trx, answered.conversationId, 'answered_from_mailbox', {
      outboundMessageId: id,
      from: mail.from.address,
      fromName: mail.from.name,
    });
    return true;
  });
}

/**
 * The conversation of this channel the referenced Message-IDs lead to, most relevant first, whose participants
 * (its contact, or a From, To or Cc of a mail on it) include one of the recipients; with that recipient.
 */
async function answeredConversation(
  db: Db,
  channelId: string,
  referenced: string[],
  recipients: string[],
): Promise<{ conversationId: string; recipient: string } | undefined> {
  // Never an erased conversation: its messages are still there while its erasure runs.
  const { rows } = await sql<{ conversation_id: string; message_id: string }>`
    select m.conversation_id, m.message_id from inbound_messages m join conversations c on c.id = m.conversation_id
      where m.channel_id = ${channelId} and c.erased_at is null and m.message_id in (${sql.join(referenced)})
    union all
    select o.conversation_id, o.message_id from outbound_messages o join conversations c on c.id = o.conversation_id
      where c.channel_id = ${channelId} and c.erased_at is null and o.message_id in (${sql.join(referenced)})`.execute(db);
  const byMessageId = new Map(rows.map((row) => [row.message_id, row.conversation_id]));
  const candidates = [...new Set(referenced.flatMap((id) => byMessageId.get(id) ?? []))];
  for (const conversationId of candidates) {
    const recipient = await participantAmong(db, conversationId, recipients);
    if (recipient) return { conversationId, recipient };
  }
  return undefined;
}

/** The first of the addresses that takes part in the conversation. */
async function participantAmong(db: Db, conversationId: string, addresses: string[]): Promise<string | undefined> {
  for (const address of addresses) {
    const asJson = JSON.stringify([address]);
    const { rows } = await sql<{ id: string }>`
      select c.id from conversations c join contacts ct on ct.id = c.contact_id
        where c.id = ${conversationId}
          and (ct.email = ${address} or exists (
            select 1 from inbound_messages m
              where m.conversation_id = c.id and m.status = 'threaded'
                and (m.from_address = ${address} or m.to_addresses @> ${asJson}::jsonb or m.cc_addresses @> ${asJson}::jsonb)))`.execute(
      db,
    );
    if (rows.length > 0) return address;
  }
  return undefined;
}
