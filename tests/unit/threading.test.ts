import { describe, expect, it } from 'vitest';
import {
  chooseThread,
  isChannelAddress,
  outboundMessageId,
  outboundThreadHeaders,
  referencedMessageIds,
  replySubject,
  replyTokenAddress,
  replyTokenIn,
  type ThreadCandidate,
} from '../../src/domain/threading.js';

describe('referencedMessageIds', () => {
  it('puts In-Reply-To first, then References from newest to oldest, without repeats', () => {
    expect(referencedMessageIds('<c@x>', ['<a@x>', '<b@x>', '<c@x>'])).toEqual(['<c@x>', '<b@x>', '<a@x>']);
  });

  it('adds missing angle brackets', () => {
    expect(referencedMessageIds('c@x', [])).toEqual(['<c@x>']);
  });

  it('is empty for a mail that refers to nothing', () => {
    expect(referencedMessageIds(undefined, [])).toEqual([]);
  });
});

describe('outboundThreadHeaders', () => {
  const inbound = (messageId: string) => ({ messageId, direction: 'inbound' as const });
  const outbound = (messageId: string) => ({ messageId, direction: 'outbound' as const });

  it("answers the customer's latest mail and references the whole thread", () => {
    expect(
      outboundThreadHeaders([inbound('<a@x>'), outbound('<greeting@acme>'), inbound('<b@x>'), outbound('<reply@acme>')]),
    ).toEqual({
      inReplyTo: '<b@x>',
      references: ['<a@x>', '<greeting@acme>', '<b@x>', '<reply@acme>'],
    });
  });

  it('answers our own last mail when the customer has written nothing', () => {
    expect(outboundThreadHeaders([outbound('<opened@acme>')])).toEqual({
      inReplyTo: '<opened@acme>',
      references: ['<opened@acme>'],
    });
  });

  it('keeps the root and the 19 newest ids of a long thread', () => {
    const thread = Array.from({ length: 50 }, (_, i) => inbound(`<m${i}@x>`));
    const { references } = outboundThreadHeaders(thread);
    expect(references).toHaveLength(20);
    expect(references[0]).toBe('<m0@x>');
    expect(references.slice(1)).toEqual(thread.slice(31).map((m) => m.messageId));
  });

  it('has no threading headers for a conversation without messages', () => {
    expect(outboundThreadHeaders([])).toEqual({ references: [] });
  });
});

describe('outboundMessageId', () => {
  it('uses the outbox id on the channel domain', () => {
    expect(outboundMessageId('0b1c', 'support@acme.example')).toBe('<0b1c@acme.example>');
  });
});

describe('replySubject', () => {
  it.each([
    ['Invoice missing', 'Re: Invoice missing'],
    ['Re: Invoice missing', 'Re: Invoice missing'],
    ['RE: Invoice missing', 'RE: Invoice missing'],
    ['  ', 'Re: (no subject)'],
  ])('%j → %j', (subject, expected) => {
    expect(replySubject(subject)).toBe(expected);
  });
});

describe('reply tokens', () => {
  const token = '5f0c2a9e7b3d4e18a6c1f09d2b7e4a63';

  it('puts the token after a plus in the channel address', () => {
    expect(replyTokenAddress('support@acme.example', token)).toBe(`support+${token}@acme.example`);
  });

  it.each<[string, string[], string | undefined]>([
    ['the token address', [`support+${token}@acme.example`], token],
    ['in any case', [`Support+${token.toUpperCase()}@ACME.example`], token],
    ['among other recipients', ['bea@example.com', `support+${token}@acme.example`], token],
    ['the bare channel address', ['support@acme.example'], undefined],
    ['another tag on the channel address', ['support+billing@acme.example'], undefined],
    ['a token on another domain', [`support+${token}@other.example`], undefined],
    ['a token on another mailbox', [`sales+${token}@acme.example`], undefined],
    ['a token of the wrong length', [`support+${token}ff@acme.example`], undefined],
  ])('finds %s', (_name, addresses, expected) => {
    expect(replyTokenIn(addresses, 'support@acme.example')).toBe(expected);
  });

  it.each<[string, boolean]>([
    ['support@acme.example', true],
    ['SUPPORT@acme.example', true],
    ['support+anything@acme.example', true],
    ['supporter@acme.example', false],
    ['support@acme.example.org', false],
  ])('%s is the channel address: %s', (address, expected) => {
    expect(isChannelAddress(address, 'support@acme.example')).toBe(expected);
  });

  it('counts the forwarding address, with or without a tag, as the channel itself and takes a token at it', () => {
    const own = ['support@acme.example', 'support@acme.inbound.example'];
    expect(isChannelAddress('Support+x@acme.inbound.example', own)).toBe(true);
    expect(isChannelAddress('support@other.inbound.example', own)).toBe(false);
    expect(replyTokenIn([`support+${token}@acme.inbound.example`], own)).toBe(token);
  });
});

describe('chooseThread', () => {
  const token = { conversationId: 'by-token', via: 'reply_token' as const };
  const returned = { conversationId: 'by-bounce', via: 'returned_message' as const };
  const inReplyTo = { conversationId: 'by-in-reply-to', via: 'reference' as const };
  const older = { conversationId: 'by-older-reference', via: 'reference' as const };

  it.each<[string, ThreadCandidate[], { isBounce: boolean; participantIn: string[] }, string | undefined]>([
    ['nothing to join: a new conversation', [], { isBounce: false, participantIn: [] }, undefined],
    [
      'the token, the sender taking part',
      [token, inReplyTo],
      { isBounce: false, participantIn: ['by-token', 'by-in-reply-to'] },
      'by-token',
    ],
    [
      'the reference, when the sender does not take part in the token’s',
      [token, inReplyTo],
      { isBounce: false, participantIn: ['by-in-reply-to'] },
      'by-in-reply-to',
    ],
    [
      'an older reference the sender takes part in',
      [inReplyTo, older],
      { isBounce: false, participantIn: ['by-older-reference'] },
      'by-older-reference',
    ],
    [
      'none, when the sender takes part in none (a reply to a campaign)',
      [inReplyTo, older],
      { isBounce: false, participantIn: [] },
      undefined,
    ],
    [
      'a bounce: the returned message, whoever sent it',
      [returned, inReplyTo],
      { isBounce: true, participantIn: [] },
      'by-bounce',
    ],
    ['a bounce without a returned message: its reference', [inReplyTo], { isBounce: true, participantIn: [] }, 'by-in-reply-to'],
  ])('%s', (_name, candidates, { isBounce, participantIn }, expected) => {
    expect(chooseThread(candidates, { isBounce, senderParticipatesIn: new Set(participantIn) })?.conversationId).toBe(expected);
  });
});
