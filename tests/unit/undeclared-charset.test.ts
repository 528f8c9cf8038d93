import { describe, expect, it } from 'vitest';
import { extractMailContent } from '../../src/mail/mail-content.js';
import { decodeUndeclared, repairHeaderLine } from '../../src/mail/undeclared-charset.js';

describe('decodeUndeclared', () => {
  it.each<[string, Buffer, string]>([
    ['ASCII', Buffer.from('plain text'), 'plain text'],
    ['valid UTF-8', Buffer.from('Grüße, 日本', 'utf8'), 'Grüße, 日本'],
    ['ISO-8859-1', Buffer.from('4772fcdf65', 'hex'), 'Grüße'],
    ['windows-1252 punctuation in 0x80–0x9F', Buffer.from('93687794208020313085', 'hex'), '“hw” € 10…'],
    ['ISO-2022-JP by its escape sequences', Buffer.from('1b2442436d4a38244b2444242424461b2842', 'hex'), '注文について'],
    ['an escape that is not ISO-2022-JP', Buffer.from('1b5b316d626f6c64', 'hex'), '\x1b[1mbold'],
  ])('%s', (_name, bytes, expected) => {
    expect(decodeUndeclared(bytes)).toBe(expected);
  });
});

describe('repairHeaderLine', () => {
  const binary = (bytes: Buffer) => bytes.toString('latin1');

  it('keeps a line that is UTF-8 already', () => {
    const line = binary(Buffer.from('Subject: Grüße', 'utf8'));
    expect(repairHeaderLine(line)).toBe(line);
  });

  it('re-encodes raw ISO-8859-1 as UTF-8', () => {
    const repaired = repairHeaderLine(binary(Buffer.concat([Buffer.from('Subject: '), Buffer.from('4772fcdf65', 'hex')])));
    expect(Buffer.from(repaired, 'latin1').toString('utf8')).toBe('Subject: Grüße');
  });
});

describe('an unlabelled 8-bit header through the parser', () => {
  it('decodes the subject and the sender name like an unlabelled body: UTF-8 when valid, else windows-1252', async () => {
    const raw = Buffer.concat([
      Buffer.from('From: J'),
      Buffer.from('fc', 'hex'), // ü in ISO-8859-1
      Buffer.from('rgen <j@example.com>\r\nSubject: R'),
      Buffer.from('fc', 'hex'),
      Buffer.from('ckfrage zu Stra'),
      Buffer.from('df', 'hex'), // ß
      Buffer.from('e, '),
      Buffer.from('80', 'hex'), // € in windows-1252
      Buffer.from(' 12\r\nMessage-ID: <latin1@example.com>\r\n\r\nText\r\n'),
    ]);
    const parsed = await extractMailContent(raw, '<latin1@example.com>');
    expect(parsed.subject).toBe('Rückfrage zu Straße, € 12');
    expect(parsed.from).toEqual({ address: 'j@example.com', name: 'Jürgen' });
    const utf8 = Buffer.from('From: ann@example.com\r\nSubject: Grüße aus Köln\r\n\r\nText\r\n', 'utf8');
    expect((await extractMailContent(utf8, '<utf8@example.com>')).subject).toBe('Grüße aus Köln');
  });
});
