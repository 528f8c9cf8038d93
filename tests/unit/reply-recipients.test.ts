import { describe, expect, it } from 'vitest';
import { sanitizeFilename } from '../../src/domain/attachment-filename.js';
import { chosenRecipients, defaultCc, MAX_DEFAULT_CC_CANDIDATES } from '../../src/domain/reply-recipients.js';
import { composeMail, InvalidRecipientError } from '../../src/mail/compose.js';

// Who a reply goes to besides the contact, and the name a file is sent under: the nasty cases of each.

const ours = (address: string) => address.endsWith('@acme.example');

describe('default Cc (reply-all)', () => {
  it('keeps the people the customer kept, without the contact, our addresses and what is no single mailbox', () => {
    expect(
      defaultCc(
        {
          to: ['support@acme.example', 'zoe@example.com'],
          cc: ['MAX@example.com', 'support+tag@acme.example', 'a@one.example,b@two.example', 'max@example.com'],
        },
        'Zoe@Example.com',
        ours,
      ),
    ).toEqual(['max@example.com']);
  });

  it('derives none from a mail naming more people than anyone keeps in copy, nor before any mail', () => {
    const many = Array.from({ length: MAX_DEFAULT_CC_CANDIDATES + 1 }, (_, i) => `p${i}@example.com`);
    expect(defaultCc({ to: [], cc: many }, 'zoe@example.com', ours)).toEqual([]);
    expect(defaultCc(undefined, 'zoe@example.com', ours)).toEqual([]);
  });
});

describe("an agent's Cc and Bcc", () => {
  it('names every address that cannot be a recipient, and takes each person once', () => {
    const picked = chosenRecipients(
      { cc: [' Max@Example.com ', 'zoe@example.com', 'x <y@z.example>'], bcc: ['max@example.com', 'help@acme.example'] },
      'zoe@example.com',
      ours,
    );
    expect(picked.cc).toEqual(['max@example.com']);
    expect(picked.bcc).toEqual([]);
    expect(picked.problems).toEqual([
      { field: 'cc', message: expect.stringContaining('not a single mailbox') },
      { field: 'bcc', message: 'help@acme.example is an address of a channel, not a person' },
    ]);
  });

  it('refuses more than ten of each', () => {
    const eleven = Array.from({ length: 11 }, (_, i) => `p${i}@example.com`);
    expect(chosenRecipients({ cc: [], bcc: eleven }, 'zoe@example.com', ours).problems).toEqual([
      { field: 'bcc', message: 'a reply names at most 10 Bcc recipients' },
    ]);
  });
});

describe('the composed mail', () => {
  const mail = {
    kind: 'reply' as const,
    messageId: '<1@acme.example>',
    from: { name: 'Acme', address: 'support@acme.example' },
    to: 'zoe@example.com',
    subject: 'Re: parcel',
    text: 'Hi',
    inReplyTo: null,
    references: [],
    replyTo: null,
  };

  it('puts To, Cc and Bcc in the envelope and Bcc in no header', () => {
    const composed = composeMail({ ...mail, cc: ['max@example.com'], bcc: ['audit@example.org'] });
    expect(composed.envelope).toEqual({
      from: 'support@acme.example',
      to: ['zoe@example.com', 'max@example.com', 'audit@example.org'],
    });
    expect(composed.cc).toEqual(['max@example.com']);
    expect(composed.bcc).toBeUndefined();
  });

  it('refuses a Cc or Bcc that is a list', () => {
    expect(() => composeMail({ ...mail, bcc: ['a@one.example, b@two.example'] })).toThrow(InvalidRecipientError);
  });
});

describe('file names', () => {
  it('loses paths, control and direction characters and leading dots', () => {
    expect(sanitizeFilename('C:\\fakepath\\invoice.pdf')).toBe('invoice.pdf');
    expect(sanitizeFilename('../../etc/passwd')).toBe('passwd');
    expect(sanitizeFilename('invoice\u202egpj.exe')).toBe('invoicegpj.exe');
    expect(sanitizeFilename('a\r\nb.txt')).toBe('ab.txt');
    expect(sanitizeFilename('...hidden')).toBe('hidden');
    expect(sanitizeFilename('')).toBe('attachment');
    expect(sanitizeFilename(undefined)).toBe('attachment');
  });

  it('keeps a long name bounded with its extension', () => {
    const name = sanitizeFilename(`${'x'.repeat(5000)}.pdf`);
    expect([...name]).toHaveLength(200);
    expect(name.endsWith('.pdf')).toBe(true);
  });
});
