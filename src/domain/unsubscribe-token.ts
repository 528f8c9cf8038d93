import { createHmac, timingSafeEqual } from 'node:crypto';

// The one-click unsubscribe link of survey mail (RFC 8058) names the contact, signed like the survey link; it does
// not expire: an old survey mail's link still unsubscribes.

function signature(contactId: string, secret: string): string {
  return createHmac('sha256', secret).update(`unsubscribe-surveys:${contactId}`).digest('base64url');
}

export function signUnsubscribeToken(contactId: string, secret: string): string {
  return `${contactId}.${signature(contactId, secret)}`;
}

/** The contact a token names, or null when it is malformed or not ours. */
export function verifyUnsubscribeToken(token: string, secret: string): string | null {
  const match = /^([0-9a-f-]{36})\.([A-Za-z0-9_-]{43})$/.exec(token);
  if (!match) return null;
  const [, contactId, given] = match as unknown as [string, string, string];
  return timingSafeEqual(Buffer.from(given), Buffer.from(signature(contactId, secret))) ? contactId : null;
}
