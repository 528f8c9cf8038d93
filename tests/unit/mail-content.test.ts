import { describe, expect, it } from 'vitest';
import { extractMailContent, parseDateHeader } from '../../src/mail/mail-content.js';

describe('parseDateHeader', () => {
  it.each<[string | undefined, string | null]>([
    ['Mon, 16 Nov 2026 09:12:00 +0100', '2026-11-16T08:12:00.000Z'],
    ['Tue, 17 Nov 2026 18:30:05 +0100 (CET)', '2026-11-17T17:30:05.000Z'],
    ['16 Nov 2026 09:12 GMT', '2026-11-16T09:12:00.000Z'],
    ['sometime last week', null],
    ['', null],
    [undefined, null],
  ])('%j → %j', (value, expected) => {
    expect(parseDateHeader(value)?.toISOString() ?? null).toBe(expected);
  });
});

// extractMailContent is what a parser thread runs; called here in-thread for the cases the corpus leaves out.
describe('extractMailContent', () => {
  const extract = (headers: string, body = 'Hello') => extractMailContent(Buffer.from(`${headers}\r\n\r\n${body}\r\n`), '<m@x>');

  it.each<[string, string, { address: string; name: string | null }]>([
    ['From', 'From: Ann <ANN@Example.com>', { address: 'ann@example.com', name: 'Ann' }],
    [
      'Sender when From has no address',
      'From: Web form\r\nSender: Robot <robot@example.com>',
      { address: 'robot@example.com', name: 'Robot' },
    ],
    ['Reply-To after that', 'From: Web form\r\nReply-To: ivy@example.net', { address: 'ivy@example.net', name: null }],
    ['Return-Path last', 'From: Web form\r\nReturn-Path: <rp@example.org>', { address: 'rp@example.org', name: null }],
    [
      'a domain for a bare MAILER-DAEMON',
      'From: MAILER-DAEMON (Mail Delivery System)\r\nMessage-ID: <b.1@mx.Example.net>',
      { address: 'mailer-daemon@mx.example.net', name: null },
    ],
  ])('takes the sender from %s', async (_name, headers, expected) => {
    expect((await extract(`${headers}\r\nSubject: s`)).from).toEqual(expected);
  });

  it('lists To and Cc, groups included, lower-cased', async () => {
    const mail = await extract('From: a@x.example\r\nTo: A <A@x.example>, team: b@x.example, c@x.example;\r\nCc: d@X.example');
    expect(mail.to.map((entry) => entry.address)).toEqual(['a@x.example', 'b@x.example', 'c@x.example']);
    expect(mail.cc).toEqual([{ address: 'd@x.example', name: null }]);
  });

  it('removes NUL characters, which PostgreSQL text cannot hold', async () => {
    const mail = await extract('From: a@x.example\r\nSubject: a\u0000b', 'x\u0000y');
    expect(mail.subject).toBe('ab');
    expect(mail.text).toBe('xy\n');
  });

  it('caps a huge text and says so', async () => {
    const mail = await extract('From: a@x.example', 'x'.repeat(1_200_000));
    expect(mail.text!.length).toBeLessThan(1_000_100);
    expect(mail.text).toContain('more characters; the original mail is kept');
  });

  it('finds the In-Reply-To id among other words', async () => {
    const mail = await extract("From: a@x.example\r\nIn-Reply-To: Ann's message of Monday <m1@acme.example>");
    expect(mail.inReplyTo).toBe('<m1@acme.example>');
  });

  it('names attachments that have no name, and strips paths from those that do', async () => {
    const part = (type: string, disposition: string) =>
      `--b\r\nContent-Type: ${type}\r\nContent-Disposition: ${disposition}\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n`;
    const mail = await extract(
      'From: a@x.example\r\nContent-Type: multipart/mixed; boundary=b',
      `${part('image/gif', 'attachment')}${part('application/pdf', 'attachment; filename="C:\\\\Users\\\\ann\\\\invoice.pdf"')}${part('application/x-thing', 'attachment; filename="../../etc/passwd"')}--b--`,
    );
    expect(mail.attachments.map((attachment) => attachment.filename)).toEqual(['image-1.gif', 'invoice.pdf', 'passwd']);
  });
});
