import { sql, type Kysely, type Transaction } from 'kysely';
import type { Database } from '../db/schema.js';
import { isSingleMailbox } from '../domain/addresses.js';
import { defaultCc, chosenRecipients, type RecipientProblem } from '../domain/reply-recipients.js';
import { isChannelAddress } from '../domain/threading.js';
import { ownAddressesOf } from '../domain/forwarding-address.js';
import { htmlToPlainText } from './html-text.js';
import { sanitizeMailHtml } from './sanitize-mail-html.js';
import type { OutgoingAttachment } from './compose.js';

// What an agent's reply carries beyond its text, resolved against the database the same way for the preview, the
// reply request and the activity that writes the outbox: recipients, files, the HTML and the text derived from it.

type Reader = Kysely<Database> | Transaction<Database>;

/** The body of a reply: the sanitized HTML (same allowlist as inbound mail) and the text, derived from it when not typed. */
export function replyBody(input: { text?: string | undefined; html?: string | undefined }): {
  text: string;
  html: string | null;
} {
  if (input.html === undefined) return { text: input.text ?? '', html: null };
  const html = sanitizeMailHtml(input.html);
  return { text: input.text?.trim() ? input.text : htmlToPlainText(html), html: html || null };
}

/** Whether an address is ours or another channel's of this deployment (its address, a +tag, any forwarding address). */
export async function ownAddressTest(
  db: Reader,
  channel: { email_address: string; forwarding_username: string | null; forwarding_subdomain: string | null },
  inboundDomain: string,
  candidates: readonly string[],
): Promise<(address: string) => boolean> {
  const own = ownAddressesOf(channel, inboundDomain);
  // Without a +tag: what another channel's address would be. Bounded by the callers (a reply's recipients).
  const bases = [...new Set(candidates.map(withoutTag))];
  const channels =
    bases.length === 0
      ? []
      : await db
          .selectFrom('channels')
          .select(sql<string>`lower(email_address)`.as('address'))
          .where(sql<boolean>`lower(email_address) = any(${bases}::text[])`)
          .execute();
  const others = channels.map((row) => row.address);
  const inbound = `.${inboundDomain.toLowerCase()}`;
  return (address) => {
    const lower = address.toLowerCase();
    const domain = lower.slice(lower.lastIndexOf('@') + 1);
    return (
      isChannelAddress(lower, own) ||
      isChannelAddress(lower, others) ||
      domain === inboundDomain.toLowerCase() ||
      domain.endsWith(inbound)
    );
  };
}

/** `local+tag@domain` as `local@domain`, lower-cased; found by index, not by a pattern. */
function withoutTag(address: string): string {
  const lower = address.toLowerCase();
  const at = lower.lastIndexOf('@');
  const plus = lower.indexOf('+');
  return plus === -1 || at === -1 || plus > at ? lower : lower.slice(0, plus) + lower.slice(at);
}

/** To and Cc of the contact's latest mail in the conversation, as stored (lower-cased); undefined before any. */
export async function latestCustomerRecipients(db: Reader, conversationId: string, contactEmail: string) {
  const row = await db
    .selectFrom('inbound_messages')
    .select(['to_addresses', 'cc_addresses'])
    .where('conversation_id', '=', conversationId)
    .where(sql<boolean>`lower(from_address) = ${contactEmail.toLowerCase()}`)
    .orderBy('received_at', 'desc')
    .limit(1)
    .executeTakeFirst();
  return row && { to: row.to_addresses, cc: row.cc_addresses };
}

export class ReplyRecipientsError extends Error {
  override name = 'ReplyRecipientsError';
  constructor(readonly problems: RecipientProblem[]) {
    super(problems.map((p) => `${p.field}: ${p.message}`).join('; '));
  }
}

/** Cc and Bcc of a reply: as the agent chose them, else Cc derived from the customer's latest mail (reply-all), no Bcc. */
/**
 * Who a reply goes to: the contact, or another participant an agent addresses (`to`); then its Cc by default or as
 * chosen, and its Bcc. A reply to a third party copies nobody on its own, the customer least of all: only whom the
 * agent names in `cc`.
 */
export async function replyRecipients(
  db: Reader,
  context: { conversationId: string; channelId: string; contactEmail: string; inboundDomain: string },
  chosen: { to?: string | undefined; cc?: readonly string[] | undefined; bcc?: readonly string[] | undefined },
): Promise<{ to?: string; cc: string[]; bcc: string[] }> {
  const channel = await db
    .selectFrom('channels')
    .select(['email_address', 'forwarding_username', 'forwarding_subdomain'])
    .where('id', '=', context.channelId)
    .executeTakeFirstOrThrow();
  const named = chosen.to?.trim().toLowerCase();
  const thirdParty = named && named !== context.contactEmail.toLowerCase() ? named : undefined;
  const latest =
    chosen.cc === undefined && !thirdParty
      ? await latestCustomerRecipients(db, context.conversationId, context.contactEmail)
      : undefined;
  const candidates = [
    ...(thirdParty ? [thirdParty] : []),
    ...(chosen.cc ?? [...(latest?.to ?? []), ...(latest?.cc ?? [])]),
    ...(chosen.bcc ?? []),
  ].slice(0, 100);
  const isOwn = await ownAddressTest(db, channel, context.inboundDomain, candidates);
  if (thirdParty) {
    const problem = !isSingleMailbox(thirdParty)
      ? `${JSON.stringify(thirdParty.slice(0, 300))} is not a single mailbox (local@domain)`
      : isOwn(thirdParty)
        ? `${thirdParty} is an address of a channel, not a person`
        : !(await tookPart(db, context.conversationId, thirdParty))
          ? `${thirdParty} has not taken part in this conversation: a reply goes to its customer, or to someone who wrote in it or was copied by a reply`
          : undefined;
    if (problem) throw new ReplyRecipientsError([{ field: 'to', message: problem }]);
  }
  const addressee = thirdParty ?? context.contactEmail;
  const picked = chosenRecipients({ cc: chosen.cc ?? [], bcc: chosen.bcc ?? [] }, addressee, isOwn);
  if (picked.problems.length > 0) throw new ReplyRecipientsError(picked.problems);
  const to = thirdParty ? { to: thirdParty } : {};
  if (chosen.cc !== undefined || thirdParty) return { ...to, cc: picked.cc, bcc: picked.bcc };
  const cc = defaultCc(latest, context.contactEmail, isOwn).filter((address) => !picked.bcc.includes(address));
  return { cc, bcc: picked.bcc };
}

/** Whether the address wrote into the conversation or was copied by one of its replies. */
async function tookPart(db: Reader, conversationId: string, address: string): Promise<boolean> {
  const asJson = JSON.stringify([address]);
  const { rows } = await sql<{ one: number }>`
    select 1 as one from inbound_messages where conversation_id = ${conversationId} and lower(from_address) = ${address}
    union all
    select 1 from outbound_messages where conversation_id = ${conversationId} and cc_addresses @> ${asJson}::jsonb
    limit 1`.execute(db);
  return rows.length > 0;
}

export interface ReplyAttachment extends OutgoingAttachment {
  id: string;
  /** An agent's upload, or a file of the customer's mail that the reply forwards. */
  source: 'upload' | 'forward';
}

export class ReplyAttachmentError extends Error {
  override name = 'ReplyAttachmentError';
  constructor(
    readonly status: 404 | 422,
    readonly detail: string,
  ) {
    super(detail);
  }
}

/**
 * The files a reply names, in its order: uploads of this conversation not sent yet, or stored files of this
 * conversation's customer mail. Anything else (another conversation's, another account's, sent before) is not found.
 */
export async function loadReplyAttachments(
  db: Reader,
  conversationId: string,
  ids: readonly string[],
  limits: { maxCount: number; maxBytes: number },
  /** A repeated request (same Idempotency-Key) names uploads its first answer's reply took: they count as found. */
  options: { includeTaken?: boolean } = {},
): Promise<ReplyAttachment[]> {
  const unique = [...new Set(ids)];
  if (unique.length > limits.maxCount) {
    throw new ReplyAttachmentError(422, `a reply carries at most ${limits.maxCount} attachments (the channel's limit)`);
  }
  if (unique.length === 0) return [];
  let uploadRows = db
    .selectFrom('reply_attachments')
    .select(['id', 'filename', 'content_type', 'size_bytes', 'content'])
    .where('id', 'in', unique)
    .where('conversation_id', '=', conversationId)
    .where('complete', '=', true)
    .where('source_attachment_id', 'is', null);
  if (!options.includeTaken) uploadRows = uploadRows.where('outbound_message_id', 'is', null);
  const [uploads, forwards] = await Promise.all([
    uploadRows.execute(),
    db
      .selectFrom('attachments as a')
      .innerJoin('inbound_messages as m', 'm.id', 'a.inbound_message_id')
      .select(['a.id', 'a.filename', 'a.content_type', 'a.size_bytes', 'a.content'])
      .where('a.id', 'in', unique)
      .where('m.conversation_id', '=', conversationId)
      .where('a.content', 'is not', null)
      .execute(),
  ]);
  const found = new Map<string, ReplyAttachment>();
  for (const row of uploads) found.set(row.id, { ...toAttachment(row), source: 'upload' });
  for (const row of forwards) found.set(row.id, { ...toAttachment({ ...row, content: row.content! }), source: 'forward' });
  const attachments = unique.map((id) => {
    const attachment = found.get(id);
    if (!attachment) throw new ReplyAttachmentError(404, `no attachment ${id} to send in this conversation`);
    return attachment;
  });
  const total = attachments.reduce((sum, a) => sum + a.content.length, 0);
  if (total > limits.maxBytes) {
    throw new ReplyAttachmentError(
      422,
      `the attachments weigh ${total} bytes together; a reply carries at most ${limits.maxBytes} bytes (the channel's limit)`,
    );
  }
  return attachments;
}

function toAttachment(row: { id: string; filename: string; content_type: string; content: Uint8Array }) {
  return { id: row.id, filename: row.filename, contentType: row.content_type, content: Buffer.from(row.content) };
}
