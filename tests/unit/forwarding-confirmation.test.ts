import { describe, expect, it } from 'vitest';
import { forwardingConfirmationIn } from '../../src/domain/forwarding-confirmation.js';
import { forwardingAddressParts, ownAddressesOf } from '../../src/domain/forwarding-address.js';

const link = 'https://mail-settings.google.com/mail/vf-%5BANGjdJ8x%5D-Zk1Tq0aB';

/** Gmail's confirmation as it arrives (English), with what a test changes. */
function gmailConfirmation(
  change: { from?: string; subject?: string; text?: string; verdict?: 'ordinary' | 'spam' | 'unverified' } = {},
) {
  return {
    from: { address: change.from ?? 'forwarding-noreply@google.com' },
    subject: change.subject ?? '(#123456789) Gmail Forwarding Confirmation - Receive Mail from ann@gmail.com',
    text:
      change.text ??
      [
        'ann@gmail.com has requested to automatically forward mail to your email address support@acme.inbound.example.',
        'Confirmation code: 123456789',
        '',
        'To allow ann@gmail.com to automatically forward mail to your address, please click the link below to confirm the request:',
        '',
        link,
        '',
        'If you click the link and it appears to be broken, please copy and paste it into a new browser window.',
      ].join('\n'),
    senderVerdict: { kind: change.verdict ?? 'ordinary' },
  };
}

describe('forwardingConfirmationIn', () => {
  it("reads Gmail's confirmation: the code, the link and who asks", () => {
    expect(forwardingConfirmationIn(gmailConfirmation())).toEqual({
      provider: 'gmail',
      code: '123456789',
      url: link,
      requestedBy: 'ann@gmail.com',
    });
  });

  it('reads it in another language: the (#code) prefix, the code and the link decide', () => {
    const found = forwardingConfirmationIn(
      gmailConfirmation({
        subject: '(#123456789) Gmail-Weiterleitungsbestätigung – E-Mails von ann@gmail.com empfangen',
        text: `Bestätigungscode: 123456789\n\n${link}\n`,
      }),
    );
    expect(found).toMatchObject({ provider: 'gmail', code: '123456789', url: link });
  });

  it.each<[string, Parameters<typeof gmailConfirmation>[0]]>([
    ['another sender with the shape', { from: 'forwarding-noreply@google.com.evil.example' }],
    ['a customer with the shape', { from: 'ann@example.com' }],
    ['the sender without the code in the subject', { subject: 'Gmail Forwarding Confirmation - please help' }],
    ['the sender with a code the body does not repeat', { text: `Your code is elsewhere.\n${link}` }],
    [
      'the sender without a link to Google',
      { text: 'Confirmation code: 123456789\nhttps://mail-settings.google.com.evil.example/mail/vf-x' },
    ],
    [
      'a link to Google on another port',
      { text: 'Confirmation code: 123456789\nhttps://mail-settings.google.com:8443/mail/vf-x' },
    ],
    ['a sender the receiving server could not verify', { verdict: 'unverified' }],
    ['spam', { verdict: 'spam' }],
  ])('is not a confirmation: %s (agents see it)', (_name, change) => {
    expect(forwardingConfirmationIn(gmailConfirmation(change))).toBeNull();
  });

  it('takes only the link to Google, never another link the mail carries', () => {
    const found = forwardingConfirmationIn(
      gmailConfirmation({ text: `Confirmation code: 123456789\nhttps://phish.example/login\n<${link}>\n` }),
    );
    expect(found?.url).toBe(link);
  });

  it('reads a huge body of near-links in linear time (bounded link length)', () => {
    const text = `Confirmation code: 123456789\n${'https://'.repeat(200_000)}\n${link}`;
    expect(forwardingConfirmationIn(gmailConfirmation({ text }))?.url).toBe(link);
  });
});

describe('forwarding addresses', () => {
  const channel = { email_address: 'support@acme.example', forwarding_username: 'support', forwarding_subdomain: 'acme' };

  it('is one of the channel’s own addresses once set', () => {
    expect(ownAddressesOf(channel, 'inbound.example')).toEqual(['support@acme.example', 'support@acme.inbound.example']);
    expect(ownAddressesOf({ ...channel, forwarding_username: null, forwarding_subdomain: null }, 'inbound.example')).toEqual([
      'support@acme.example',
    ]);
  });

  it.each<[string, ReturnType<typeof forwardingAddressParts>]>([
    ['support@acme.inbound.example', { username: 'support', subdomain: 'acme', tag: null }],
    ['Support+Billing@ACME.Inbound.Example', { username: 'support', subdomain: 'acme', tag: 'billing' }],
    ['support@inbound.example', undefined],
    ['support@acme.inbound.example.org', undefined],
    ['support@acmeinbound.example', undefined],
    ['@acme.inbound.example', undefined],
  ])('%s', (address, expected) => {
    expect(forwardingAddressParts(address, 'inbound.example')).toEqual(expected);
  });
});
