import { createHash, timingSafeEqual } from 'node:crypto';

// Secrets shown once (API keys, forwarder secrets) are stored as their SHA-256 only: a database dump
// lets nobody post mail or call the API. They are random, so a fast hash suffices.

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

/** Whether `given` is the secret stored as `storedHash`, in constant time. */
export function secretMatchesHash(given: string, storedHash: string): boolean {
  const expected = Buffer.from(storedHash, 'hex');
  const actual = createHash('sha256').update(given).digest();
  return expected.length === actual.length && timingSafeEqual(actual, expected);
}
