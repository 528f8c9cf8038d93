import { messageIdIn, readHeaderSection } from './header-section.js';

// A bounce names the mail that could not be delivered in one of a few ways; we need its Message-ID
// to file the bounce on that mail's conversation.

// RFC 3464 reports return the message (message/rfc822) or its headers (text/rfc822-headers);
// RFC 6533 has the internationalized forms.
const RETURNED_PARTS = new Set(['message/rfc822', 'message/global', 'text/rfc822-headers', 'message/global-headers']);
// Reports without a structured part (qmail, some Exchange versions) quote the headers in the text.
// Horizontal space only: `\s*` after `^` would rescan every following blank line, for each line.
const MESSAGE_ID_LINE = /^[ \t]*Message-ID:[ \t]*(<[^<>\s@]+@[^<>\s]+>)/gim;

/** Message-IDs of the returned mail, from the report's parts first, then from its text. */
export function returnedMessageIds(
  parts: ReadonlyArray<{ contentType: string; content: Uint8Array }>,
  text: string | null,
): string[] {
  const ids: string[] = [];
  for (const part of parts) {
    if (!RETURNED_PARTS.has(part.contentType.toLowerCase())) continue;
    const id = messageIdIn(readHeaderSection(part.content)?.['message-id']?.[0]);
    if (id) ids.push(id);
  }
  for (const match of text?.matchAll(MESSAGE_ID_LINE) ?? []) ids.push(match[1]!);
  return [...new Set(ids)];
}
