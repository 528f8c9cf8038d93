// A contact is one person with one address, and Mailroom only ever mails that one address. Header
// text such as `X <a@one.example,b@two.example>` reaches us as one "address" from the MIME parser: an
// address counts only when it is a single mailbox, local@domain, and nothing else.

/** RFC 5321's limit for a path, which every mail server enforces. */
export const MAX_ADDRESS_LENGTH = 254;
const MAX_LOCAL_PART_LENGTH = 64;

// RFC 5322 dot-atom (letters of any script for SMTPUTF8): no quoted local parts, no spaces, commas,
// angle brackets or a second @. Dots only between characters; no class overlaps the dot: linear time.
const LOCAL_PART = /^[\p{L}\p{N}!#$%&'*+/=?^_`{|}~-]+(?:\.[\p{L}\p{N}!#$%&'*+/=?^_`{|}~-]+)*$/u;
// A host name label (IDN letters allowed); no IP literals: nobody's support mail comes from [10.0.0.1].
const DOMAIN_LABEL = /^[\p{L}\p{N}](?:[\p{L}\p{N}-]{0,61}[\p{L}\p{N}])?$/u;
const NUMERIC = /^\d+$/;

/** Whether `address` is exactly one mailbox that mail can be sent to: `local@domain.tld`, nothing more. */
export function isSingleMailbox(address: string): boolean {
  if (address.length > MAX_ADDRESS_LENGTH) return false;
  const at = address.lastIndexOf('@');
  if (at <= 0 || at > MAX_LOCAL_PART_LENGTH) return false;
  if (!LOCAL_PART.test(address.slice(0, at))) return false;
  const labels = address.slice(at + 1).split('.');
  if (labels.length < 2 || !labels.every((label) => DOMAIN_LABEL.test(label))) return false;
  return !NUMERIC.test(labels[labels.length - 1]!); // a dotted quad is no domain
}
