import { describe, expect, it } from 'vitest';
import { CredentialDecryptionError, decryptCredential, encryptCredential } from '../../src/security/credentials.js';

const key = 'k'.repeat(40);

describe('mailbox credentials at rest', () => {
  it('round-trip under the same key, in any language', () => {
    for (const password of ['hunter2', 'pässwörd-ключ-密码', '']) {
      expect(decryptCredential(encryptCredential(password, key), key)).toBe(password);
    }
  });

  it('never store the password in the clear, and differ each time', () => {
    const first = encryptCredential('hunter2', key);
    expect(first).not.toContain('hunter2');
    expect(encryptCredential('hunter2', key)).not.toBe(first);
  });

  it('refuse another key and tampered ciphertext with a clear error', () => {
    const stored = encryptCredential('hunter2', key);
    expect(() => decryptCredential(stored, 'x'.repeat(40))).toThrow(CredentialDecryptionError);
    const tampered = stored.slice(0, -2) + (stored.endsWith('A') ? 'BB' : 'AA');
    expect(() => decryptCredential(tampered, key)).toThrow(/SECRET_KEY/);
    expect(() => decryptCredential('plaintext-password', key)).toThrow(/format/);
  });
});
