import { createHmac, timingSafeEqual } from 'node:crypto';

// The survey link carries a signed, expiring token: it names the survey and cannot be forged or reused late.

export interface CsatTokenClaims {
  surveyId: string;
  /** Seconds since the epoch. */
  expiresAt: number;
}

export type CsatTokenCheck =
  { ok: true; claims: CsatTokenClaims } | { ok: false; reason: 'malformed' | 'bad_signature' | 'expired' };

function signature(payload: string, secret: string): string {
  return createHmac('sha256', secret).update(`csat:${payload}`).digest('base64url');
}

export function signCsatToken(claims: CsatTokenClaims, secret: string): string {
  const payload = `${claims.surveyId}.${claims.expiresAt}`;
  return `${payload}.${signature(payload, secret)}`;
}

export function verifyCsatToken(token: string, secret: string, now: Date = new Date()): CsatTokenCheck {
  const match = /^([0-9a-f-]{36})\.(\d{1,12})\.([A-Za-z0-9_-]{43})$/.exec(token);
  if (!match) return { ok: false, reason: 'malformed' };
  const [, surveyId, expiresAt, given] = match as unknown as [string, string, string, string];
  const expected = signature(`${surveyId}.${expiresAt}`, secret);
  if (!timingSafeEqual(Buffer.from(given), Buffer.from(expected))) return { ok: false, reason: 'bad_signature' };
  if (Number(expiresAt) * 1000 <= now.getTime()) return { ok: false, reason: 'expired' };
  return { ok: true, claims: { surveyId, expiresAt: Number(expiresAt) } };
}
