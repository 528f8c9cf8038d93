import { describe, expect, it } from 'vitest';
import { asksForPerson, normaliseIntentText } from '../../src/domain/customer-intent.js';
import { FROM_NAME_TOKENS, templateProblem } from '../../src/domain/outgoing-templates.js';
import { dedupeKey, messageIdIn, messageIdsIn, readHeaderSection } from '../../src/mail/header-section.js';
import { extractMailContent } from '../../src/mail/mail-content.js';
import { returnedMessageIds } from '../../src/mail/returned-message.js';

// Header and body text is written by whoever sends the mail. Each case below is an input that made the
// old patterns backtrack for minutes to hours (8 KiB of `a@` took a minute): the test fails by timing out.
// The lint rules regexp/no-super-linear-* keep new patterns from doing the same.
const KIB = 1024;
const aAtA = (bytes: number) => `${'a@'.repeat(bytes / 2)}<`;

describe('Message-IDs in header values', () => {
  it.each<[string, string | undefined, string | undefined]>([
    ['bracketed', '<abc@example.com>', '<abc@example.com>'],
    ['with a comment after it', '<abc@example.com> (sent by Outlook)', '<abc@example.com>'],
    ['bare, as some systems write it', 'abc@example.com', '<abc@example.com>'],
    ['the first of several', '<one@x> <two@x>', '<one@x>'],
    ['nothing that is an id', 'hello world', undefined],
    ['an @ alone', '<@>', undefined],
    ['empty', '', undefined],
    ['missing', undefined, undefined],
  ])('%s', (_name, value, expected) => {
    expect(messageIdIn(value)).toBe(expected);
  });

  it('reads References in order, with or without spaces between the ids', () => {
    expect(messageIdsIn('<a@x>\t<b@x><c@x>  junk <d@x>')).toEqual(['<a@x>', '<b@x>', '<c@x>', '<d@x>']);
  });

  it('answers at once for 64 KiB of "a@a@a@…<" in Message-ID, In-Reply-To and References', () => {
    const hostile = aAtA(64 * KIB);
    expect(messageIdIn(hostile)).toBeUndefined();
    expect(messageIdIn(`<${hostile.slice(0, -2)}>`)).toBe(`<${'a@'.repeat(32 * KIB - 1)}a>`);
    expect(messageIdsIn(`${hostile} <ok@x>`)).toEqual(['<ok@x>']);
    expect(messageIdIn('<'.repeat(64 * KIB))).toBeUndefined();
    expect(messageIdIn(`<${'@'.repeat(64 * KIB)}`)).toBeUndefined();
  });

  it('keys a mail whose Message-ID is hostile without stalling (the first step on the API, before the mail is stored)', () => {
    const raw = Buffer.from(`From: a@example.com\r\nMessage-ID: ${aAtA(64 * KIB)}\r\n\r\nHi\r\n`);
    const headers = readHeaderSection(raw)!;
    expect(dedupeKey(headers, raw)).toMatch(/^<[0-9a-f]{40}@synthetic\.mailroom\.invalid>$/);
  });
});

describe('a header section longer than what is read of it', () => {
  it('leaves out the line the 256 KiB window cuts, even inside its name', () => {
    const head = `From: ann@example.com\r\nMessage-ID: <long@example.com>\r\nX-Pad: ${'p'.repeat(256 * 1024 - 69)}\r\n`;
    const raw = Buffer.from(`${head}${'X-After-The-Cut: value\r\n'.repeat(100)}\r\nbody\r\n`);
    const headers = readHeaderSection(raw);
    expect(headers?.['message-id']).toEqual(['<long@example.com>']);
    expect(headers?.['x-after-the-cut']).toBeUndefined();
  });
});

describe('bounce reports quoting the returned headers', () => {
  it('finds the Message-ID line after 100,000 blank lines and after 64 KiB of spaces', () => {
    const text = `${'\n'.repeat(100_000)}Message-ID: <m1@acme>\n${' '.repeat(64 * KIB)}x\nMessage-ID: ${aAtA(64 * KIB)}\n`;
    expect(returnedMessageIds([], text)).toEqual(['<m1@acme>']);
  });

  it('reads a returned message whose headers are hostile', () => {
    const part = { contentType: 'message/rfc822', content: Buffer.from(`Message-ID: ${aAtA(64 * KIB)}<r@acme>\r\n\r\nx`) };
    expect(returnedMessageIds([part], null)).toEqual(['<r@acme>']);
  });
});

describe('a whole mail with hostile threading headers', () => {
  it('parses it, keeping only well-formed ids', async () => {
    const headers = [
      'From: Mallory <mallory@example.com>',
      'To: support@acme.example',
      `Message-ID: ${aAtA(32 * KIB)}`,
      `In-Reply-To: ${aAtA(32 * KIB)}`,
      `References: ${aAtA(32 * KIB)} <real@acme.example>`,
      'Subject: hi',
    ].join('\r\n');
    const mail = await extractMailContent(Buffer.from(`${headers}\r\n\r\nHello\r\n`), '<m@x>');
    expect(mail.references).toEqual(['<real@acme.example>']);
    expect(mail.inReplyTo).toBeUndefined();
  });
});

describe('other text we did not write', () => {
  it('normalises a customer mail of 200,000 apostrophes and spaces (intent detection)', () => {
    expect(normaliseIntentText(`${"'".repeat(100_000)}x${' '.repeat(100_000)}`)).toBe('x');
    expect(normaliseIntentText("don't ''quote'' me")).toBe("don't quote me");
    expect(asksForPerson(`${"'".repeat(100_000)}`, ['en'])).toBe(false);
  });

  it('reads a template of 100,000 blanks between braces (subject and From-name templates)', () => {
    expect(templateProblem(`{{${' '.repeat(100_000)}x`, [FROM_NAME_TOKENS.agentName])).toBeNull();
    expect(templateProblem(`{{ ${' '.repeat(100_000)}agent.name }}`, [FROM_NAME_TOKENS.agentName])).toBeNull();
    expect(templateProblem('{{ agent.nme }}', [FROM_NAME_TOKENS.agentName])).toMatch(/unknown token/);
  });
});
