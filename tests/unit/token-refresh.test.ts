import { describe, expect, it } from 'vitest';
import { accessTokenRefreshDue } from '../../src/domain/token-refresh.js';

const MINUTE = 60_000;
const issuedAt = new Date('2026-12-05T10:00:00Z');
const at = (minutes: number) => issuedAt.getTime() + minutes * MINUTE;
const expiring = (lifetimeMinutes: number) => ({ issuedAt, expiresAt: new Date(at(lifetimeMinutes)) });

describe('accessTokenRefreshDue', () => {
  it.each([
    // An hour's token (Google, Microsoft): used until 5 minutes are left.
    { lifetime: 60, now: 0, due: false },
    { lifetime: 60, now: 54.9, due: false },
    { lifetime: 60, now: 55.1, due: true },
    // A 15-minute token: refreshed with 5 minutes left (a third of it).
    { lifetime: 15, now: 9.9, due: false },
    { lifetime: 15, now: 10.1, due: true },
    // A 30-second token: with 10 seconds left.
    { lifetime: 0.5, now: 0.3, due: false },
    { lifetime: 0.5, now: 0.34, due: true },
    // Expired; or expiring before it was issued (a skewed clock): with 5 minutes left, as an hour's token.
    { lifetime: 60, now: 61, due: true },
    { lifetime: -1, now: -2, due: true },
    { lifetime: -1, now: -10, due: false },
  ])('a $lifetime-minute token at minute $now: due $due', ({ lifetime, now, due }) => {
    expect(accessTokenRefreshDue(expiring(lifetime), at(now))).toBe(due);
  });

  it('refreshes a grant that has no access token yet', () => {
    expect(accessTokenRefreshDue({ issuedAt, expiresAt: null }, at(0))).toBe(true);
  });
});
