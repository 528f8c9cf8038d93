import { randomBytes } from 'node:crypto';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';
import { failureConverter } from '../../src/temporal/failure-converter.js';
import {
  AesGcmPayloadCodec,
  ENCRYPTED_ENCODING,
  KEY_ID_METADATA,
  parsePayloadKeys,
  payloadKeyring,
  PayloadDecryptionError,
  secretDerivedPayloadKey,
  type PayloadKey,
} from '../../src/temporal/payload-codec.js';

const key = (id: string): PayloadKey => ({ id, key: randomBytes(32) });
const text = (bytes: Uint8Array | null | undefined) => Buffer.from(bytes ?? []).toString('latin1');
const MAIL = { subject: 'Refund for order 4711', from: 'Ann Example <ann@example.com>', text: 'My card ends in 1234' };

async function encodeOne(codec: AesGcmPayloadCodec, value: unknown): Promise<Payload> {
  const [encoded] = await codec.encode([defaultPayloadConverter.toPayload(value)]);
  return encoded!;
}

describe('the AES-256-GCM payload codec', () => {
  it('encrypts the whole payload, names the key in the metadata, and decodes it back', async () => {
    const k1 = key('k1');
    const codec = new AesGcmPayloadCodec([k1]);
    const encoded = await encodeOne(codec, MAIL);
    expect(text(encoded.metadata!.encoding)).toBe(ENCRYPTED_ENCODING);
    expect(text(encoded.metadata![KEY_ID_METADATA])).toBe('k1');
    // Neither the mail nor its original encoding is readable: the metadata is inside the ciphertext.
    for (const clear of ['Refund', 'ann@example.com', 'Ann Example', '1234', 'json/plain']) {
      expect(text(encoded.data)).not.toContain(clear);
      expect(Buffer.from(encoded.data!).toString('base64')).not.toContain(Buffer.from(clear).toString('base64'));
    }
    const [decoded] = await codec.decode([encoded]);
    expect(text(decoded!.metadata!.encoding)).toBe('json/plain');
    expect(defaultPayloadConverter.fromPayload(decoded!)).toEqual(MAIL);
  });

  it('uses a fresh IV for every payload: the same value never encrypts the same twice', async () => {
    const codec = new AesGcmPayloadCodec([key('k1')]);
    const [a, b] = [await encodeOne(codec, MAIL), await encodeOne(codec, MAIL)];
    expect(Buffer.from(a.data!).equals(Buffer.from(b.data!))).toBe(false);
    expect(Buffer.from(a.data!).subarray(0, 12).equals(Buffer.from(b.data!).subarray(0, 12))).toBe(false);
  });

  it('rotates: what k1 wrote still decodes once k2 is current, and new payloads are written with k2', async () => {
    const [k1, k2] = [key('k1'), key('k2')];
    const before = await encodeOne(new AesGcmPayloadCodec([k1]), MAIL);
    const rotated = new AesGcmPayloadCodec([k2, k1]);
    expect(defaultPayloadConverter.fromPayload((await rotated.decode([before]))[0]!)).toEqual(MAIL);
    const after = await encodeOne(rotated, MAIL);
    expect(text(after.metadata![KEY_ID_METADATA])).toBe('k2');
    expect(defaultPayloadConverter.fromPayload((await rotated.decode([after]))[0]!)).toEqual(MAIL);
  });

  it('fails loudly, naming the key id, for a payload of a key it does not have', async () => {
    const before = await encodeOne(new AesGcmPayloadCodec([key('k1')]), MAIL);
    const without = new AesGcmPayloadCodec([key('k2')]);
    await expect(without.decode([before])).rejects.toThrow(PayloadDecryptionError);
    await expect(without.decode([before])).rejects.toThrow(/key "k1".*PAYLOAD_ENCRYPTION_KEYS/);
  });

  it('refuses a payload that was altered, or whose key id was swapped for another key’s', async () => {
    const [k1, k2] = [key('k1'), key('k2')];
    const codec = new AesGcmPayloadCodec([k1, k2]);
    const encoded = await encodeOne(codec, MAIL);
    const flipped = Buffer.from(encoded.data!);
    flipped[20] = flipped[20]! ^ 1;
    await expect(codec.decode([{ ...encoded, data: flipped }])).rejects.toThrow(/does not authenticate/);
    const relabelled = { ...encoded, metadata: { ...encoded.metadata, [KEY_ID_METADATA]: Buffer.from('k2') } };
    await expect(codec.decode([relabelled])).rejects.toThrow(/does not authenticate/);
    await expect(codec.decode([{ ...encoded, data: flipped.subarray(0, 10) }])).rejects.toThrow(/truncated/);
  });

  it('passes payloads that were never encrypted through (histories from before, the committed replay fixtures)', async () => {
    const clear = defaultPayloadConverter.toPayload(MAIL);
    const [decoded] = await new AesGcmPayloadCodec([key('k1')]).decode([clear]);
    expect(decoded).toBe(clear);
  });

  it('encodes failure messages and stack traces as a payload, which the codec then encrypts', async () => {
    const failure = failureConverter.errorToFailure(new Error('550 <ann@example.com> unknown'), defaultPayloadConverter);
    expect(failure.message).toBe('Encoded failure');
    expect(failure.stackTrace).toBe('');
    const [encrypted] = await new AesGcmPayloadCodec([key('k1')]).encode([failure.encodedAttributes!]);
    expect(text(encrypted!.data)).not.toContain('ann@example.com');
  });
});

describe('payload keys', () => {
  const base64Key = randomBytes(32).toString('base64');

  it('reads id:<base64> pairs, the current one first (standard or URL-safe base64)', () => {
    const urlSafe = randomBytes(32).toString('base64url');
    const keys = parsePayloadKeys(` k2:${base64Key} , k1:${urlSafe}`);
    expect(keys.map(({ id }) => id)).toEqual(['k2', 'k1']);
    expect(keys[0]!.key.toString('base64')).toBe(base64Key);
    expect(keys[1]!.key.toString('base64url')).toBe(urlSafe);
  });

  it.each([
    ['no id', base64Key, /key 1 must be written id:<base64 key>/],
    ['a bad id', `k 1:${base64Key}`, /key 1 must be written id:/],
    ['a short key', `k1:${randomBytes(16).toString('base64')}`, /key 1 \("k1"\) must be 32 bytes in base64/],
    ['not base64', `k1:${'!'.repeat(44)}`, /must be 32 bytes in base64/],
    ['a repeated id', `k1:${base64Key},k1:${base64Key}`, /key 2 \("k1"\) repeats an id/],
  ])('refuses %s, naming the entry and never the key', (_case, value, message) => {
    expect(() => parsePayloadKeys(value)).toThrow(message);
    try {
      parsePayloadKeys(value);
    } catch (error) {
      expect((error as Error).message).not.toContain(base64Key);
    }
  });

  it('refuses a bad PAYLOAD_ENCRYPTION_KEYS or TEMPORAL_UI_ORIGIN at start-up, by name', () => {
    const env = { SECRET_KEY: 's'.repeat(40) };
    expect(() => loadConfig({ ...env, PAYLOAD_ENCRYPTION_KEYS: 'k1:short' })).toThrow(ConfigError);
    expect(() => loadConfig({ ...env, PAYLOAD_ENCRYPTION_KEYS: 'k1:short' })).toThrow(/PAYLOAD_ENCRYPTION_KEYS: key 1/);
    expect(() => loadConfig({ ...env, TEMPORAL_UI_ORIGIN: 'https://temporal.example.com/ui' })).toThrow(
      /TEMPORAL_UI_ORIGIN: "https:\/\/temporal.example.com\/ui" is not an origin/,
    );
    const config = loadConfig({
      ...env,
      PAYLOAD_ENCRYPTION_KEYS: `k1:${base64Key}`,
      TEMPORAL_UI_ORIGIN: 'http://localhost:8233',
    });
    expect(config.PAYLOAD_ENCRYPTION_KEYS.map(({ id }) => id)).toEqual(['k1']);
    expect(config.TEMPORAL_UI_ORIGIN).toEqual(['http://localhost:8233']);
  });

  it('derives a key from SECRET_KEY, named by its fingerprint, which keeps decrypting once keys are configured', () => {
    const derived = secretDerivedPayloadKey('s'.repeat(40));
    expect(derived.key).toHaveLength(32);
    expect(derived.id).toMatch(/^secret-[0-9a-f]{12}$/);
    expect(secretDerivedPayloadKey('s'.repeat(40))).toEqual(derived);
    expect(secretDerivedPayloadKey('t'.repeat(40)).id).not.toBe(derived.id);
    expect(payloadKeyring({ SECRET_KEY: 's'.repeat(40) })).toEqual([derived]);
    const configured = parsePayloadKeys(`k1:${base64Key}`);
    expect(payloadKeyring({ SECRET_KEY: 's'.repeat(40), PAYLOAD_ENCRYPTION_KEYS: configured }).map(({ id }) => id)).toEqual([
      'k1',
      derived.id,
    ]);
  });
});
