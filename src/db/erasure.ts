import { sql, type Kysely, type Transaction } from 'kysely';
import type { ConversationStage, ConversationStatus } from '../domain/conversation.js';
import { decryptCredential } from '../security/credentials.js';
import type { Database } from './schema.js';

// What erasing personal data does to the database. A contact and each of its conversations keep their rows as
// anonymous tombstones (so reports still count them: created, resolved, first response, CSAT ratings); everything
// that holds what a person wrote or who they are is deleted: messages in and out with their raw mail and files,
// the timeline, drafts, CSAT comments, stored API responses and webhook payloads. Every step may run again.

type Db = Kysely<Database>;
type Trx = Transaction<Database>;

/** How long a stored response answers a repeated request (as src/api/idempotency.ts remembers them). */
const STORED_RESPONSES_REPLAYED_FOR = '24 hours';
const STORED_RESPONSES_PAGE = 500;

/** A conversation as it was before it became a tombstone: whether someone was still working it. */
export interface ErasedConversation {
  id: string;
  channelId: string;
  wasOpenWithAssignee: boolean;
}

/**
 * Turns the conversations into tombstones: no subject, labels or language, a fresh reply token (mail answering
 * the old one no longer finds them), ended (closed; an open one resolved now) and hidden from every list.
 * A spam conversation stays spam, so reports keep leaving it out.
 */
export async function tombstoneConversations(trx: Trx, conversationIds: readonly string[]): Promise<ErasedConversation[]> {
  if (conversationIds.length === 0) return [];
  const before = await trx
    .selectFrom('conversations')
    .select(['id', 'channel_id', 'status', 'assignee_id'])
    .where('id', 'in', conversationIds)
    .orderBy('id')
    .forUpdate()
    .execute();
  await trx.updateTable('conversations').set(TOMBSTONE).where('id', 'in', conversationIds).execute();
  return before.map((row) => ({
    id: row.id,
    channelId: row.channel_id,
    wasOpenWithAssignee: row.status === 'open' && row.assignee_id !== null,
  }));
}

/** What a conversation keeps as a tombstone: its ids, channel, times, assignee, SLA and priority, nothing of its content. */
const TOMBSTONE = {
  erased_at: sql<Date>`coalesce(erased_at, now())`,
  subject: '',
  labels: '[]',
  language: null,
  reply_token: sql<string>`replace(gen_random_uuid()::text, '-', '')`,
  status: sql<ConversationStatus>`case when status = 'spam' then 'spam' else 'closed' end`,
  stage: sql<ConversationStage>`case when status = 'spam' then 'spam' else 'closed' end`,
  resolved_at: sql<Date>`coalesce(resolved_at, now())`,
  closed_at: sql<Date>`coalesce(closed_at, now())`,
  queued_at: null,
  updated_at: sql<Date>`now()`,
};

/**
 * The first step of a contact's erasure, in one transaction: their mail outside their own conversations (refused,
 * quarantined, or written into someone else's) and the agents' mail to them there, stored API responses naming
 * them, then the contact's address, name and attributes; their conversations become tombstones. Undefined when
 * there is no such contact.
 */
export async function tombstoneContact(db: Db, contactId: string, secretKey: string): Promise<{ accountId: string } | undefined> {
  return db.transaction().execute(async (trx) => {
    const contact = await trx
      .selectFrom('contacts')
      .select(['id', 'account_id', 'email'])
      .where('id', '=', contactId)
      .forUpdate()
      .executeTakeFirst();
    if (!contact) return undefined;
    const conversationIds = (
      await trx.selectFrom('conversations').select('id').where('contact_id', '=', contactId).orderBy('id').execute()
    ).map((row) => row.id);
    if (contact.email) await eraseMailOfAddress(trx, contact.account_id, contact.email);
    await eraseStoredResponses(
      trx,
      contact.account_id,
      [...(contact.email ? [contact.email] : []), contactId, ...conversationIds],
      secretKey,
    );
    await trx
      .updateTable('contacts')
      .set({
        email: null,
        name: null,
        attributes: '{}',
        surveys_unsubscribed_at: null,
        erasure_requested_at: sql<Date>`coalesce(erasure_requested_at, now())`,
      })
      .where('id', '=', contactId)
      .execute();
    // By the contact, not by the ids: a contact may have more conversations than one statement takes parameters.
    await trx.updateTable('conversations').set(TOMBSTONE).where('contact_id', '=', contactId).execute();
    return { accountId: contact.account_id };
  });
}

/** Mail from the address on any of the account's channels, and agents' mail addressed to it in any conversation. */
async function eraseMailOfAddress(trx: Trx, accountId: string, address: string): Promise<void> {
  const accountChannels = trx.selectFrom('channels').select('id').where('account_id', '=', accountId);
  await trx
    .deleteFrom('inbound_messages')
    .where('channel_id', 'in', accountChannels)
    .where('from_address', '=', address)
    .execute();
  const sentToAddress = trx
    .selectFrom('outbound_messages as o')
    .innerJoin('conversations as c', 'c.id', 'o.conversation_id')
    .select('o.id')
    .where('c.account_id', '=', accountId)
    .where('o.to_address', '=', address);
  await trx
    .updateTable('csat_surveys')
    .set({ outbound_message_id: null })
    .where('outbound_message_id', 'in', sentToAddress)
    .execute();
  await trx.deleteFrom('outbound_messages').where('id', 'in', sentToAddress).execute();
}

/**
 * Stored responses (Idempotency-Key) of the account's users that name any of these (an address, ids). They are
 * kept encrypted, so each is decrypted to be looked at (erasure is rare).
 */
async function eraseStoredResponses(trx: Trx, accountId: string, needles: readonly string[], secretKey: string): Promise<void> {
  const accountUsers = trx.selectFrom('users').select('id').where('account_id', '=', accountId);
  // Older ones are never answered again (a key is new after 24 hours): nobody needs them, so they go first.
  await trx
    .deleteFrom('idempotency_keys')
    .where('user_id', 'in', accountUsers)
    .where('created_at', '<', sql<Date>`now() - ${STORED_RESPONSES_REPLAYED_FOR}::interval`)
    .execute();
  // A page at a time, so that an account's stored responses are never all in memory at once.
  let after: { userId: string; key: string } | undefined;
  for (;;) {
    const page = await trx
      .selectFrom('idempotency_keys')
      .select(['user_id', 'key', 'response_body'])
      .where('user_id', 'in', accountUsers)
      .where('response_body', 'is not', null)
      .$if(after !== undefined, (q) => q.where(sql<boolean>`(user_id, key) > (${after!.userId}, ${after!.key})`))
      .orderBy('user_id')
      .orderBy('key')
      .limit(STORED_RESPONSES_PAGE)
      .execute();
    for (const row of page) {
      const body = decryptCredential(row.response_body!, secretKey);
      if (!needles.some((needle) => body.includes(needle))) continue;
      await trx.deleteFrom('idempotency_keys').where('user_id', '=', row.user_id).where('key', '=', row.key).execute();
    }
    if (page.length < STORED_RESPONSES_PAGE) return;
    const last = page[page.length - 1]!;
    after = { userId: last.user_id, key: last.key };
  }
}

/**
 * Deletes what a (tombstoned) conversation held: its messages in and out (raw mail, MIME, attachments, reply
 * files), its timeline, drafting leases, CSAT comments, webhook deliveries, and what its workflow runs' activities
 * kept for their retries. The CSAT rating stays with the tombstone.
 */
export async function eraseConversationRows(db: Db, conversationId: string, workflowRunIds: readonly string[]): Promise<void> {
  await db.transaction().execute(async (trx) => {
    const conversation = await trx
      .selectFrom('conversations')
      .select('id')
      .where('id', '=', conversationId)
      .forUpdate()
      .executeTakeFirst();
    if (!conversation) return;
    await trx
      .updateTable('csat_surveys')
      .set({ comment: null, outbound_message_id: null })
      .where('conversation_id', '=', conversationId)
      .execute();
    await trx.deleteFrom('reply_attachments').where('conversation_id', '=', conversationId).execute();
    await trx.deleteFrom('outbound_messages').where('conversation_id', '=', conversationId).execute();
    // Attachments and forwarding confirmations go with their mail (on delete cascade).
    await trx.deleteFrom('inbound_messages').where('conversation_id', '=', conversationId).execute();
    await trx.deleteFrom('conversation_events').where('conversation_id', '=', conversationId).execute();
    await trx.deleteFrom('draft_leases').where('conversation_id', '=', conversationId).execute();
    // Webhook payloads name the sender and the subject; their attempts go with them (on delete cascade).
    await trx.deleteFrom('webhook_deliveries').where('conversation_id', '=', conversationId).execute();
    if (workflowRunIds.length > 0) {
      await trx
        .deleteFrom('activity_effects')
        .where((eb) => eb.or(workflowRunIds.map((runId) => eb('key', 'like', `${runId}/%`))))
        .execute();
    }
    // Responses to requests about the conversation (replies, notes); those naming the contact went with the contact.
    await trx.deleteFrom('idempotency_keys').where('conversation_id', '=', conversationId).execute();
    // Anything written after the tombstone (an activity that was running) is ended again.
    await tombstoneConversations(trx, [conversationId]);
  });
}

/** The last step of a contact's erasure: from now on it is erased, and a new mail from the address starts a new contact. */
export async function markContactErased(db: Db, contactId: string): Promise<void> {
  await db
    .updateTable('contacts')
    .set({ erased_at: sql<Date>`coalesce(erased_at, now())` })
    .where('id', '=', contactId)
    .execute();
}

/** Of the contacts of these conversations, those with no conversation left that is not erased (nor erased themselves). */
export async function contactsLeftWithoutConversations(db: Db, conversationIds: readonly string[]): Promise<string[]> {
  if (conversationIds.length === 0) return [];
  const rows = await db
    .selectFrom('contacts as ct')
    .select('ct.id')
    .where('ct.id', 'in', db.selectFrom('conversations').select('contact_id').where('id', 'in', conversationIds))
    .where('ct.erasure_requested_at', 'is', null)
    .where((eb) =>
      eb.not(
        eb.exists(
          eb
            .selectFrom('conversations as c')
            .select('c.id')
            .whereRef('c.contact_id', '=', 'ct.id')
            .where('c.erased_at', 'is', null),
        ),
      ),
    )
    .execute();
  return rows.map((row) => row.id);
}

/** The contact's conversations that are no tombstones yet (a mail that arrived while the contact was being erased). */
export async function contactConversationsNotErased(db: Db, contactId: string): Promise<string[]> {
  const rows = await db
    .selectFrom('conversations')
    .select('id')
    .where('contact_id', '=', contactId)
    .where('erased_at', 'is', null)
    .execute();
  return rows.map((row) => row.id);
}

/** One page of the contact's conversations, by id after `after`. */
export async function contactConversationIds(db: Db, contactId: string, after: string | null, limit: number): Promise<string[]> {
  const rows = await db
    .selectFrom('conversations')
    .select('id')
    .where('contact_id', '=', contactId)
    .$if(after !== null, (q) => q.where('id', '>', after!))
    .orderBy('id')
    .limit(limit)
    .execute();
  return rows.map((row) => row.id);
}

/** Accounts that keep closed conversations a limited time, with up to `perAccount` conversations each past it. */
export async function expiredConversations(
  db: Db,
  { afterAccountId, accounts, perAccount }: { afterAccountId: string | null; accounts: number; perAccount: number },
): Promise<{ accounts: Array<{ accountId: string; conversationIds: string[] }>; nextAccountId: string | null }> {
  const page = await db
    .selectFrom('accounts')
    .select(['id', 'retention_days'])
    .where('retention_days', 'is not', null)
    .$if(afterAccountId !== null, (q) => q.where('id', '>', afterAccountId!))
    .orderBy('id')
    .limit(accounts)
    .execute();
  const found = [];
  for (const account of page) {
    const expired = await db
      .selectFrom('conversations')
      .select('id')
      .where('account_id', '=', account.id)
      .where('erased_at', 'is', null)
      .where('status', '=', 'closed')
      .where('closed_at', '<', sql<Date>`now() - make_interval(days => ${account.retention_days})`)
      .orderBy('closed_at')
      .limit(perAccount)
      .execute();
    if (expired.length > 0) found.push({ accountId: account.id, conversationIds: expired.map((row) => row.id) });
  }
  return { accounts: found, nextAccountId: page.length === accounts ? page[page.length - 1]!.id : null };
}
