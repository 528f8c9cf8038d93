import { describe, expect, it } from 'vitest';
import { dedupeKey, parseMail, readHeaderSection, UnparseableMailError } from '../../src/mail/parse.js';

const mail = (headers: string, body = 'Hello') => Buffer.from(`${headers}\r\n\r\n${body}\r\n`);

describe('readHeaderSection', () => {
  it('unfolds continuation lines and lower-cases names', () => {
    const headers = readHeaderSection(mail('From: Ann <ann@example.com>\r\nSubject: a long\r\n  subject\r\nX-A: 1\r\nX-A: 2'));
    expect(headers).toEqual({ from: ['Ann <ann@example.com>'], subject: ['a long subject'], 'x-a': ['1', '2'] });
  });

  it('refuses bytes that do not start with a header section', () => {
    expect(readHeaderSection(Buffer.from('{"json": true}'))).toBeNull();
    expect(readHeaderSection(Buffer.from('just some text\nwith lines'))).toBeNull();
    expect(readHeaderSection(Buffer.from([0x00, 0xff, 0x10]))).toBeNull();
    expect(readHeaderSection(Buffer.from('Key: value\nOther: thing\n\nbody'))).toBeNull();
  });
});

describe('dedupeKey', () => {
  it('is the Message-ID when there is one', () => {
    const raw = mail('From: a@x.example\r\nMessage-ID:   <abc.123@x.example>  ');
    expect(dedupeKey(readHeaderSection(raw)!, raw)).toBe('<abc.123@x.example>');
  });

  it('accepts a Message-ID without angle brackets', () => {
    const raw = mail('From: a@x.example\r\nMessage-ID: abc.123@x.example');
    expect(dedupeKey(readHeaderSection(raw)!, raw)).toBe('<abc.123@x.example>');
  });

  it('is stable for the same mail without a Message-ID, whatever a forwarder added on top', () => {
    const first = mail('From: a@x.example\r\nSubject: Hi\r\nDate: Mon, 2 Nov 2026 10:00:00 +0000');
    const forwarded = mail('Received: from relay\r\nFrom: a@x.example\r\nSubject: Hi\r\nDate: Mon, 2 Nov 2026 10:00:00 +0000');
    const other = mail('From: a@x.example\r\nSubject: Hi\r\nDate: Mon, 2 Nov 2026 10:00:00 +0000', 'Another body');
    const key = dedupeKey(readHeaderSection(first)!, first);
    expect(key).toMatch(/^<[0-9a-f]{40}@synthetic\.mailroom\.invalid>$/);
    expect(dedupeKey(readHeaderSection(forwarded)!, forwarded)).toBe(key);
    expect(dedupeKey(readHeaderSection(other)!, other)).not.toBe(key);
  });
});

describe('parseMail', () => {
  it('reads sender, subject, text and threading headers', async () => {
    const raw = mail(
      'From: "Ann Example" <Ann@Example.com>\r\nTo: support@acme.example\r\nSubject: =?UTF-8?Q?Rechnung_f=C3=BCr_M=C3=A4rz?=\r\n' +
        'Message-ID: <m2@example.com>\r\nIn-Reply-To: <m1@acme.example>\r\nReferences: <m0@acme.example> <m1@acme.example>\r\n' +
        'Content-Type: text/plain; charset=utf-8',
      'Where is my invoice?',
    );
    const parsed = await parseMail(raw, '<m2@example.com>');
    expect(parsed).toMatchObject({
      from: { address: 'ann@example.com', name: 'Ann Example' },
      subject: 'Rechnung für März',
      text: 'Where is my invoice?\n',
      inReplyTo: '<m1@acme.example>',
      references: ['<m0@acme.example>', '<m1@acme.example>'],
      classification: 'ordinary',
    });
  });

  it('keeps recipients, the reply apart from the quote, and sanitized HTML', async () => {
    const raw = mail(
      'From: ann@example.com\r\nTo: Support <support@acme.example>, bea@example.com\r\nCc: cid@example.com\r\nSubject: Re: x\r\n' +
        'Content-Type: text/html; charset=utf-8',
      '<p onclick="x()">Yes, thanks.</p><p>On Mon, Acme &lt;support@acme.example&gt; wrote:</p><blockquote>Old</blockquote><script>x()</script>',
    );
    const parsed = await parseMail(raw, '<m3@example.com>');
    expect(parsed).toMatchObject({
      to: [
        { address: 'support@acme.example', name: 'Support' },
        { address: 'bea@example.com', name: null },
      ],
      cc: [{ address: 'cid@example.com', name: null }],
      text: 'Yes, thanks.\n\nOn Mon, Acme <support@acme.example> wrote:\n\n> Old',
      replyText: 'Yes, thanks.',
      html: '<p>Yes, thanks.</p><p>On Mon, Acme &lt;support@acme.example&gt; wrote:</p><blockquote>Old</blockquote>',
      attachments: [],
      returnedMessageIds: [],
    });
  });

  it('refuses a mail without any sender address', async () => {
    const raw = mail('To: support@acme.example\r\nSubject: who am I');
    await expect(parseMail(raw, '<x@y>')).rejects.toThrow(UnparseableMailError);
  });
});
