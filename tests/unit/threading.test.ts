import { describe, expect, it } from 'vitest';
import { outboundMessageId, outboundThreadHeaders, referencedMessageIds, replySubject } from '../../src/domain/threading.js';

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
