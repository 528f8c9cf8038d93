import { describe, expect, it } from 'vitest';
import { asParsableMail, readHeaderSection, withoutMboxEnvelope } from '../../src/mail/header-section.js';
import { extractMailContent } from '../../src/mail/mail-content.js';

// Mail as forwarding scripts and mailbox exports hand it over: the mbox envelope line before the headers,
// the mboxrd `>From ` quoting of body lines, and header names with the obsolete space before the colon.

const lines = (...text: string[]) => Buffer.from(text.join('\n'));

describe('mail from an mbox', () => {
  it('reads the headers after the envelope line, and keeps the mail otherwise as it is', () => {
    const raw = lines('From jamis@example.edu Mon May  2 16:07:05 2005', 'From: jamis@example.edu', 'Subject: Hi', '', 'Body');
    expect(readHeaderSection(raw)).toEqual({ from: ['jamis@example.edu'], subject: ['Hi'] });
    expect(withoutMboxEnvelope(raw).toString()).toBe('From: jamis@example.edu\nSubject: Hi\n\nBody');
    const plain = lines('From: ann@example.com', '', 'Body');
    expect(withoutMboxEnvelope(plain)).toBe(plain);
  });

  it('takes a first header written "From :" for a header, not for an envelope line', () => {
    const raw = lines('From : Ann <ann@example.com>', 'Subject  :  Hello', '', 'Body');
    expect(readHeaderSection(raw)).toEqual({ from: ['Ann <ann@example.com>'], subject: ['Hello'] });
    expect(asParsableMail(raw).toString()).toBe('From: Ann <ann@example.com>\nSubject:  Hello\n\nBody');
  });

  it('undoes the >From quoting of a mail from an mbox, one level, and only there', async () => {
    const body = ['>From the start.', '>>From a quote.', '> From a reply quote.', 'From the middle.'];
    const fromMbox = lines('From ann@example.com Tue Jan  2 10:00:00 2024', 'From: ann@example.com', 'Subject: Q', '', ...body);
    const parsed = await extractMailContent(fromMbox, '<q@example.com>');
    expect(parsed.text).toBe('From the start.\n>From a quote.\n> From a reply quote.\nFrom the middle.');
    const notFromMbox = lines('From: ann@example.com', 'Subject: Q', '', ...body);
    expect((await extractMailContent(notFromMbox, '<q@example.com>')).text).toBe(body.join('\n'));
  });

  it('reads a body of nothing but quote marks (4 MiB) in one pass (the patterns are linear; eslint-plugin-regexp checks them)', () => {
    const raw = Buffer.concat([
      lines('From x@example.com Tue Jan  2 10:00:00 2024', 'From: x@example.com', '', ''),
      Buffer.alloc(4 << 20, '>'),
    ]);
    expect(asParsableMail(raw).length).toBe(raw.length - 'From x@example.com Tue Jan  2 10:00:00 2024\n'.length);
  });
});
