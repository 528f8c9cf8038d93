// The adversarial corpus (issue 9, "safe on the open internet"): hostile mails generated here, each with what Mailroom
// must make of it. tests/adversarial/adversarial.test.ts posts every case through the forwarder endpoint (and a subset
// through IMAP); `npm run bench` measures the API's event-loop stalls while it takes them (bench/stall.ts).
// Generated rather than stored: several cases are hundreds of kilobytes of repetition, one is 68 MB.
import { base64Lines, bytes, entity, filler, header, multipart, type Bytes, type Field } from '../fixtures/eml/corpus-mime.js';

/** The channel the corpus is posted to; the test and the bench create it so. */
export const ADVERSARIAL_CHANNEL = {
  emailAddress: 'support@acme.example',
  /** Its receiving server, whose Authentication-Results it believes (channel setting senders.trustedAuthservIds). */
  trustedAuthservId: 'mx.acme.example',
  /** Its per-mail limit (channel setting limits.maxInboundBytes), below the deployment's (MAX_INBOUND_BYTES, 1 MiB in the tests). */
  maxInboundBytes: 768 * 1024,
} as const;

export type SenderVerdictKind = 'ordinary' | 'unverified' | 'spam';

/** What may go to the sender automatically: the greeting, nothing (said on the timeline, with the reason), or nothing at all. */
export type AutomaticMail =
  | { kind: 'greeting' }
  /** The workflow withholds the greeting and records `automatic_mail_suppressed` with a reason matching this. */
  | { kind: 'suppressed'; reason: RegExp }
  /** A machine's mail or spam: the workflow has nothing to send and records no suppression. */
  | { kind: 'none' };

export type Expected =
  | {
      outcome: 'stored';
      /** A new conversation of its own (never one of an earlier mail), with this contact: the only address Mailroom may mail. */
      sender: string;
      classification: 'ordinary' | 'auto_reply' | 'bounce';
      verdict: SenderVerdictKind;
      automaticMail: AutomaticMail;
    }
  | {
      outcome: 'refused';
      status: 400 | 413;
      /** The problem's `type` slug (problem+json). */
      problem: 'unprocessable-mail' | 'too-large';
      /** What the problem's detail (and, for mail kept, the stored rejection reason) says. */
      reason: RegExp;
      /**
       * Whether the raw mail is stored in the quarantine. A 400 keeps it (listed, reprocessable); a 413 from the forwarder
       * endpoint stores nothing: the forwarder still has the mail (IMAP quarantines it by size instead).
       */
      kept: boolean;
    };

export interface AdversarialCase {
  name: string;
  description: string;
  raw: Buffer;
  expected: Expected;
  /** Mail that must arrive before this one: the customer's mail a forged bounce names. */
  before?: Buffer[];
}

const CRLF = '\r\n';
const DATE = 'Tue, 17 Nov 2026 10:00:00 +0000';
const TRUSTED = ADVERSARIAL_CHANNEL.trustedAuthservId;

/** Every case sends from an address of its own, on a domain of its own (the per-domain limit counts per domain). */
const senderOf = (name: string) => `mallory@${name}.example`;
const messageIdOf = (name: string) => `<${name}@adversary.example>`;

/** A mail with the usual header fields of case `name` (From, To, Subject, Date, Message-ID) unless `fields` gives them. */
function mail(name: string, fields: readonly Field[], body: Bytes, options: { top?: readonly Field[] } = {}): Buffer {
  const given = new Set(fields.map(([field]) => field.toLowerCase()));
  const defaults: Field[] = (
    [
      ['From', `Mallory <${senderOf(name)}>`],
      ['To', ADVERSARIAL_CHANNEL.emailAddress],
      ['Subject', `Adversarial case ${name}`],
      ['Date', DATE],
      ['Message-ID', messageIdOf(name)],
    ] as Field[]
  ).filter(([field]) => !given.has(field.toLowerCase()));
  const contentType: Field[] = given.has('content-type') ? [] : [['Content-Type', 'text/plain; charset=utf-8']];
  return entity([...(options.top ?? []), ...defaults, ...fields, ['MIME-Version', '1.0'], ...contentType], body);
}

const greeted = { kind: 'greeting' } as const;
const ordinary = (name: string): Expected => ({
  outcome: 'stored',
  sender: senderOf(name),
  classification: 'ordinary',
  verdict: 'ordinary',
  automaticMail: greeted,
});
const NO_SINGLE_FROM = /the message has no From address that is a single mailbox \(local@domain\)/;

/** `count` lines of `line`, CRLF after each. */
const lines = (line: string, count: number) => `${line}${CRLF}`.repeat(count);

/** A customer's ordinary mail, which a forged bounce below names. */
export const BOUNCED_CUSTOMER = { address: 'carol@customer.example', messageId: '<order-4711.customer@customer.example>' };
const customerMail = entity(
  [
    ['From', `Carol Customer <${BOUNCED_CUSTOMER.address}>`],
    ['To', ADVERSARIAL_CHANNEL.emailAddress],
    ['Subject', 'Where is my order 4711?'],
    ['Date', DATE],
    ['Message-ID', BOUNCED_CUSTOMER.messageId],
    ['MIME-Version', '1.0'],
    ['Content-Type', 'text/plain; charset=utf-8'],
  ],
  'Hello, my order 4711 has not arrived.\r\n',
);

/** multipart/mixed nested `depth` levels deep around one text part. */
function nestedMultipart(depth: number): { contentType: string; body: Buffer } {
  let inner: { contentType: string; body: Buffer } = {
    contentType: 'text/plain; charset=utf-8',
    body: bytes('The innermost part.\r\n'),
  };
  for (let level = depth; level > 0; level--) {
    inner = multipart('mixed', `level-${level}`, [entity([['Content-Type', inner.contentType]], inner.body)]);
  }
  return inner;
}

/** message/rfc822 nested `depth` levels deep: a forward of a forward of … a mail. */
function nestedMessages(depth: number): Buffer {
  let inner = entity(
    [
      ['From', 'someone@deep.example'],
      ['Subject', 'the innermost mail'],
      ['Content-Type', 'text/plain'],
    ],
    'Innermost.\r\n',
  );
  for (let level = depth; level > 0; level--) {
    inner = entity(
      [
        ['From', `forwarder${level}@deep.example`],
        ['Subject', `Fwd level ${level}`],
        ['Content-Type', 'message/rfc822'],
      ],
      inner,
    );
  }
  return inner;
}

function cases(): AdversarialCase[] {
  const list: AdversarialCase[] = [];
  const add = (name: string, description: string, build: (name: string) => Omit<AdversarialCase, 'name' | 'description'>) =>
    list.push({ name, description, ...build(name) });

  // ---- Pathological headers ----
  for (const [label, size] of [
    ['8k', 8 * 1024],
    ['64k', 64 * 1024],
  ] as const) {
    add(
      `message-id-at-storm-${label}`,
      `Message-ID, In-Reply-To and References of "a@a@a@…<", ${size / 1024} KiB each: no id in them; stored under a key from its content`,
      (name) => {
        const storm = `<${'a@'.repeat(size / 2)}<`;
        return {
          raw: mail(
            name,
            [
              ['Message-ID', storm],
              ['In-Reply-To', storm],
              ['References', storm],
            ],
            `A mail whose ids are ${size / 1024} KiB of a@a@a@.\r\n`,
          ),
          expected: ordinary(name),
        };
      },
    );
  }
  add('folded-100k-lines', 'A header folded over 100,000 continuation lines (400 KB) below the usual fields', (name) => ({
    raw: mail(name, [['X-Folded', `start${CRLF}${lines(' x', 100_000)}end`]], 'Folded.\r\n'),
    expected: ordinary(name),
  }));
  add('folded-subject-100k-lines', 'The Subject itself folded over 100,000 continuation lines', (name) => ({
    raw: mail(name, [['Subject', `Help${CRLF}${lines(' me', 100_000)} now`]], 'A long subject.\r\n'),
    expected: ordinary(name),
  }));
  add('header-section-300k', 'A header section of 300 KiB (1,500 headers of 200 bytes), the body after it', (name) => ({
    raw: mail(
      name,
      Array.from({ length: 1500 }, (_, n): Field => [`X-Filler-${n}`, 'f'.repeat(200 - `X-Filler-${n}: `.length - 2)]),
      'The body after a 300 KiB header section.\r\n',
    ),
    expected: ordinary(name),
  }));
  add(
    'header-section-cut-in-a-name',
    'A header section of 300 KiB whose byte 262,144 (where a first look at the headers may stop) falls inside a header name',
    (name) => {
      // Built twice: the first time to learn where the header after the pad starts.
      const build = (pad: number) =>
        mail(
          name,
          [
            ['X-Pad', 'p'.repeat(pad)],
            ...Array.from({ length: 400 }, (_, n): Field => [`X-After-The-Cut-${n}`, 'a'.repeat(100)]),
          ],
          'The body after the header section.\r\n',
        );
      const probe = build(1000);
      const pad = 1000 + (256 * 1024 - 4) - probe.indexOf('X-After-The-Cut-0:');
      return { raw: build(pad), expected: ordinary(name) };
    },
  );
  add('thousands-of-headers', '5,000 header fields, half of them Received', (name) => ({
    raw: mail(
      name,
      Array.from({ length: 5000 }, (_, n): Field => (n % 2 ? [`X-H${n}`, 'v'] : ['Received', `from hop${n}.example by mx`])),
      'Many headers.\r\n',
    ),
    expected: ordinary(name),
  }));
  add('nul-bytes', 'NUL bytes in the Subject, the display name, another header and the body', (name) => ({
    raw: bytes(
      `From: Mal\0lory <${senderOf(name)}>\r\n`,
      `To: ${ADVERSARIAL_CHANNEL.emailAddress}\r\n`,
      'Subject: nul\0in\0subject\r\n',
      `X-Nul: \0\0\0\r\n`,
      `Date: ${DATE}\r\nMessage-ID: ${messageIdOf(name)}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n`,
      'Body with \0 NUL \0 bytes.\r\n',
    ),
    expected: ordinary(name),
  }));
  add(
    'nul-in-message-ids',
    'NUL bytes inside the Message-ID, In-Reply-To and References (a new conversation, keyed by its hash)',
    (name) => ({
      raw: mail(
        name,
        [
          ['Message-ID', `<${name}\0@adversary.example>`],
          ['In-Reply-To', '<earlier\0@adversary.example>'],
          ['References', '<first\0@adversary.example> <earlier\0@adversary.example>'],
        ],
        'Body.\r\n',
      ),
      expected: ordinary(name),
    }),
  );
  add('nul-in-a-header-name', 'A NUL byte in a header name: no header section Mailroom can read', (name) => ({
    raw: mail(name, [['X-Nul\0Name', 'value']], 'Body.\r\n'),
    expected: {
      outcome: 'refused',
      status: 400,
      problem: 'unprocessable-mail',
      reason: /not an RFC 822 message: it does not start with a header section/,
      kept: true,
    },
  }));
  add(
    'eight-bit-garbage-headers',
    'Random 8-bit bytes (no charset) in the Subject, the display name and other headers',
    (name) => ({
      raw: bytes(
        'From: ',
        highBytes(filler(200, 1)),
        ` <${senderOf(name)}>\r\n`,
        `To: ${ADVERSARIAL_CHANNEL.emailAddress}\r\nSubject: `,
        highBytes(filler(2000, 2)),
        '\r\nX-Garbage: ',
        // Any byte but CR and LF, which would end the header, and NUL (the case above; IMAP servers replace it).
        withoutLineBreaksAndNul(filler(20_000, 3)),
        `\r\nDate: ${DATE}\r\nMessage-ID: ${messageIdOf(name)}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n`,
        withoutLineBreaksAndNul(filler(2000, 4)),
        '\r\n',
      ),
      expected: ordinary(name),
    }),
  );
  add(
    'unterminated-encoded-word-64k',
    'A Subject and a display name of "=?utf-8?B?" and 64 KiB of base64, never closed',
    (name) => {
      const open = `=?utf-8?B?${Buffer.alloc(48 * 1024, 'A').toString('base64')}`;
      return {
        raw: mail(
          name,
          [
            ['From', `${open} <${senderOf(name)}>`],
            ['Subject', open],
          ],
          'Unterminated encoded words.\r\n',
        ),
        expected: ordinary(name),
      };
    },
  );
  add('long-lines-without-crlf', 'A 300 KB header line, then a 400 KB body line with no line break to the end', (name) => ({
    raw: bytes(
      mail(name, [['X-Long', 'y'.repeat(300_000)]], ''),
      Buffer.alloc(400_000, 'z'), // the body: one line, no CRLF after it
    ),
    expected: ordinary(name),
  }));
  add('no-line-break-at-all', '700 KB without a single line break: one header line and nothing else', () => ({
    raw: bytes(`Subject: ${'w'.repeat(700_000)}`),
    expected: { outcome: 'refused', status: 400, problem: 'unprocessable-mail', reason: NO_SINGLE_FROM, kept: true },
  }));
  add('not-mime', 'Binary bytes that are no mail at all', () => ({
    raw: filler(4096, 5, '\x89PNG\r\n'),
    expected: {
      outcome: 'refused',
      status: 400,
      problem: 'unprocessable-mail',
      reason: /not an RFC 822 message: it does not start with a header section/,
      kept: true,
    },
  }));

  // ---- Address lists ----
  const letters = 'abcdefghijklmnopqrstuvwxyz';
  add('from-address-list-in-brackets', 'From: X <v0@a.example,v1@b.example,…,v49@x.example>: one "address" of 50', () => ({
    raw: mail(
      'from-address-list-in-brackets',
      [['From', `X <${Array.from({ length: 50 }, (_, n) => `v${n}@${letters[n % 26]}.example`).join(',')}>`]],
      'Answer us all.\r\n',
    ),
    expected: { outcome: 'refused', status: 400, problem: 'unprocessable-mail', reason: NO_SINGLE_FROM, kept: true },
  }));
  add(
    'from-50-mailboxes-no-sender',
    'From with 50 mailboxes and no Sender: the first is the contact, the only one mailed',
    (name) => ({
      raw: mail(
        name,
        [['From', [senderOf(name), ...Array.from({ length: 49 }, (_, n) => `also${n}@${name}-${n}.example`)].join(', ')]],
        'Fifty authors.\r\n',
      ),
      expected: ordinary(name),
    }),
  );
  add('to-and-cc-10000-addresses', 'To and Cc with 10,000 addresses each (folded, 458 KB), none of them mailed', (name) => {
    const list = (prefix: string) => Array.from({ length: 10_000 }, (_, n) => `${prefix}${n}@list.example`).join(`,${CRLF} `);
    return {
      raw: mail(
        name,
        [
          ['To', `${ADVERSARIAL_CHANNEL.emailAddress},${CRLF} ${list('to')}`],
          ['Cc', list('cc')],
        ],
        'Everyone in copy.\r\n',
      ),
      expected: ordinary(name),
    };
  });
  add('group-syntax', 'From as a group of two mailboxes, To an empty group: the first member is the contact', (name) => ({
    raw: mail(
      name,
      [
        ['From', `Team: Mallory <${senderOf(name)}>, Trent <trent@${name}-other.example>;`],
        ['To', 'undisclosed-recipients:;'],
      ],
      'From a group.\r\n',
    ),
    expected: ordinary(name),
  }));
  add('display-name-address', 'From: "support@acme.example" <mallory@…>: the display name is no address', (name) => ({
    raw: mail(name, [['From', `"${ADVERSARIAL_CHANNEL.emailAddress}" <${senderOf(name)}>`]], 'I am support.\r\n'),
    expected: ordinary(name),
  }));
  add('display-name-tricks', 'From: "ceo@bank.example" <mallory@…> with Reply-To and Sender elsewhere', (name) => ({
    raw: mail(
      name,
      [
        ['From', `"ceo@bank.example <ceo@bank.example>" <${senderOf(name)}>`],
        ['Sender', 'victim@bank.example'],
        ['Reply-To', 'a@b <c@d.example>, victim2@bank.example'],
      ],
      'Which one is me?\r\n',
    ),
    expected: ordinary(name),
  }));

  // ---- Header and MIME bombs ----
  add('multipart-nested-120', 'multipart/mixed nested 120 levels deep around one text part', (name) => {
    const nested = nestedMultipart(120);
    return { raw: mail(name, [['Content-Type', nested.contentType]], nested.body), expected: ordinary(name) };
  });
  /** One text part and `count` one-byte attachments in a multipart/mixed. */
  const tinyParts = (count: number) =>
    multipart('mixed', 'tiny', [
      entity([['Content-Type', 'text/plain']], 'Many parts.'),
      ...Array.from({ length: count }, () => entity([['Content-Type', 'application/x']], 'x')),
    ]);
  add(
    'ten-thousand-parts',
    '10,000 tiny attachments in one multipart/mixed (420 KB): more MIME nodes than the parser takes',
    (name) => {
      const body = tinyParts(10_000);
      return {
        raw: mail(name, [['Content-Type', body.contentType]], body.body),
        expected: {
          outcome: 'refused',
          status: 400,
          problem: 'unprocessable-mail',
          reason: /the MIME structure cannot be read: Max allowed child nodes exceeded/,
          kept: true,
        },
      };
    },
  );
  add('nine-hundred-parts', "900 tiny attachments, just under the MIME parser's 1,000 nodes: 900 attachment rows", (name) => {
    const body = tinyParts(900);
    return { raw: mail(name, [['Content-Type', body.contentType]], body.body), expected: ordinary(name) };
  });
  add('base64-zeros-at-the-limit', 'A base64 attachment of zeros as large as the channel limit lets it be (540 KiB)', (name) => {
    const body = multipart('mixed', 'zeros', [
      entity([['Content-Type', 'text/plain']], 'See the attachment.'),
      entity(
        [
          ['Content-Type', 'application/octet-stream'],
          ['Content-Disposition', 'attachment; filename="zeros.bin"'],
          ['Content-Transfer-Encoding', 'base64'],
        ],
        base64Zeros(540 * 1024),
      ),
    ]);
    return { raw: mail(name, [['Content-Type', body.contentType]], body.body), expected: ordinary(name) };
  });
  add('base64-50mb-zeros', 'A base64 attachment that decodes to 50 MB of zeros: 68 MB raw, over every limit', (name) => {
    const body = multipart('mixed', 'zeros', [
      entity(
        [
          ['Content-Type', 'application/octet-stream'],
          ['Content-Transfer-Encoding', 'base64'],
        ],
        base64Zeros(50_000_000),
      ),
    ]);
    return {
      raw: mail(name, [['Content-Type', body.contentType]], body.body),
      expected: { outcome: 'refused', status: 413, problem: 'too-large', reason: /the limit is \d+ bytes/, kept: false },
    };
  });
  add('over-the-channel-limit', 'An ordinary mail of 900 KiB: over the channel limit, under the deployment one', (name) => ({
    raw: mail(name, [], lines('A long letter, line after line, to the end.', (900 * 1024) / 45)),
    expected: {
      outcome: 'refused',
      status: 413,
      problem: 'too-large',
      reason: new RegExp(`the channel accepts up to ${ADVERSARIAL_CHANNEL.maxInboundBytes} bytes`),
      kept: false,
    },
  }));
  add('boundary-never-closes', 'multipart/mixed whose last part runs to the end: no closing boundary', (name) => ({
    raw: mail(
      name,
      [['Content-Type', 'multipart/mixed; boundary="open"']],
      `--open\r\nContent-Type: text/plain\r\n\r\nFirst part.\r\n--open\r\nContent-Type: text/plain\r\n\r\n${lines('never closed', 2000)}`,
    ),
    expected: ordinary(name),
  }));
  add('boundary-never-appears', 'multipart/mixed declaring a boundary that never occurs', (name) => ({
    raw: mail(name, [['Content-Type', 'multipart/mixed; boundary="absent"']], lines('no parts here', 2000)),
    expected: ordinary(name),
  }));
  add('quoted-printable-soft-break-storm', 'A quoted-printable text of 200,000 soft line breaks and little else', (name) => ({
    raw: mail(
      name,
      [
        ['Content-Type', 'text/plain; charset=utf-8'],
        ['Content-Transfer-Encoding', 'quoted-printable'],
      ],
      `Storm=${CRLF}${`=${CRLF}`.repeat(200_000)}over.${CRLF}`,
    ),
    expected: ordinary(name),
  }));
  add('message-rfc822-nested-100', 'message/rfc822 nested 100 levels deep', (name) => {
    const body = multipart('mixed', 'fwd', [
      entity([['Content-Type', 'text/plain']], 'Forwarded a few times.'),
      nestedMessages(100),
    ]);
    return { raw: mail(name, [['Content-Type', body.contentType]], body.body), expected: ordinary(name) };
  });

  // ---- Forged bounce ----
  add(
    'forged-bounce-naming-a-customer',
    "A delivery report naming a customer's Message-ID in its returned headers and References: a conversation of its own",
    (name) => {
      const report = multipart(
        'report',
        'dsn',
        [
          entity([['Content-Type', 'text/plain']], 'Delivery to the following recipient failed permanently.\r\n'),
          entity(
            [['Content-Type', 'message/delivery-status']],
            `Reporting-MTA: dns; mx.evil.example\r\n\r\nFinal-Recipient: rfc822; ${BOUNCED_CUSTOMER.address}\r\nAction: failed\r\nStatus: 5.1.1\r\n`,
          ),
          entity(
            [['Content-Type', 'text/rfc822-headers']],
            header([
              ['From', `Carol Customer <${BOUNCED_CUSTOMER.address}>`],
              ['Subject', 'Where is my order 4711?'],
              ['Message-ID', BOUNCED_CUSTOMER.messageId],
            ]),
          ),
        ],
        '; report-type=delivery-status',
      );
      return {
        before: [customerMail],
        raw: mail(
          name,
          [
            ['From', `Mail Delivery Subsystem <MAILER-DAEMON@${name}.example>`],
            ['Subject', 'Delivery Status Notification (Failure)'],
            ['In-Reply-To', BOUNCED_CUSTOMER.messageId],
            ['References', BOUNCED_CUSTOMER.messageId],
            ['Content-Type', report.contentType],
          ],
          report.body,
        ),
        expected: {
          outcome: 'stored',
          sender: `mailer-daemon@${name}.example`,
          classification: 'bounce',
          verdict: 'ordinary',
          automaticMail: { kind: 'none' },
        },
      };
    },
  );

  // ---- Spoofed and spam-flagged ----
  const spam = (name: string): Expected => ({
    outcome: 'stored',
    sender: senderOf(name),
    classification: 'ordinary',
    verdict: 'spam',
    automaticMail: { kind: 'none' },
  });
  add('dmarc-fail-at-the-trusted-server', `DMARC fail (p=reject) in the Authentication-Results of ${TRUSTED}`, (name) => ({
    raw: mail(name, [], 'From your bank.\r\n', {
      top: [
        [
          'Authentication-Results',
          `${TRUSTED}; spf=pass smtp.mailfrom=${name}.example; dmarc=fail (p=reject dis=reject) header.from=${name}.example`,
        ],
      ],
    }),
    expected: spam(name),
  }));
  add('forged-dmarc-pass-below', `A forged dmarc=pass from an untrusted id below the trusted server's fail`, (name) => ({
    raw: mail(name, [], 'Trust me.\r\n', {
      top: [
        ['Authentication-Results', `${TRUSTED}; dmarc=fail (p=quarantine) header.from=${name}.example`],
        ['Authentication-Results', `attacker.example; dmarc=pass header.from=${name}.example`],
      ],
    }),
    expected: spam(name),
  }));
  add(
    'forged-dmarc-pass-alone',
    'Only a dmarc=pass the sender wrote (an untrusted id) and a spam flag from the receiving server',
    (name) => ({
      raw: mail(name, [], 'Trust me.\r\n', {
        top: [
          ['X-Spam-Flag', 'YES'],
          ['Authentication-Results', `${TRUSTED}.attacker.example; dmarc=pass header.from=${name}.example`],
        ],
      }),
      expected: spam(name),
    }),
  );
  add('x-spam-flag-yes', 'X-Spam-Flag: YES and X-Spam-Status: Yes from the receiving server', (name) => ({
    raw: mail(name, [], 'Cheap pills.\r\n', {
      top: [
        ['X-Spam-Flag', 'YES'],
        ['X-Spam-Status', 'Yes, score=14.2 required=5.0'],
      ],
    }),
    expected: spam(name),
  }));
  add('microsoft-scl-9', 'Microsoft 365 spam confidence level 9', (name) => ({
    raw: mail(name, [], 'Prize.\r\n', { top: [['X-MS-Exchange-Organization-SCL', '9']] }),
    expected: spam(name),
  }));
  add('dmarc-fail-unenforced', `DMARC fail under p=none at ${TRUSTED}: unverified, for people only`, (name) => ({
    raw: mail(name, [], 'Maybe me.\r\n', {
      top: [['Authentication-Results', `${TRUSTED}; dmarc=fail (p=none dis=none) header.from=${name}.example`]],
    }),
    expected: {
      outcome: 'stored',
      sender: senderOf(name),
      classification: 'ordinary',
      verdict: 'unverified',
      automaticMail: { kind: 'suppressed', reason: /^the sender could not be verified: DMARC fail/ },
    },
  }));

  // ---- Robots and ourselves ----
  add('from-no-reply', 'From a no-reply address: stored, never answered', (name) => ({
    raw: mail(name, [['From', `Shop <no-reply@${name}.example>`]], 'Your order shipped.\r\n'),
    expected: {
      outcome: 'stored',
      sender: `no-reply@${name}.example`,
      classification: 'ordinary',
      verdict: 'ordinary',
      automaticMail: { kind: 'suppressed', reason: /^the recipient is a no-reply address$/ },
    },
  }));
  add('from-mailer-daemon', 'From a bare MAILER-DAEMON (no domain), with no report: a bounce, never answered', (name) => ({
    raw: mail(name, [['From', 'MAILER-DAEMON']], 'Undeliverable.\r\n'),
    expected: {
      outcome: 'stored',
      sender: 'mailer-daemon@adversary.example', // the domain of its Message-ID
      classification: 'bounce',
      verdict: 'ordinary',
      automaticMail: { kind: 'none' },
    },
  }));
  add('from-the-channel-itself', 'From the channel address itself: stored, never answered (no loop with ourselves)', (name) => ({
    raw: mail(name, [['From', `Acme Support <${ADVERSARIAL_CHANNEL.emailAddress}>`]], 'Hello me.\r\n'),
    expected: {
      outcome: 'stored',
      sender: ADVERSARIAL_CHANNEL.emailAddress,
      classification: 'ordinary',
      verdict: 'ordinary',
      automaticMail: { kind: 'suppressed', reason: /^the recipient is the channel itself$/ },
    },
  }));
  return list;
}

/** The base64 of `count` zero bytes in lines of 76, written directly: base64Lines of 50 MB would take seconds. */
function base64Zeros(count: number): Buffer {
  const line = 76;
  const letters = Math.floor(count / 3) * 4; // every 3 zero bytes are "AAAA"
  const fullLines = Math.floor(letters / line);
  const tail = 'A'.repeat(letters - fullLines * line) + ['', 'AA==', 'AAA='][count % 3]!;
  const tailLines = [tail.slice(0, line), tail.slice(line)].filter(Boolean).map((text) => `${text}${CRLF}`);
  return Buffer.from(`${'A'.repeat(line)}${CRLF}`.repeat(fullLines) + tailLines.join(''), 'latin1');
}

/** Bytes 0x80–0xFF only: 8-bit text of no charset, which cannot be taken for the address syntax around it. */
function highBytes(garbage: Buffer): Buffer {
  return Buffer.from(garbage.map((byte) => byte | 0x80));
}

function withoutLineBreaksAndNul(garbage: Buffer): Buffer {
  return Buffer.from(garbage.map((byte) => (byte === 0x0a || byte === 0x0d || byte === 0 ? 0x80 : byte)));
}

/** The corpus, in a fixed order; built on first use (a fraction of a second; it holds ~75 MB, the 68 MB case among them). */
export function adversarialCorpus(): AdversarialCase[] {
  return (built ??= cases());
}
let built: AdversarialCase[] | undefined;

/** An ordinary mail from a person, as posted after each hostile one: it must be ingested and greeted. */
export function ordinaryMail(n: number, tag = 'probe'): { raw: Buffer; messageId: string; sender: string } {
  const sender = `person${n}@${tag}${n}.example`;
  const messageId = `<${tag}-${n}@customers.example>`;
  return {
    sender,
    messageId,
    raw: entity(
      [
        ['From', `Person ${n} <${sender}>`],
        ['To', ADVERSARIAL_CHANNEL.emailAddress],
        ['Subject', `An ordinary question ${n}`],
        ['Date', DATE],
        ['Message-ID', messageId],
        ['MIME-Version', '1.0'],
        ['Content-Type', 'text/plain; charset=utf-8'],
      ],
      `Hello, this is an ordinary question (${n}).\r\n`,
    ),
  };
}

/** A moderately large ordinary mail (250 KB: a text and a 180 KB attachment), as many arrive at once in a burst. */
export function largeOrdinaryMail(n: number, tag = 'burst'): { raw: Buffer; messageId: string; sender: string } {
  const sender = `person${n}@${tag}${n}.example`;
  const messageId = `<${tag}-${n}@customers.example>`;
  const body = multipart('mixed', `${tag}-${n}`, [
    entity([['Content-Type', 'text/plain; charset=utf-8']], `Please find the scan attached (${n}).\r\n`),
    entity(
      [
        ['Content-Type', 'application/pdf'],
        ['Content-Disposition', `attachment; filename="scan-${n}.pdf"`],
        ['Content-Transfer-Encoding', 'base64'],
      ],
      base64Lines(filler(180 * 1024, n + 1, '%PDF-1.7\n')),
    ),
  ]);
  return {
    sender,
    messageId,
    raw: entity(
      [
        ['From', `Person ${n} <${sender}>`],
        ['To', ADVERSARIAL_CHANNEL.emailAddress],
        ['Subject', `The scan you asked for (${n})`],
        ['Date', DATE],
        ['Message-ID', messageId],
        ['MIME-Version', '1.0'],
        ['Content-Type', body.contentType],
      ],
      body.body,
    ),
  };
}
