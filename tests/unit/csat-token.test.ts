import { describe, expect, it } from 'vitest';
import { signCsatToken, verifyCsatToken } from '../../src/domain/csat-token.js';

const secret = 'x'.repeat(40);
const surveyId = '6f1c7d2e-8a6b-4c8e-9d0f-1a2b3c4d5e6f';
const expiresAt = Math.floor(new Date('2026-12-01T00:00:00Z').getTime() / 1000);
const before = new Date('2026-11-30T23:59:59Z');

describe('CSAT tokens', () => {
  it('verify with the secret that signed them', () => {
    const token = signCsatToken({ surveyId, expiresAt }, secret);
    expect(verifyCsatToken(token, secret, before)).toEqual({ ok: true, claims: { surveyId, expiresAt } });
  });

  it('are refused once expired', () => {
    const token = signCsatToken({ surveyId, expiresAt }, secret);
    expect(verifyCsatToken(token, secret, new Date('2026-12-01T00:00:00Z'))).toEqual({ ok: false, reason: 'expired' });
  });

  it('are refused when signed with another secret', () => {
    const token = signCsatToken({ surveyId, expiresAt }, 'y'.repeat(40));
    expect(verifyCsatToken(token, secret, before)).toEqual({ ok: false, reason: 'bad_signature' });
  });

  it('are refused when the expiry was extended by hand', () => {
    const token = signCsatToken({ surveyId, expiresAt }, secret).replace(`.${expiresAt}.`, `.${expiresAt + 86400}.`);
    expect(verifyCsatToken(token, secret, before)).toEqual({ ok: false, reason: 'bad_signature' });
  });

  it.each(['', 'abc', `${surveyId}.123`, `${surveyId}.x.${'a'.repeat(43)}`])('refuse the malformed token %j', (token) => {
    expect(verifyCsatToken(token, secret, before)).toEqual({ ok: false, reason: 'malformed' });
  });
});
