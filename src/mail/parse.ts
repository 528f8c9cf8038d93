import { NO_SENDER_TRUST, type SenderTrust } from '../domain/sender-verdict.js';
import { timeParse } from '../observability/metrics.js';
import { parseOnPool } from './parser-pool.js';
import type { ParsedMail } from './parsed-mail.js';

// Reading inbound mail: the cheap header look that stores a mail under its Message-ID first, and
// the full parse, which runs off the event loop on the parser threads.

export { dedupeKey, readHeaderSection } from './header-section.js';
export { NOT_MIME, UnparseableMailError } from './parsed-mail.js';
export type { MailAddress, ParsedAttachment, ParsedMail } from './parsed-mail.js';
export { closeParserPool, ParserBusyError } from './parser-pool.js';

/** Parses a stored raw mail into what Mailroom keeps of it. Throws UnparseableMailError with a reason. */
export function parseMail(raw: Uint8Array, messageId: string, senderTrust: SenderTrust = NO_SENDER_TRUST): Promise<ParsedMail> {
  return timeParse(() => parseOnPool(raw, messageId, senderTrust));
}
