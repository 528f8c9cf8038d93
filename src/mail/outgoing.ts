import { sql, type Kysely, type Transaction } from 'kysely';
import { simpleParser } from 'mailparser';
import MailComposer from 'nodemailer/lib/mail-composer/index.js';
import type { Database } from '../db/schema.js';
import type { OutboundKind } from '../domain/conversation.js';
import { catalogLanguage } from '../domain/message-catalogs.js';
import { outgoingFromName, outgoingSubject } from '../domain/outgoing-templates.js';
import { outboundMessageId, outboundThreadHeaders, replyTokenAddress, type ThreadMessage } from '../domain/threading.js';
import type { OutgoingAttachment, OutgoingMail } from './compose.js';
import { sanitizeMailHtml } from './sanitize-mail-html.js';
import { composeMail } from './compose.js';
import { renderSignature, type Signature, type SignatureTemplate } from './signature.js';

// Everything an outgoing mail is made of, decided in one place for the mail that is sent and for the
// preview (A5): the channel's subject and From-name templates, the thread headers, the reply token.

type Reader = Kysely<Database> | Transaction<Database>;

export type OutgoingContext = NonNullable<Awaited<ReturnType<typeof loadOutgoingContext>>>;

/** The conversation, its channel and its contact as outgoing mail needs them; undefined when it does not exist. */
export async function loadOutgoingContext(db: Reader, conversationId: string) {
  const row = await db
    .selectFrom('conversations as c')
    .innerJoin('channels as ch', 'ch.id', 'c.channel_id')
    .innerJoin('contacts as ct', 'ct.id', 'c.contact_id')
    .select([
      'c.id',
      'c.channel_id as channelId',
      'c.subject',
      'c.created_at as startedAt',
      'c.reply_token',
      'ch.name as channelName',
      'ch.email_address as channelAddress',
      'ch.default_subject',
      'ch.from_name as fromNameTemplate',
      'ch.business_hours',
      'ch.greeting_text',
      'ch.out_of_office_text',
      'ch.csat_link_validity_seconds',
      'ch.languages',
      'ch.signature_text',
      'ch.signature_html',
      'ch.greeting_texts',
      'ch.out_of_office_texts',
      'c.language as conversationLanguage',
      'ct.id as contactId',
      'ct.email as contactEmail',
      'ct.surveys_unsubscribed_at',
    ])
    .where('c.id', '=', conversationId)
    .executeTakeFirst();
  return (
    row && {
      ...row,
      timeZone: row.business_hours?.timeZone ?? 'UTC',
      // The catalog language of the automatic mail: the conversation's, else the channel's first.
      language: catalogLanguage(row.conversationLanguage, row.languages),
    }
  );
}

/** The agent's own signature, as their replies carry it (the channel's where they have none). */
export async function agentSignatureOf(db: Reader, userId: string): Promise<SignatureTemplate> {
  const row = await db
    .selectFrom('users')
    .select(['signature_text', 'signature_html'])
    .where('id', '=', userId)
    .executeTakeFirst();
  return { text: row?.signature_text ?? null, html: row?.signature_html ?? null };
}

/** Every Message-ID of the conversation, oldest first: what the next mail's References are built from. */
export async function threadOf(db: Reader, conversationId: string): Promise<ThreadMessage[]> {
  const rows = await sql<{ message_id: string; direction: ThreadMessage['direction'] }>`
    select message_id, direction from (
      select message_id, 'inbound' as direction, received_at as at from inbound_messages where conversation_id = ${conversationId}
      union all
      select message_id, 'outbound' as direction, created_at as at from outbound_messages where conversation_id = ${conversationId}
    ) thread order by at`.execute(db);
  return rows.rows.map((row) => ({ messageId: row.message_id, direction: row.direction }));
}

export interface DraftInput {
  kind: OutboundKind;
  /** Decides the Message-ID; the outbox row's id. */
  outboxId: string;
  /** Who writes it (an agent, an AI agent); null for mail nobody wrote (greeting, survey, out of office). */
  senderName: string | null;
  /** The subject typed for this mail; else the channel's default subject, else "Re: <subject>". */
  subject?: string | undefined;
  /** A fixed subject for this kind of mail, built from the default one (the survey's). */
  subjectFrom?: (defaultSubject: string) => string;
  text: string;
  /** The writing agent's own signature (their replies); every other mail carries the channel's. */
  agentSignature?: SignatureTemplate;
  /** Survey mail: the one-click unsubscribe URL (RFC 8058). */
  listUnsubscribe?: string;
  /** An agent's reply: HTML (sanitized here, for the sent mail and the preview alike), Cc, Bcc and files. */
  html?: string | null;
  /** Another participant an agent's reply is addressed to; the contact when left out. */
  to?: string;
  cc?: readonly string[];
  bcc?: readonly string[];
  attachments?: readonly OutgoingAttachment[];
}

/** The mail as it will go out, for a contact whose address is known. */
export function draftMail(
  context: OutgoingContext & { contactEmail: string },
  thread: readonly ThreadMessage[],
  input: DraftInput,
): OutgoingMail {
  const { inReplyTo, references } = outboundThreadHeaders(thread);
  const subject = outgoingSubject({
    typed: input.subject,
    defaultSubject: context.default_subject,
    conversationSubject: context.subject,
    startedAt: context.startedAt,
    timeZone: context.timeZone,
  });
  return {
    kind: input.kind,
    messageId: outboundMessageId(input.outboxId, context.channelAddress),
    from: {
      name: outgoingFromName({
        template: context.fromNameTemplate,
        channelName: context.channelName,
        senderName: input.senderName,
      }),
      address: context.channelAddress,
    },
    to: input.to ?? context.contactEmail,
    subject: input.subjectFrom ? input.subjectFrom(subject) : subject,
    text: input.text,
    inReplyTo: inReplyTo ?? null,
    references,
    replyTo: replyTokenAddress(context.channelAddress, context.reply_token),
    signature: signatureOf(context, input),
    listUnsubscribe: input.listUnsubscribe ?? null,
    cc: input.cc ?? [],
    bcc: input.bcc ?? [],
    html: input.html ? sanitizeMailHtml(input.html) : null,
    attachments: input.attachments ?? [],
  };
}

/** The signature step: the agent's own below their replies, else the channel's (AI answers and handover notes too). */
function signatureOf(context: OutgoingContext, input: DraftInput): Signature | null {
  const channel = { text: context.signature_text, html: context.signature_html };
  return renderSignature(input.agentSignature ? [input.agentSignature, channel] : [channel], {
    agentName: input.senderName ?? context.channelName,
    channelName: context.channelName,
  });
}

/** The message exactly as SMTP gets it (RFC 5322 bytes): what the preview shows. */
export function renderMessage(mail: OutgoingMail): Promise<Buffer> {
  return new MailComposer(composeMail(mail)).compile().build();
}

// Assigned when the mail is sent, so not part of a preview.
const ASSIGNED_AT_SEND = new Set(['message-id', 'date']);
// The MIME structure (random boundaries), shown as text and HTML instead.
const STRUCTURE = new Set(['content-type', 'mime-version', 'content-transfer-encoding']);

/** A message read back as the recipient's mail client reads it: the preview, and what tests compare it with. */
export async function readAsRecipient(raw: Buffer | string) {
  const parsed = await simpleParser(raw);
  const headers = parsed.headerLines
    .filter(({ key }) => !ASSIGNED_AT_SEND.has(key) && !STRUCTURE.has(key))
    .map(({ line }) => {
      const colon = line.indexOf(':');
      return {
        name: line.slice(0, colon),
        value: line
          .slice(colon + 1)
          .replace(/\r?\n[ \t]+/g, ' ')
          .trim(),
      };
    });
  return {
    subject: parsed.subject ?? '',
    headers,
    text: parsed.text ?? '',
    html: typeof parsed.html === 'string' ? parsed.html : '',
    attachments: parsed.attachments.map((a) => ({ filename: a.filename ?? '', contentType: a.contentType, sizeBytes: a.size })),
  };
}
