import type { MailClassification } from '../db/schema.js';

/** Header name (lower case) → every value it has in the mail, unfolded. */
export type MailHeaders = Readonly<Record<string, readonly string[]>>;

const BULK_PRECEDENCE = new Set(['bulk', 'junk', 'list', 'auto_reply']);
const MAILER_DAEMON = /^(mailer-daemon|postmaster)@/i;

/**
 * Decides whether a mail came from a person or a machine, so that machines get no automatic answer
 * (RFC 3834 and the headers auto-responders and list servers set in practice).
 */
export function classifyMail(headers: MailHeaders, fromAddress: string | undefined): MailClassification {
  const first = (name: string) => headers[name]?.[0]?.trim().toLowerCase();
  const has = (name: string) => (headers[name]?.length ?? 0) > 0;

  const contentType = first('content-type') ?? '';
  const isDeliveryReport = contentType.startsWith('multipart/report') && /report-type\s*=\s*"?delivery-status/.test(contentType);
  if (isDeliveryReport || first('return-path') === '<>' || has('x-failed-recipients')) return 'bounce';
  if (fromAddress && MAILER_DAEMON.test(fromAddress)) return 'bounce';

  const autoSubmitted = first('auto-submitted');
  if (autoSubmitted !== undefined && autoSubmitted !== 'no') return 'auto_reply';
  if (has('x-autoreply') || has('x-autorespond') || has('x-auto-response-suppress')) return 'auto_reply';
  const precedence = first('precedence');
  if (precedence !== undefined && BULK_PRECEDENCE.has(precedence)) return 'auto_reply';
  if (has('list-id') || has('list-unsubscribe')) return 'auto_reply';

  return 'ordinary';
}
