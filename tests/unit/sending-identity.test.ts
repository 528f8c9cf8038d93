import { describe, expect, it } from 'vitest';
import { isSendingIdentity } from '../../src/domain/sending-identity.js';

describe('isSendingIdentity', () => {
  const channel = { emailAddress: 'support@acme.example', imapUsername: 'helpdesk@mail.acme.example' };

  it.each([
    ['support@acme.example', true],
    ['Support@ACME.example', true],
    ['support+billing@acme.example', true],
    ['helpdesk@mail.acme.example', true],
    ['HelpDesk@mail.acme.example', true],
    ['support@acme.example.evil', false],
    ['supportx@acme.example', false],
    ['mallory@acme.example', false],
    ['support@other.example', false],
    ['', false],
  ])('%s: %s', (address, expected) => {
    expect(isSendingIdentity(address, channel)).toBe(expected);
  });

  it('takes a login that is no address for none', () => {
    const plainLogin = { emailAddress: 'support@acme.example', imapUsername: 'support' };
    expect(isSendingIdentity('support', plainLogin)).toBe(false);
    expect(isSendingIdentity('support@acme.example', { ...plainLogin, imapUsername: null })).toBe(true);
  });
});
