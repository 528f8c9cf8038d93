// What a delivery status notification (RFC 3464) says about the recipients of the mail it returns:
// a final failure, or only a delay (which is no bounce), and the receiving server's diagnostic.

const REPORT_PARTS = new Set(['message/delivery-status', 'message/global-delivery-status']);
// A real report is a few hundred bytes per recipient.
const MAX_REPORT_BYTES = 64 * 1024;
// The human part a report starts with is a few lines; the text is capped at parsing already.
const MAX_TEXT_CHARS = 256 * 1024;
const MAX_REASON_CHARS = 500;
// RFC 3464 §2.3.3.
const ACTIONS = new Set(['failed', 'delayed', 'delivered', 'relayed', 'expanded']);

export interface DeliveryReport {
  /** Some recipient's delivery failed for good (Action: failed, or a 5.x.x status). */
  failed: boolean;
  /** For the first failed recipient: its address and what the server said, e.g. "ann@example.com: 550 5.1.1 User unknown". */
  reason: string | null;
}

/**
 * The report of a bounce: from its message/delivery-status part, or from its text, where the parser puts that
 * part (mailparser reads it as text) and where reports without one (qmail, some Exchange versions) write plain
 * prose. Undefined when neither holds a recipient's Action.
 */
export function readDeliveryReport(
  parts: ReadonlyArray<{ contentType: string; content: Uint8Array }>,
  text: string | null = null,
): DeliveryReport | undefined {
  const part = parts.find((candidate) => REPORT_PARTS.has(candidate.contentType.toLowerCase()));
  const report = part
    ? Buffer.from(part.content.buffer, part.content.byteOffset, Math.min(part.content.byteLength, MAX_REPORT_BYTES)).toString(
        'utf8',
      )
    : (text ?? '').slice(0, MAX_TEXT_CHARS);
  // The first group is about the message, each later one about a recipient; in prose, only a known Action counts.
  const recipients = fieldGroups(report).filter((fields) =>
    part ? fields.has('action') || fields.has('status') : ACTIONS.has(fields.get('action')?.toLowerCase() ?? ''),
  );
  if (recipients.length === 0) return part ? { failed: false, reason: null } : undefined;
  const failed = recipients.find((fields) => {
    const action = fields.get('action')?.toLowerCase();
    return action === 'failed' || (action === undefined && fields.get('status')?.startsWith('5') === true);
  });
  if (!failed) return { failed: false, reason: null };
  return { failed: true, reason: reasonOf(failed) };
}

function reasonOf(fields: Map<string, string>): string | null {
  const recipient = afterType(fields.get('final-recipient') ?? fields.get('original-recipient'));
  const diagnostic = afterType(fields.get('diagnostic-code'));
  const status = fields.get('status');
  const said = diagnostic || (status ? `status ${status}` : '');
  if (!said) return null;
  const reason = recipient ? `${recipient}: ${said}` : said;
  return reason.length > MAX_REASON_CHARS ? `${reason.slice(0, MAX_REASON_CHARS - 1)}…` : reason;
}

/** "rfc822; ann@example.com" → "ann@example.com", "smtp; 550 5.1.1 ..." → "550 5.1.1 ...". */
function afterType(value: string | undefined): string {
  if (!value) return '';
  const semicolon = value.indexOf(';');
  return (semicolon === -1 ? value : value.slice(semicolon + 1)).trim();
}

/** Header-like field groups separated by blank lines; names lower-cased, folded lines joined, control characters dropped. */
function fieldGroups(text: string): Array<Map<string, string>> {
  const groups: Array<Map<string, string>> = [];
  let group: Map<string, string> | undefined;
  let last: string | undefined;
  for (const line of text.split(/\r?\n/)) {
    if (line.trim() === '') {
      group = undefined;
      last = undefined;
      continue;
    }
    if (!group) groups.push((group = new Map()));
    if (line.startsWith(' ') || line.startsWith('\t')) {
      if (last) group.set(last, `${group.get(last)} ${clean(line)}`);
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    last = line.slice(0, colon).trim().toLowerCase();
    // The first of a repeated field counts.
    if (!group.has(last)) group.set(last, clean(line.slice(colon + 1)));
    else last = undefined;
  }
  return groups;
}

function clean(value: string): string {
  return value.replace(/\p{Cc}+/gu, ' ').trim();
}
