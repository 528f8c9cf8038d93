// When a mailbox's OAuth access token is refreshed: ahead of its expiry, so that no mail server is ever shown one
// that expires while it is checked, and late enough that a token is used for most of its life.

/** At most this much before expiry (an hour's token is refreshed with 5 minutes left). */
export const REFRESH_MARGIN_MS = 5 * 60_000;

/**
 * Whether the token must be refreshed at `now` (ms): none yet, expired, less than 5 minutes left, or less than a
 * third of its lifetime (from `issuedAt`) left, whichever margin is smaller.
 */
export function accessTokenRefreshDue(token: { expiresAt: Date | null; issuedAt: Date }, now: number): boolean {
  if (!token.expiresAt) return true;
  const left = token.expiresAt.getTime() - now;
  const lifetime = token.expiresAt.getTime() - token.issuedAt.getTime();
  // A lifetime that cannot be right (the provider's clock, or ours, skewed) gets the full margin.
  const margin = lifetime > 0 ? Math.min(REFRESH_MARGIN_MS, lifetime / 3) : REFRESH_MARGIN_MS;
  return left <= 0 || left < margin;
}
