import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isMaildirMail } from '../../src/mail/mailbox-export.js';
import { MboxSplitter, NotAnMboxError, type MboxMail } from '../../src/mail/mbox-splitter.js';

/** Splits `bytes` given in pieces cut at `cuts` (positions), from `startOffset`. */
function split(
  bytes: Buffer,
  {
    cuts = [],
    maxMailBytes = 1024 * 1024,
    startOffset = 0,
  }: { cuts?: number[]; maxMailBytes?: number; startOffset?: number } = {},
) {
  const splitter = new MboxSplitter({ maxMailBytes, startOffset });
  const mails: MboxMail[] = [];
  let at = 0;
  for (const cut of [...new Set(cuts)].sort((a, b) => a - b).filter((cut) => cut > 0 && cut < bytes.length)) {
    mails.push(...splitter.push(bytes.subarray(at, cut)));
    at = cut;
  }
  mails.push(...splitter.push(bytes.subarray(at)));
  mails.push(...splitter.end());
  return mails;
}

/** A mail as an mboxrd writer stores it: envelope line, body lines starting with >*From quoted once more. */
function mboxrdEntry(body: string, eol: string): string {
  const lines = body.split('\n').map((line) => (/^>*From /.test(line) ? `>${line}` : line));
  return `From sender@example.com Mon Jan  1 00:00:00 2024${eol}${lines.join(eol)}${eol}`;
}

// Bodies made of the pieces that matter to the split: line breaks, empty lines, From lines, quoted ones.
const bodyArbitrary = fc
  .array(fc.constantFrom('Subject: x', '', 'From me', '>From you', 'text', 'From', 'a From b', ' ', '\r'), { maxLength: 12 })
  .map((lines) => lines.join('\n'));

describe('the mbox splitter', () => {
  it('gives back every mail an mboxrd writer stored, however the bytes arrive', () => {
    fc.assert(
      fc.property(
        fc.array(bodyArbitrary, { minLength: 1, maxLength: 6 }),
        fc.constantFrom('\n', '\r\n'),
        fc.array(fc.nat(2000), { maxLength: 20 }),
        (bodies, eol, cuts) => {
          const entries = bodies.map((body) => mboxrdEntry(body, eol));
          // Writers put an empty line after every mail, the last one too.
          const file = Buffer.from(entries.map((entry) => entry + eol).join(''), 'latin1');
          const mails = split(file, { cuts });
          expect(mails.map((mail) => mail.raw?.toString('latin1'))).toEqual(entries);
          // Offsets name where each mail starts, and the next one's start is where to resume.
          let offset = 0;
          for (const [index, mail] of mails.entries()) {
            expect(mail.offset).toBe(offset);
            offset += entries[index]!.length + eol.length;
            expect(mail.nextOffset).toBe(offset);
          }
        },
      ),
    );
  });

  it('splits the same way whatever the chunks, and resumes at any mail with the same mails after it', () => {
    fc.assert(
      fc.property(
        fc.array(bodyArbitrary, { minLength: 1, maxLength: 6 }),
        fc.array(fc.nat(2000), { maxLength: 20 }),
        fc.nat(),
        (bodies, cuts, pick) => {
          const file = Buffer.from(`From a\n${bodies.join('\n')}`, 'latin1');
          const whole = split(file);
          expect(split(file, { cuts })).toEqual(whole);
          const from = whole[pick % whole.length]!;
          const resumed = split(file.subarray(from.offset), { cuts, startOffset: from.offset });
          expect(resumed).toEqual(whole.slice(pick % whole.length));
        },
      ),
    );
  });

  it('keeps the envelope line and the >From quoting for the ingest, and leaves out only the separating empty line', () => {
    const file = 'From a@x Mon\nSubject: one\n\n>From the start\nbye\n\nFrom b@x Tue\r\nSubject: two\r\n\r\nbody\r\n\r\n';
    const mails = split(Buffer.from(file));
    expect(mails.map((mail) => mail.raw?.toString())).toEqual([
      'From a@x Mon\nSubject: one\n\n>From the start\nbye\n',
      'From b@x Tue\r\nSubject: two\r\n\r\nbody\r\n',
    ]);
  });

  it('starts no mail at a From line that follows a non-empty line', () => {
    const mails = split(Buffer.from('From a\nSubject: x\n\nline\nFrom here on it is body\n'));
    expect(mails).toHaveLength(1);
  });

  it('measures a mail over the bound without holding it, and goes on with the next', () => {
    const big = `From a\nSubject: big\nMessage-ID: <big@x>\n\n${'a'.repeat(5000)}\n`;
    const small = 'From b\nSubject: small\n\nhi\n';
    const mails = split(Buffer.from(`${big}\n${small}`), { maxMailBytes: 1000, cuts: [10, 700, 3000] });
    expect(mails[0]).toMatchObject({ raw: null, size: big.length, offset: 0 });
    expect(mails[0]!.head.toString()).toContain('Message-ID: <big@x>');
    expect(mails[0]!.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(mails[1]!.raw?.toString()).toBe(small);
  });

  it('reads a "mail" of many MiB without a line break as one oversized mail', () => {
    const splitter = new MboxSplitter({ maxMailBytes: 1024 * 1024 });
    const line = Buffer.alloc(1024 * 1024, 0x61);
    expect(splitter.push(Buffer.from('From x '))).toEqual([]);
    for (let mib = 0; mib < 16; mib++) expect(splitter.push(line)).toEqual([]);
    const [mail] = splitter.end();
    expect(mail).toMatchObject({ raw: null, size: 7 + 16 * 1024 * 1024 });
    expect(mail!.head.length).toBeLessThanOrEqual(256 * 1024);
  });

  it('has nothing left when resumed at the end of the file', () => {
    const file = Buffer.from('From a\nSubject: x\n\nhi\n\n');
    const [mail] = split(file);
    expect(split(file.subarray(mail!.nextOffset), { startOffset: mail!.nextOffset })).toEqual([]);
  });

  it('refuses bytes that are not an mbox, and an empty one', () => {
    expect(() => split(Buffer.from('Subject: hello\n\nbody\n'))).toThrow(NotAnMboxError);
    expect(() => split(Buffer.from('\nFrom a\n'))).toThrow('does not begin with a "From " line');
    expect(() => split(Buffer.from('Fro'))).toThrow(NotAnMboxError);
    expect(() => split(Buffer.alloc(0))).toThrow('the export is empty');
  });
});

describe('Maildir entries of a tar', () => {
  it.each([
    ['cur/1700000000.M1P2.host:2,S', true],
    ['Maildir/new/1700000000.M1P2.host', true],
    ['./Maildir/.Sent/cur/1700000000.M1P2.host:2,S', true],
    ['Maildir/.Archive.2023/new/x', true],
    ['Maildir/tmp/1700000000.M1P2.host', false],
    ['Maildir/dovecot-uidlist', false],
    ['Maildir/cur', false],
    ['Maildir/cur/.hidden', false],
    ['notes/readme.txt', false],
  ])('%s is a mail: %s', (name, expected) => {
    expect(isMaildirMail(name)).toBe(expected);
  });
});
