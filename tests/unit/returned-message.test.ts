import { describe, expect, it } from 'vitest';
import { returnedMessageIds } from '../../src/mail/returned-message.js';

const part = (contentType: string, content: string) => ({ contentType, content: Buffer.from(content) });

describe('returnedMessageIds', () => {
  it.each<[string, Array<ReturnType<typeof part>>, string | null, string[]]>([
    [
      'a returned message/rfc822',
      [part('message/rfc822', 'From: a@x\r\nMessage-ID: <m1@acme>\r\n\r\nbody')],
      null,
      ['<m1@acme>'],
    ],
    [
      'returned headers without a body',
      [part('text/rfc822-headers', 'From: a@x\r\nMessage-ID: <m2@acme>\r\n')],
      null,
      ['<m2@acme>'],
    ],
    ['the internationalized forms', [part('message/global-headers', 'From: a@x\nMessage-Id: m3@acme\n')], null, ['<m3@acme>']],
    [
      'headers quoted in the text (qmail)',
      [],
      '--- Below this line is a copy of the message.\n\nMessage-ID: <m4@acme>\n',
      ['<m4@acme>'],
    ],
    ['other parts are no returned message', [part('application/pdf', 'Message-ID: <m5@acme>\r\n')], null, []],
    ['a report naming no message', [part('text/rfc822-headers', 'Subject: hi\r\n')], 'no ids here', []],
    [
      'each id once, parts first',
      [part('message/rfc822', 'Message-ID: <m6@acme>\r\n\r\nx')],
      'Message-ID: <m7@acme>\nMessage-ID: <m6@acme>',
      ['<m6@acme>', '<m7@acme>'],
    ],
  ])('%s', (_name, parts, text, expected) => {
    expect(returnedMessageIds(parts, text)).toEqual(expected);
  });
});
