import { Webhook } from 'standardwebhooks';
import { describe, expect, it } from 'vitest';
import { generateWebhookSecret, signWebhook } from '../../src/webhooks/signing.js';

describe('webhook signing (Standard Webhooks)', () => {
  const body = JSON.stringify({ type: 'message.received', timestamp: '2026-12-05T06:00:00.000Z', data: { id: 'ü' } });
  const now = Math.floor(Date.now() / 1000);

  it('makes a secret in the whsec_ form with 32 random bytes', () => {
    const secret = generateWebhookSecret();
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]+=*$/);
    expect(Buffer.from(secret.slice('whsec_'.length), 'base64')).toHaveLength(32);
    expect(generateWebhookSecret()).not.toBe(secret);
  });

  it('signs so that the reference implementation verifies it', () => {
    const secret = generateWebhookSecret();
    const headers = signWebhook(secret, 'msg_1', now, body);
    expect(new Webhook(secret).verify(body, headers)).toEqual(JSON.parse(body));
  });

  it('matches the reference signature byte for byte', () => {
    const secret = generateWebhookSecret();
    const reference = new Webhook(secret).sign('msg_2', new Date(now * 1000), body);
    expect(signWebhook(secret, 'msg_2', now, body)['webhook-signature']).toBe(reference);
  });

  it('is refused by the reference for another body, id, timestamp or secret', () => {
    const secret = generateWebhookSecret();
    const headers = signWebhook(secret, 'msg_3', now, body);
    const webhook = new Webhook(secret);
    expect(() => webhook.verify(body.replace('ü', 'u'), headers)).toThrow();
    expect(() => webhook.verify(body, { ...headers, 'webhook-id': 'msg_4' })).toThrow();
    expect(() => webhook.verify(body, { ...headers, 'webhook-timestamp': String(now + 1) })).toThrow();
    expect(() => new Webhook(generateWebhookSecret()).verify(body, headers)).toThrow();
  });
});
