import type { SenderVerdictKind } from './sender-verdict.js';

// Before a mail provider forwards a mailbox to a channel's forwarding address, it may send a confirmation there
// (Gmail: a code and a link). That mail is for the channel's admin: never a conversation, never answered.
// Anyone can write a From header, so a mail counts as one only with the provider's sender, the provider's shape
// (the code in the subject and again in the body, a link to the provider's own settings host) and no verdict
// against its sender; anything else stays customer mail that agents see.

export interface ForwardingConfirmation {
  provider: string;
  code: string | null;
  /** A link to the provider's settings host only, never any other link the mail carries. */
  url: string | null;
  /** The mailbox that asked to forward, as the subject names it. */
  requestedBy: string | null;
}

interface ConfirmationCandidate {
  from: { address: string };
  subject: string;
  text: string | null;
  senderVerdict: { kind: SenderVerdictKind };
}

// Gmail (and Google Workspace): "(#123456789) Gmail Forwarding Confirmation - Receive Mail from ann@gmail.com",
// in the account's language but always with the "(#code)" prefix; the body repeats the code and carries the link.
const GMAIL_SENDER = 'forwarding-noreply@google.com';
const GMAIL_CODE_IN_SUBJECT = /^\(#(\d{5,15})\)/;
const GMAIL_LINK_HOSTS = ['mail-settings.google.com', 'mail.google.com'];
const MAX_URL_LENGTH = 2048;
const MAX_ADDRESS_LENGTH = 254;

/** What the mail confirms, when it is a provider's forwarding confirmation; null for any other mail. */
export function forwardingConfirmationIn(mail: ConfirmationCandidate): ForwardingConfirmation | null {
  if (mail.from.address.toLowerCase() !== GMAIL_SENDER) return null;
  if (mail.senderVerdict.kind !== 'ordinary') return null;
  const code = GMAIL_CODE_IN_SUBJECT.exec(mail.subject.trim())?.[1];
  const text = mail.text ?? '';
  if (!code || !text.includes(code)) return null;
  const url = providerLink(text, GMAIL_LINK_HOSTS);
  if (!url) return null;
  return { provider: 'gmail', code, url, requestedBy: lastAddressIn(mail.subject) };
}

/** The first https link in the text whose host is one of `hosts`, read up to the next white space. */
function providerLink(text: string, hosts: readonly string[]): string | null {
  let from = 0;
  for (;;) {
    const start = text.indexOf('https://', from);
    if (start === -1) return null;
    let end = start;
    while (end < text.length && end - start <= MAX_URL_LENGTH && !isLinkEnd(text.charCodeAt(end))) end += 1;
    from = end;
    if (end - start > MAX_URL_LENGTH) continue;
    let url: URL;
    try {
      url = new URL(text.slice(start, end));
    } catch {
      continue;
    }
    if (url.protocol === 'https:' && hosts.includes(url.hostname) && url.username === '' && !url.port) return url.href;
  }
}

/** White space, a control character, or what encloses a link in text (<>, quotes). */
function isLinkEnd(code: number): boolean {
  return code <= 0x20 || code === 0x7f || code === 0x3c || code === 0x3e || code === 0x22;
}

/** The last word of the subject that is an address (`ann@gmail.com`), without brackets. */
function lastAddressIn(subject: string): string | null {
  const words = subject.split(/\s+/);
  for (let index = words.length - 1; index >= 0; index -= 1) {
    const word = trimEnclosing(words[index]!);
    const at = word.indexOf('@');
    if (at > 0 && at < word.length - 1 && word.length <= MAX_ADDRESS_LENGTH) return word.toLowerCase();
  }
  return null;
}

function trimEnclosing(word: string): string {
  let start = 0;
  let end = word.length;
  while (start < end && '<('.includes(word[start]!)) start += 1;
  while (end > start && '>).,'.includes(word[end - 1]!)) end -= 1;
  return word.slice(start, end);
}
