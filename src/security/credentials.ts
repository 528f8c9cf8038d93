import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';

// Mailbox passwords at rest: AES-256-GCM under a key derived from SECRET_KEY, so a database dump
// alone reveals no password. Format: v1.<iv>.<auth tag>.<ciphertext>, each base64url.

const VERSION = 'v1';

function keyFrom(secretKey: string): Buffer {
  return Buffer.from(hkdfSync('sha256', secretKey, 'mailroom', 'mailbox credentials', 32));
}

export function encryptCredential(plaintext: string, secretKey: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', keyFrom(secretKey), iv);
  const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return [VERSION, iv, cipher.getAuthTag(), ciphertext]
    .map((part) => (typeof part === 'string' ? part : part.toString('base64url')))
    .join('.');
}

export class CredentialDecryptionError extends Error {
  override name = 'CredentialDecryptionError';
}

export function decryptCredential(stored: string, secretKey: string): string {
  const [version, iv, tag, ciphertext] = stored.split('.');
  if (version !== VERSION || !iv || !tag || ciphertext === undefined) {
    throw new CredentialDecryptionError('the stored credential is not in a format this version can read');
  }
  try {
    const decipher = createDecipheriv('aes-256-gcm', keyFrom(secretKey), Buffer.from(iv, 'base64url'));
    decipher.setAuthTag(Buffer.from(tag, 'base64url'));
    return Buffer.concat([decipher.update(Buffer.from(ciphertext, 'base64url')), decipher.final()]).toString('utf8');
  } catch {
    throw new CredentialDecryptionError('the stored credential cannot be decrypted: was SECRET_KEY changed?');
  }
}
