import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes } from 'node:crypto';
import type { Payload, PayloadCodec } from '@temporalio/common';
import proto from '@temporalio/proto';

// Every payload Temporal stores (workflow and activity inputs and results, signals, updates, queries, user
// metadata, memos, encoded failure messages) leaves the process encrypted here: the mail text, addresses and
// names a conversation carries never sit in clear text in Temporal's database or its Web UI.

export const ENCRYPTED_ENCODING = 'binary/encrypted';
export const KEY_ID_METADATA = 'encryption-key-id';
const CIPHER = 'aes-256-gcm';
const IV_BYTES = 12;
const TAG_BYTES = 16;
const KEY_BYTES = 32;
/** Ids are written into every payload's metadata: short, printable, no separators of the setting. */
const KEY_ID = /^[\w.-]{1,64}$/;
const MAX_KEYS = 20;
// A CommonJS package: plain node offers its default export only.
const PayloadMessage = proto.temporal.api.common.v1.Payload;

export interface PayloadKey {
  id: string;
  /** 32 bytes, AES-256. */
  key: Buffer;
}

/** A payload the codec cannot decode: names the payload's problem (its key id), never key material. */
export class PayloadDecryptionError extends Error {
  override name = 'PayloadDecryptionError';
}

/**
 * `PAYLOAD_ENCRYPTION_KEYS`: `id:<base64 of 32 random bytes>` separated by commas, the current key first.
 * Throws naming the entry that is wrong (by position and id, never the key).
 */
export function parsePayloadKeys(text: string): PayloadKey[] {
  const entries = text
    .split(',')
    .map((entry) => entry.trim())
    .filter(Boolean);
  if (entries.length > MAX_KEYS) throw new Error(`at most ${MAX_KEYS} keys, got ${entries.length}`);
  const keys: PayloadKey[] = [];
  entries.forEach((entry, index) => {
    const colon = entry.indexOf(':');
    const id = colon < 0 ? '' : entry.slice(0, colon);
    const encoded = colon < 0 ? '' : entry.slice(colon + 1);
    const where = `key ${index + 1}${KEY_ID.test(id) ? ` ("${id}")` : ''}`;
    if (!KEY_ID.test(id)) throw new Error(`${where} must be written id:<base64 key>, the id of letters, digits, . _ or -`);
    if (keys.some((known) => known.id === id)) throw new Error(`${where} repeats an id: each key needs its own`);
    const key = Buffer.from(encoded, 'base64');
    // Buffer.from skips what is not base64: encoding back must give the same text (padding aside; base64url too).
    const canonical = [key.toString('base64'), key.toString('base64url'), key.toString('base64url') + '='];
    if (key.length !== KEY_BYTES || !canonical.includes(encoded)) {
      throw new Error(`${where} must be ${KEY_BYTES} bytes in base64, e.g. from \`openssl rand -base64 32\``);
    }
    keys.push({ id, key });
  });
  return keys;
}

/**
 * The key derived from SECRET_KEY (HKDF-SHA256), so that every deployment encrypts without another setting;
 * its id is a fingerprint of the key, which tells keys of different SECRET_KEYs apart and reveals nothing.
 */
export function secretDerivedPayloadKey(secretKey: string): PayloadKey {
  const key = Buffer.from(hkdfSync('sha256', secretKey, 'mailroom', 'temporal-payload-encryption', KEY_BYTES));
  return { id: `secret-${createHash('sha256').update(key).digest('hex').slice(0, 12)}`, key };
}

/** The keys a deployment decrypts with, the one it encrypts with first: the configured ones, then SECRET_KEY's. */
export function payloadKeyring(config: { SECRET_KEY: string; PAYLOAD_ENCRYPTION_KEYS?: PayloadKey[] | undefined }): PayloadKey[] {
  const derived = secretDerivedPayloadKey(config.SECRET_KEY);
  const configured = config.PAYLOAD_ENCRYPTION_KEYS ?? [];
  return [...configured, ...(configured.some((key) => key.id === derived.id) ? [] : [derived])];
}

/**
 * AES-256-GCM over the whole serialized payload (its metadata too: the encoding says what the data is), a random
 * 12-byte IV each, the key id in the metadata and bound to the ciphertext. The first key encrypts; any key
 * decrypts what it encrypted (rotation), and a payload never encrypted passes through (histories from before).
 */
export class AesGcmPayloadCodec implements PayloadCodec {
  private readonly current: PayloadKey;
  private readonly byId: Map<string, Buffer>;

  constructor(keys: PayloadKey[]) {
    if (keys.length === 0) throw new Error('the payload codec needs at least one key');
    this.current = keys[0]!;
    this.byId = new Map(keys.map(({ id, key }) => [id, key]));
  }

  async encode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((payload) => this.encrypt(payload));
  }

  async decode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((payload) => this.decrypt(payload));
  }

  private encrypt(payload: Payload): Payload {
    const { id, key } = this.current;
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv(CIPHER, key, iv, { authTagLength: TAG_BYTES });
    cipher.setAAD(Buffer.from(id));
    const plain = PayloadMessage.encode(payload).finish();
    const sealed = Buffer.concat([iv, cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
    return {
      metadata: { encoding: Buffer.from(ENCRYPTED_ENCODING), [KEY_ID_METADATA]: Buffer.from(id) },
      data: new Uint8Array(sealed),
    };
  }

  private decrypt(payload: Payload): Payload {
    const encoding = payload.metadata?.encoding;
    if (!encoding || Buffer.from(encoding).toString() !== ENCRYPTED_ENCODING) return payload;
    const idBytes = payload.metadata?.[KEY_ID_METADATA];
    const id = idBytes ? Buffer.from(idBytes).toString() : '';
    const key = this.byId.get(id);
    if (!key) {
      const shown = KEY_ID.test(id) ? `"${id}"` : 'an unreadable id';
      throw new PayloadDecryptionError(
        `a payload is encrypted with key ${shown}, which this deployment does not have: add it to PAYLOAD_ENCRYPTION_KEYS`,
      );
    }
    const data = Buffer.from(payload.data ?? []);
    if (data.length < IV_BYTES + TAG_BYTES) throw new PayloadDecryptionError(`a payload encrypted with key "${id}" is truncated`);
    const decipher = createDecipheriv(CIPHER, key, data.subarray(0, IV_BYTES), { authTagLength: TAG_BYTES });
    decipher.setAAD(Buffer.from(id));
    decipher.setAuthTag(data.subarray(data.length - TAG_BYTES));
    let plain: Buffer;
    try {
      plain = Buffer.concat([decipher.update(data.subarray(IV_BYTES, data.length - TAG_BYTES)), decipher.final()]);
    } catch {
      throw new PayloadDecryptionError(
        `a payload encrypted with key "${id}" does not authenticate (altered, or another key of that id)`,
      );
    }
    const decoded = PayloadMessage.decode(plain);
    return { metadata: decoded.metadata, data: decoded.data };
  }
}
