import { describe, expect, it } from 'vitest';
import { automaticMailBlock } from '../../src/domain/loop-safety.js';

const check = (recipient: string, sentLastHour = 0) =>
  automaticMailBlock({ recipient, channelAddress: 'support@acme.example', sentLastHour, limitPerHour: 3 });

describe('automaticMailBlock', () => {
  it.each(['ann@example.com', 'replyguy@example.com', 'noreplyjoe.smith@example.com'])(
    'lets automatic mail go to %s',
    (recipient) => {
      expect(check(recipient)).toBeNull();
    },
  );

  it.each(['support@acme.example', 'SUPPORT@acme.example', 'support+3f9a@acme.example'])(
    'never mails the channel itself (%s)',
    (recipient) => {
      expect(check(recipient)).toBe('the recipient is the channel itself');
    },
  );

  it.each([
    'noreply@shop.example',
    'no-reply@shop.example',
    'no_reply@shop.example',
    'do-not-reply@bank.example',
    'donotreply@bank.example',
    'MAILER-DAEMON@mx.example',
    'postmaster@example.com',
    'bounces+123@lists.example',
    'notifications@github.example',
    'noreply-billing@shop.example',
  ])('never answers the robot %s', (recipient) => {
    expect(check(recipient)).toBe('the recipient is a no-reply address');
  });

  it('stops at the per-recipient limit within an hour', () => {
    expect(check('ann@example.com', 2)).toBeNull();
    expect(check('ann@example.com', 3)).toMatch(/3 automatic mails in the last hour \(limit 3\)/);
  });
});
