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

  it.each(['support@acme.inbound.example', 'Support+tag@ACME.inbound.example'])(
    'never mails the channel at its forwarding address (%s)',
    (recipient) => {
      const base = { recipient, channelAddress: 'support@acme.example', sentLastHour: 0, limitPerHour: 3 };
      expect(automaticMailBlock({ ...base, forwardingAddress: 'support@acme.inbound.example' })).toBe(
        'the recipient is the channel itself',
      );
      expect(automaticMailBlock(base)).toBeNull();
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

describe('automaticMailBlock: floods and unverified senders', () => {
  const base = { recipient: 'ann@example.com', channelAddress: 'support@acme.example', sentLastHour: 0, limitPerHour: 5 };

  it('stops at the per-domain and the per-channel limit within an hour', () => {
    expect(automaticMailBlock({ ...base, sentToDomainLastHour: 49, limitPerDomainPerHour: 50 })).toBeNull();
    expect(automaticMailBlock({ ...base, sentToDomainLastHour: 50, limitPerDomainPerHour: 50 })).toBe(
      'example.com had 50 automatic mails from this channel in the last hour (limit 50)',
    );
    expect(automaticMailBlock({ ...base, sentByChannelLastHour: 500, limitPerChannelPerHour: 500 })).toBe(
      'the channel sent 500 automatic mails in the last hour (limit 500)',
    );
  });

  it('never answers a spammer or a sender the receiving server could not verify, unless an agent released it', () => {
    const spam = {
      senderVerdict: 'spam' as const,
      senderReasons: ['DMARC fail for bank.example (header.from)'],
      imported: false,
    };
    expect(automaticMailBlock({ ...base, latestMail: spam })).toBe('the mail is spam: DMARC fail for bank.example (header.from)');
    expect(automaticMailBlock({ ...base, latestMail: { ...spam, senderVerdict: 'unverified' } })).toBe(
      'the sender could not be verified: DMARC fail for bank.example (header.from)',
    );
    expect(automaticMailBlock({ ...base, latestMail: spam, releasedFromSpam: true })).toBeNull();
    expect(automaticMailBlock({ ...base, latestMail: { ...spam, senderVerdict: 'ordinary' } })).toBeNull();
  });

  it('sends nothing automatic about mail an import brought in', () => {
    expect(automaticMailBlock({ ...base, latestMail: { senderVerdict: 'ordinary', senderReasons: [], imported: true } })).toBe(
      'the mail was imported from the mailbox’s history',
    );
  });
});
