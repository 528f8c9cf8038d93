import { describe, expect, it } from 'vitest';
import type { MailHeaders } from '../../src/domain/classification.js';
import { senderVerdict, type SenderTrust } from '../../src/domain/sender-verdict.js';
import { readHeaderSection } from '../../src/mail/header-section.js';

// Header sections as the servers write them (folded lines and all), read by the same reader ingest uses.
function headersOf(lines: readonly string[]): MailHeaders {
  const headers = readHeaderSection(Buffer.from(`${lines.join('\r\n')}\r\n\r\nHello\r\n`, 'latin1'));
  if (!headers) throw new Error('not a header section');
  return headers;
}

const MAIL = ['From: Ann <ann@example.com>', 'To: support@acme.example', 'Subject: Invoice 2291'];
const ACME: SenderTrust = { trustedAuthservIds: ['mail.acme.example'] };
const GMAIL: SenderTrust = { trustedAuthservIds: ['mx.google.com'] };
const M365: SenderTrust = { trustedAuthservIds: [], trustUnnamedAuthenticationResults: true };
const FASTMAIL: SenderTrust = { trustedAuthservIds: ['*.messagingengine.com'] };

const acme = (...values: string[]) => headersOf([...values.map((value) => `Authentication-Results: ${value}`), ...MAIL]);

describe('senderVerdict: DMARC as the receiving server found it', () => {
  it.each([
    {
      spec: 'Gmail quarantined a spoof of a reject domain whose SPF passed for the wrong domain',
      trust: GMAIL,
      lines: [
        'Authentication-Results: mx.google.com;',
        '       dkim=pass header.i=@attacker.example header.s=s1 header.b=abc;',
        '       spf=pass (google.com: domain of x@attacker.example designates 203.0.113.7 as permitted sender) smtp.mailfrom=x@attacker.example;',
        '       dmarc=fail (p=REJECT sp=REJECT dis=QUARANTINE) header.from=example.com',
      ],
      kind: 'spam',
      reasons: ['DMARC fail for example.com (header.from) according to mx.google.com'],
    },
    {
      spec: 'Gmail delivered a DMARC failure without enforcing it (dis=NONE, an ARC override): queued, never answered',
      trust: GMAIL,
      lines: [
        'Authentication-Results: mx.google.com;',
        '       dkim=pass header.i=@example.com header.s=s1 header.b=abc;',
        '       spf=pass (google.com: domain of x@example.com designates 1.2.3.4 as permitted sender) smtp.mailfrom=x@example.com;',
        '       dmarc=fail (p=REJECT sp=REJECT dis=NONE) header.from=example.com;',
        '       arc=pass (i=1 spf=pass spfdomain=example.com dkim=pass dkdomain=example.com dmarc=pass fromdomain=example.com)',
      ],
      kind: 'unverified',
      reasons: ['DMARC fail for example.com (header.from) according to mx.google.com, not enforced (dis=none)'],
    },
    {
      spec: 'Gmail quarantined a subdomain (sp=QUARANTINE) of a domain whose own policy is none',
      trust: GMAIL,
      lines: [
        'Authentication-Results: mx.google.com;',
        '       spf=pass (google.com: domain of x@attacker.example designates 203.0.113.7 as permitted sender) smtp.mailfrom=x@attacker.example;',
        '       dmarc=fail (p=NONE sp=QUARANTINE dis=QUARANTINE) header.from=billing.example.com',
      ],
      kind: 'spam',
      reasons: ['DMARC fail for billing.example.com (header.from) according to mx.google.com'],
    },
    {
      spec: 'Gmail found a pass',
      trust: GMAIL,
      lines: [
        'Authentication-Results: mx.google.com;',
        '       dkim=pass header.i=@example.com header.s=s1 header.b=abc;',
        '       spf=pass (google.com: domain of x@example.com designates 1.2.3.4 as permitted sender) smtp.mailfrom=x@example.com;',
        '       dmarc=pass (p=NONE sp=NONE dis=NONE) header.from=example.com',
      ],
      kind: 'ordinary',
      reasons: [],
    },
    {
      spec: 'Postfix with OpenDMARC (RejectFailures off) let a reject-policy failure through',
      trust: ACME,
      lines: [
        'Authentication-Results: mail.acme.example; dmarc=fail (p=reject dis=reject) header.from=example.com',
        'Authentication-Results: mail.acme.example;',
        '\tdkim=fail reason="signature verification failed" (2048-bit key; unprotected) header.d=example.com header.i=@example.com header.b="kKX0Yz/p"',
        'Authentication-Results: mail.acme.example; spf=pass smtp.mailfrom=attacker.example',
      ],
      kind: 'spam',
      reasons: ['DMARC fail for example.com (header.from) according to mail.acme.example'],
    },
    {
      spec: 'OpenDMARC writes its result below the other milters of the same server',
      trust: ACME,
      lines: [
        'Authentication-Results: mail.acme.example; spf=pass smtp.mailfrom=attacker.example',
        'Authentication-Results: mail.acme.example; dkim=none',
        'Authentication-Results: mail.acme.example; dmarc=fail (p=quarantine dis=quarantine) header.from=example.com',
      ],
      kind: 'spam',
      reasons: ['DMARC fail for example.com (header.from) according to mail.acme.example'],
    },
    {
      spec: 'OpenDMARC with AuthservIDWithJobID appends the job id to the authserv-id',
      trust: ACME,
      lines: ['Authentication-Results: mail.acme.example/4B7F21234; dmarc=fail (p=reject dis=reject) header.from=example.com'],
      kind: 'spam',
      reasons: ['DMARC fail for example.com (header.from) according to mail.acme.example'],
    },
    {
      spec: 'OpenDMARC found a failure under policy none',
      trust: ACME,
      lines: ['Authentication-Results: mail.acme.example; dmarc=fail (p=none dis=none) header.from=example.com'],
      kind: 'unverified',
      reasons: ['DMARC fail for example.com (header.from) according to mail.acme.example, not enforced (dis=none)'],
    },
    {
      spec: 'rspamd found a reject-policy failure',
      trust: ACME,
      lines: [
        'Authentication-Results: mail.acme.example;',
        '\tdkim=fail header.d=example.com;',
        '\tdmarc=fail reason="No valid SPF, DKIM not aligned (relaxed)" header.from=example.com (policy=reject);',
        '\tspf=fail (mail.acme.example: domain of x@example.com does not designate 203.0.113.7 as permitted sender) smtp.mailfrom=x@example.com',
      ],
      kind: 'spam',
      reasons: ['DMARC fail for example.com (header.from) according to mail.acme.example'],
    },
    {
      spec: 'rspamd found a failure under policy none (its DMARC_POLICY_SOFTFAIL)',
      trust: ACME,
      lines: [
        'Authentication-Results: mail.acme.example;',
        '\tdmarc=fail reason="No valid SPF, No valid DKIM" header.from=example.com (policy=none);',
        '\tspf=softfail smtp.mailfrom=x@example.com',
      ],
      kind: 'unverified',
      reasons: ['DMARC fail for example.com (header.from) according to mail.acme.example, not enforced (policy=none)'],
    },
    {
      spec: 'Fastmail (Authentication-Milter) applied the reject disposition, under a wildcard authserv-id',
      trust: FASTMAIL,
      lines: [
        'Authentication-Results: mx6.messagingengine.com;',
        '    dkim=none (no signatures found);',
        '    dmarc=fail policy.published-domain-policy=reject',
        '      policy.applied-disposition=reject policy.evaluated-disposition=reject',
        '      (p=reject,d=reject,d.eval=reject) policy.policy-from=p',
        '      header.from=example.com;',
        '    spf=fail smtp.mailfrom=example.com smtp.helo=mail.attacker.example',
      ],
      kind: 'spam',
      reasons: ['DMARC fail for example.com (header.from) according to mx6.messagingengine.com'],
    },
    {
      spec: 'Fastmail let a failure under policy none through',
      trust: FASTMAIL,
      lines: [
        'Authentication-Results: mx6.messagingengine.com;',
        '    dmarc=fail policy.published-domain-policy=none policy.applied-disposition=none',
        '      policy.evaluated-disposition=none (p=none,d=none,d.eval=none) header.from=example.com',
      ],
      kind: 'unverified',
      reasons: [
        'DMARC fail for example.com (header.from) according to mx6.messagingengine.com, not enforced (policy.applied-disposition=none)',
      ],
    },
    {
      spec: 'a server that only says the action taken was none',
      trust: ACME,
      lines: ['Authentication-Results: mail.acme.example; dmarc=fail action=none header.from=example.com'],
      kind: 'unverified',
      reasons: ['DMARC fail for example.com (header.from) according to mail.acme.example, not enforced (action=none)'],
    },
    {
      spec: 'a failure that the sampling of pct= spared is still a failure',
      trust: ACME,
      lines: ['Authentication-Results: mail.acme.example; dmarc=fail action=pct.quarantine header.from=example.com'],
      kind: 'spam',
      reasons: ['DMARC fail for example.com (header.from) according to mail.acme.example'],
    },
    {
      spec: 'a failure nobody said anything more about',
      trust: ACME,
      lines: ['Authentication-Results: mail.acme.example 1; dmarc=fail header.from=example.com'],
      kind: 'spam',
      reasons: ['DMARC fail for example.com (header.from) according to mail.acme.example'],
    },
    {
      spec: 'a failure without a readable header.from',
      trust: ACME,
      lines: ['Authentication-Results: mail.acme.example; dmarc=fail header.from="<script>"'],
      kind: 'spam',
      reasons: ['DMARC fail according to mail.acme.example'],
    },
  ])('$spec: $kind', ({ trust, lines, kind, reasons }) => {
    expect(senderVerdict(headersOf([...lines, ...MAIL]), trust)).toEqual({ kind, reasons });
  });

  it.each([
    ['spf=fail smtp.mailfrom=example.com; dkim=fail header.d=example.com; dmarc=pass header.from=example.com'],
    ['spf=fail smtp.mailfrom=example.com; dkim=fail (body hash did not verify) header.d=example.com'],
    ['dmarc=none header.from=example.com'],
    ['dmarc=bestguesspass action=none header.from=example.com'],
    ['dmarc=temperror header.from=example.com'],
    ['dmarc=permerror header.from=example.com'],
    ['none'],
  ])('finds nothing against the sender in "mail.acme.example; %s" (SPF and DKIM break on forwarding)', (results) => {
    expect(senderVerdict(acme(`mail.acme.example; ${results}`), ACME)).toEqual({ kind: 'ordinary', reasons: [] });
  });
});

describe('senderVerdict: Microsoft 365 composite authentication', () => {
  const exchange = (authenticationResults: string[]) => headersOf([...authenticationResults, ...MAIL]);

  it.each([
    {
      spec: 'an explicit failure (reason 000) is spam',
      lines: [
        'Authentication-Results: spf=pass (sender IP is 203.0.113.7)',
        ' smtp.mailfrom=attacker.example; dkim=none (message not signed)',
        ' header.d=none;dmarc=fail action=oreject header.from=example.com;compauth=fail',
        ' reason=000',
      ],
      kind: 'spam',
      reasons: [
        'composite authentication fail, reason 000 (explicit: DMARC fail under a quarantine or reject policy), for example.com (header.from) according to Microsoft 365',
      ],
    },
    {
      spec: 'a spoof of the organization itself (reason 010) is spam',
      lines: [
        'Authentication-Results: spf=fail (sender IP is 203.0.113.7) smtp.mailfrom=acme.example; dkim=none (message not signed) header.d=none;dmarc=fail action=quarantine header.from=acme.example;compauth=fail reason=010',
      ],
      kind: 'spam',
      reasons: [
        "composite authentication fail, reason 010 (DMARC fail for one of the organization's own domains), for acme.example (header.from) according to Microsoft 365",
      ],
    },
    {
      spec: 'an implicit failure (reason 001, weak records) is unverified, as Outlook.com writes it',
      lines: [
        'Authentication-Results: spf=none (sender IP is 203.0.113.7) smtp.mailfrom=example.net; hotmail.com; dkim=none header.d=example.net;hotmail.com; dmarc=none action=none header.from=example.net;compauth=fail reason=001',
      ],
      kind: 'unverified',
      reasons: [
        'composite authentication fail, reason 001 (implicit: weak or missing authentication records), for example.net (header.from) according to Microsoft 365',
      ],
    },
    {
      spec: 'an implicit failure for its own domain (6xx) is unverified',
      lines: [
        'Authentication-Results: spf=softfail smtp.mailfrom=acme.example; dmarc=none action=none header.from=acme.example;compauth=fail reason=601',
      ],
      kind: 'unverified',
      reasons: [
        "composite authentication fail, reason 601 (implicit, for one of the organization's own domains), for acme.example (header.from) according to Microsoft 365",
      ],
    },
    {
      spec: 'a DMARC failure that ARC overrode (compauth=pass reason=130) is ordinary',
      lines: [
        'Authentication-Results: spf=softfail (sender IP is 198.51.100.4)',
        ' smtp.mailfrom=gmail.com; dkim=fail (signature did not verify)',
        ' header.d=gmail.com;dmarc=fail action=none header.from=gmail.com;compauth=pass',
        ' reason=130',
      ],
      kind: 'ordinary',
      reasons: [],
    },
    {
      spec: 'a DMARC failure a trusted ARC sealer bypassed (compauth=none reason=452) is ordinary',
      lines: [
        'Authentication-Results: spf=softfail (sender IP is 198.51.100.4) smtp.mailfrom=example.com; dkim=pass (signature was verified) header.d=example.com;dmarc=fail action=quarantine header.from=example.com;compauth=none reason=452',
      ],
      kind: 'ordinary',
      reasons: [],
    },
  ])('$spec', ({ lines, kind, reasons }) => {
    expect(senderVerdict(exchange(lines), M365)).toEqual({ kind, reasons });
  });

  const explicitFailure =
    'Authentication-Results: spf=pass (sender IP is 203.0.113.7) smtp.mailfrom=attacker.example; dmarc=fail action=oreject header.from=example.com;compauth=fail reason=000';
  const pass =
    'Authentication-Results: spf=pass (sender IP is 198.51.100.4) smtp.mailfrom=example.com; dkim=pass (signature was verified) header.d=example.com;dmarc=pass action=none header.from=example.com;compauth=pass reason=100';

  it('believes an unnamed header only for channels whose mailbox is in Microsoft 365', () => {
    expect(senderVerdict(exchange([explicitFailure]), M365).kind).toBe('spam');
    expect(senderVerdict(exchange([explicitFailure]), ACME).kind).toBe('ordinary');
  });

  it('believes only the topmost unnamed header: every tenant on the way writes one', () => {
    expect(senderVerdict(exchange([pass, explicitFailure]), M365).kind).toBe('ordinary');
    expect(
      senderVerdict(
        exchange(['Authentication-Results: mail.acme.example; dmarc=pass header.from=example.com', explicitFailure]),
        M365,
      ).kind,
    ).toBe('ordinary');
  });

  it('ignores ARC-Authentication-Results, which a sealer writes for the next hop without its final verdict', () => {
    const arc = [
      'ARC-Authentication-Results: i=1; mx.microsoft.com 1; spf=softfail (sender ip',
      ' is 198.51.100.4) smtp.rcpttodomain=acme.example smtp.mailfrom=example.com;',
      ' dmarc=fail (p=quarantine sp=quarantine pct=100) action=quarantine',
      ' header.from=example.com; dkim=fail (signature did not verify) header.d=example.com; arc=pass',
    ];
    expect(senderVerdict(exchange(arc), { trustedAuthservIds: ['mx.microsoft.com'] }).kind).toBe('ordinary');
  });
});

describe('senderVerdict: whose Authentication-Results count', () => {
  const fail = 'mail.acme.example; dmarc=fail (p=reject dis=reject) header.from=example.com';
  const failure = 'DMARC fail for example.com (header.from) according to mail.acme.example';

  it.each([
    ['mail.acme.example', true],
    ['MAIL.Acme.Example', true],
    ['mail.acme.example.attacker.example', false],
    ['evilmail.acme.example', false],
    ['acme.example', false],
  ])('with the trusted id mail.acme.example, believes %s: %s', (id, believed) => {
    const verdict = senderVerdict(acme(`${id}; dmarc=fail header.from=example.com`), ACME);
    expect(verdict.kind).toBe(believed ? 'spam' : 'ordinary');
  });

  it.each([
    ['mx6.messagingengine.com', true],
    ['MX1.MessagingEngine.COM', true],
    ['a.b.messagingengine.com', true],
    ['messagingengine.com', false],
    ['evilmessagingengine.com', false],
    ['mx6.messagingengine.com.attacker.example', false],
  ])('with the trusted id *.messagingengine.com, believes %s: %s', (id, believed) => {
    const verdict = senderVerdict(acme(`${id}; dmarc=fail header.from=example.com`), FASTMAIL);
    expect(verdict.kind).toBe(believed ? 'spam' : 'ordinary');
  });

  it.each([[['']], [['*']], [['*.']], [[' *. ']]])('trusts nobody with the patterns %j', (patterns) => {
    expect(senderVerdict(acme(fail), { trustedAuthservIds: patterns }).kind).toBe('ordinary');
  });

  it('ignores a forged failure from an authserv-id the channel does not trust', () => {
    expect(senderVerdict(acme('attacker.example; dmarc=fail (p=reject dis=reject) header.from=example.com'), ACME)).toEqual({
      kind: 'ordinary',
      reasons: [],
    });
  });

  it('keeps a forged pass below the real failure from hiding it', () => {
    expect(senderVerdict(acme(fail, 'mail.acme.example; dmarc=pass header.from=example.com'), ACME)).toEqual({
      kind: 'spam',
      reasons: [failure],
    });
  });

  it('lets no lower header of the same id speak for this hop once a higher one reported the method', () => {
    expect(senderVerdict(acme('mail.acme.example; dmarc=pass header.from=example.com', fail), ACME).kind).toBe('ordinary');
  });

  it('reads the trusted header below an untrusted one added later (an IMAP provider of its own)', () => {
    expect(senderVerdict(acme('imap.provider.example; dmarc=pass header.from=example.com', fail), ACME).kind).toBe('spam');
  });

  it('reads only the topmost run: a trusted id below another server is an earlier hop (a mailing list)', () => {
    const both: SenderTrust = { trustedAuthservIds: ['mail.acme.example', 'mx.google.com'] };
    const listHop = 'mx.google.com; dmarc=fail (p=REJECT sp=REJECT dis=QUARANTINE) header.from=example.com';
    expect(senderVerdict(acme('mail.acme.example; dmarc=pass header.from=lists.example', listHop), both).kind).toBe('ordinary');
    expect(
      senderVerdict(acme('mail.acme.example; spf=pass smtp.mailfrom=lists.example', 'x.example; none', fail), both).kind,
    ).toBe('ordinary');
  });

  it('reads no more than the first 20 Authentication-Results headers', () => {
    const forged = Array.from({ length: 20 }, () => 'attacker.example; dmarc=pass header.from=example.com');
    expect(senderVerdict({ 'authentication-results': [...forged.slice(1), fail] }, ACME).kind).toBe('spam');
    expect(senderVerdict({ 'authentication-results': [...forged, fail] }, ACME).kind).toBe('ordinary');
  });
});

describe('senderVerdict: the RFC 8601 grammar, and garbage', () => {
  const failure = 'DMARC fail for example.com (header.from) according to mail.acme.example';

  it.each([
    ['a comment before the authserv-id', '(from the edge) mail.acme.example; dmarc=fail header.from=example.com'],
    ['a quoted authserv-id', '"mail.acme.example"; dmarc=fail header.from=example.com'],
    ['a version after the authserv-id', 'mail.acme.example 1; dmarc=fail header.from=example.com'],
    ['upper case everywhere', 'MAIL.ACME.EXAMPLE; DMARC=FAIL (P=REJECT DIS=REJECT) HEADER.FROM=EXAMPLE.COM'],
    ['white space around =', 'mail.acme.example; dmarc = fail header.from = example.com'],
    ['a method version', 'mail.acme.example; dmarc/1=fail header.from=example.com'],
    ['header.from as an address', 'mail.acme.example; dmarc=fail header.from=ann@example.com'],
    [
      'nested comments holding ; and =',
      'mail.acme.example; spf=softfail (a (nested; dmarc=pass) comment) smtp.mailfrom=x@example.com; dmarc=fail (p=reject (see; there)) header.from=example.com',
    ],
    [
      'an escaped parenthesis in a comment',
      'mail.acme.example; spf=pass (a \\) b; dmarc=pass) smtp.mailfrom=x@example.com; dmarc=fail header.from=example.com',
    ],
    [
      'a quoted reason holding ; and (',
      'mail.acme.example; dkim=fail reason="bad; (dmarc=pass" header.d=example.com; dmarc=fail header.from=example.com',
    ],
    ['no space after ;', 'mail.acme.example;dkim=none header.d=none;dmarc=fail header.from=example.com;spf=none'],
  ])('reads %s', (_spec, value) => {
    expect(senderVerdict(acme(value), ACME)).toEqual({ kind: 'spam', reasons: [failure] });
  });

  it.each([
    [
      'a failure inside a comment',
      'mail.acme.example; spf=pass (dmarc=fail header.from=example.com) smtp.mailfrom=x@example.com',
    ],
    [
      'a failure inside a nested comment',
      'mail.acme.example; spf=pass (a (b; dmarc=fail) c; dmarc=fail) smtp.mailfrom=x@example.com',
    ],
    [
      'a failure inside a quoted string',
      'mail.acme.example; dkim=pass reason="ok; dmarc=fail header.from=example.com" header.d=example.com',
    ],
    [
      'a failure after an escaped ) in a comment',
      'mail.acme.example; spf=pass (a \\) b; dmarc=fail header.from=example.com) smtp.mailfrom=x@example.com',
    ],
    [
      'a failure after an escaped " in a quoted string',
      'mail.acme.example; dkim=pass reason="a \\" b; dmarc=fail header.from=example.com" header.d=example.com',
    ],
    ['a failure after an unclosed comment', 'mail.acme.example; spf=pass (oops; dmarc=fail header.from=example.com'],
    ['a failure after an unclosed quote', 'mail.acme.example; dkim=pass reason="oops; dmarc=fail header.from=example.com'],
    ['a failure as a property', 'mail.acme.example; spf=pass dmarc=fail header.from=example.com'],
    ['no results', 'mail.acme.example; none'],
    ['an empty value', ''],
    ['only separators', ';;;=;=='],
    ['a missing result', 'mail.acme.example; dmarc= ; dmarc'],
    ['a missing method', 'mail.acme.example; =fail header.from=example.com'],
    ['control characters', 'mail.acme.example\u0000; dmarc\u0001=fail\uffff'],
    ['a stray closing parenthesis', ')))) mail.acme.example'],
  ])('finds nothing in %s', (_spec, value) => {
    expect(senderVerdict({ 'authentication-results': [value] }, ACME)).toEqual({ kind: 'ordinary', reasons: [] });
  });

  it('finds nothing in entries that are not lists of strings', () => {
    const garbage = { 'authentication-results': 'mail.acme.example; dmarc=fail', 'x-spam-flag': [42, null, { yes: true }] };
    expect(senderVerdict(garbage as unknown as MailHeaders, ACME)).toEqual({ kind: 'ordinary', reasons: [] });
  });
});

describe('senderVerdict: spam verdicts of the receiving server', () => {
  it.each([
    ['x-spam-flag', 'YES', 'spam verdict X-Spam-Flag: YES'],
    ['x-spam-flag', 'yes', 'spam verdict X-Spam-Flag: YES'],
    [
      'x-spam-status',
      'Yes, score=7.9 required=5.0 tests=EMPTY_MESSAGE,MISSING_DATE, MISSING_FROM,NO_RELAYS autolearn=no autolearn_force=no version=3.4.6',
      'spam verdict X-Spam-Status: Yes, score=7.9 required=5.0',
    ],
    ['x-spam-status', 'Yes, score=12.50', 'spam verdict X-Spam-Status: Yes, score=12.50'],
    ['x-spam-status', 'Yes, score=<b>bold</b>', 'spam verdict X-Spam-Status: Yes'],
    ['x-spam', 'Yes', 'spam verdict X-Spam: Yes'],
    [
      'x-spamd-result',
      'default: True [16.20 / 15.00]; BAYES_SPAM(5.10)[99.99%]; R_SPF_FAIL(1.00)[-all]; DMARC_POLICY_REJECT(2.00)[example.com : No valid SPF, DKIM not aligned (relaxed),reject]',
      'rspamd verdict reject (X-Spamd-Result: default: True)',
    ],
    ['x-rspamd-action', 'add header', 'rspamd action "add header" (X-Rspamd-Action)'],
    ['x-rspamd-action', 'rewrite subject', 'rspamd action "rewrite subject" (X-Rspamd-Action)'],
    ['x-rspamd-action', 'reject', 'rspamd action "reject" (X-Rspamd-Action)'],
    ['x-ms-exchange-organization-scl', '5', 'Microsoft 365 spam confidence level 5 (X-MS-Exchange-Organization-SCL)'],
    ['x-ms-exchange-organization-scl', '9', 'Microsoft 365 spam confidence level 9 (X-MS-Exchange-Organization-SCL)'],
    [
      'x-forefront-antispam-report',
      'CIP:203.0.113.7;CTRY:NL;LANG:en;SCL:5;SRV:;IPV:NLI;SFV:SPM;H:mail.attacker.example;PTR:mail.attacker.example;CAT:SPM;SFS:(13230040)(4636009)(376014)(82310400026);DIR:INB;',
      'Microsoft 365: spam confidence level 5, marked as spam by the spam filter (SFV:SPM), category spam (CAT:SPM) (X-Forefront-Antispam-Report)',
    ],
    [
      'x-forefront-antispam-report',
      'CIP:203.0.113.7;CTRY:;LANG:en;SCL:1;SRV:;IPV:NLI;SFV:NSPM;H:mail.attacker.example;PTR:;CAT:SPOOF;SFS:(13230040);DIR:INB;',
      'Microsoft 365: category spoofing (CAT:SPOOF) (X-Forefront-Antispam-Report)',
    ],
    [
      'x-forefront-antispam-report',
      'CIP:203.0.113.7;CTRY:;LANG:en;SCL:6;SRV:;IPV:NLI;SFV:SKS;H:mail.attacker.example;PTR:;CAT:NONE;DIR:INB;',
      'Microsoft 365: spam confidence level 6, marked as spam by a mail flow rule (SFV:SKS) (X-Forefront-Antispam-Report)',
    ],
  ])('counts %s: %s', (name, value, reason) => {
    expect(senderVerdict(headersOf([`${name}: ${value}`, ...MAIL]), GMAIL)).toEqual({ kind: 'spam', reasons: [reason] });
  });

  it.each([
    ['x-spam-flag', 'NO'],
    ['x-spam-flag', 'YESTERDAY'],
    ['x-spam-status', 'No, score=-0.1 required=5.0 tests=DKIM_SIGNED,DKIM_VALID autolearn=ham version=3.4.6'],
    ['x-spam-status', 'Yesno, score=9.0'],
    ['x-spam', 'No'],
    ['x-spamd-result', 'default: False [3.40 / 15.00]; BAYES_HAM(-3.00)[99.99%]; MIME_GOOD(-0.10)[text/plain]'],
    ['x-rspamd-action', 'no action'],
    ['x-rspamd-action', 'greylist'],
    ['x-rspamd-action', 'soft reject'],
    ['x-ms-exchange-organization-scl', '-1'],
    ['x-ms-exchange-organization-scl', '1'],
    ['x-ms-exchange-organization-scl', '55'],
    [
      'x-forefront-antispam-report',
      'CIP:198.51.100.4;CTRY:US;LANG:en;SCL:1;SRV:;IPV:NLI;SFV:NSPM;H:mail.example.com;PTR:mail.example.com;CAT:NONE;DIR:INB;',
    ],
    ['x-forefront-antispam-report', 'CIP:198.51.100.4;SCL:-1;SFV:SKN;CAT:NONE;'],
  ])('finds nothing in %s: %s', (name, value) => {
    expect(senderVerdict(headersOf([`${name}: ${value}`, ...MAIL]), GMAIL)).toEqual({ kind: 'ordinary', reasons: [] });
  });

  it('never lets a "no" clear a "yes", whichever comes first', () => {
    const yes = { kind: 'spam', reasons: ['spam verdict X-Spam-Flag: YES'] };
    expect(senderVerdict({ 'x-spam-flag': ['NO', 'YES'] }, GMAIL)).toEqual(yes);
    expect(senderVerdict({ 'x-spam-flag': ['YES', 'NO'] }, GMAIL)).toEqual(yes);
    expect(
      senderVerdict({ 'x-spam-flag': ['YES'], 'x-ms-exchange-organization-scl': ['-1'], 'x-spam-status': ['No'] }, GMAIL),
    ).toEqual(yes);
  });

  it('ignores spam verdicts when the channel says its receiving server adds none', () => {
    const headers = { 'x-spam-flag': ['YES'], 'x-ms-exchange-organization-scl': ['9'] };
    expect(senderVerdict(headers, { ...GMAIL, trustSpamHeaders: false })).toEqual({ kind: 'ordinary', reasons: [] });
    expect(senderVerdict(headers, GMAIL).kind).toBe('spam');
  });

  it('gives every finding, spam first deciding the kind', () => {
    const headers = acme('mail.acme.example; dmarc=fail (p=none dis=none) header.from=example.com');
    expect(senderVerdict({ ...headers, 'x-spam-flag': ['YES', 'YES'] }, ACME)).toEqual({
      kind: 'spam',
      reasons: [
        'DMARC fail for example.com (header.from) according to mail.acme.example, not enforced (dis=none)',
        'spam verdict X-Spam-Flag: YES',
      ],
    });
  });
});

// Sizes a super-linear scan would choke on; nothing here asserts on time, the unit timeout is the bound.
describe('senderVerdict: pathological input returns', () => {
  const MiB = 1024 * 1024;
  const fail = 'mail.acme.example; dmarc=fail header.from=example.com';

  it.each([
    ['100 KiB of ( after a failure', `${fail} ${'('.repeat(100 * 1024)}`, 'spam'],
    ['100 KiB of ( before everything', `${'('.repeat(100 * 1024)}${fail}`, 'ordinary'],
    ['100 KiB of nested (a(b)) after a failure', `${fail} ${'(a'.repeat(50 * 1024)}${')b'.repeat(50 * 1024)}`, 'spam'],
    ['10,000 ; after a failure', `${fail}${';'.repeat(10_000)}`, 'spam'],
    ['10,000 ; before the failure, beyond what is read', `mail.acme.example${';'.repeat(10_000)} dmarc=fail`, 'ordinary'],
    ['10,000 = after a failure', `${fail}; ${'a='.repeat(10_000)}`, 'spam'],
    ['1 MiB of one word after a failure', `${fail}; ${'x'.repeat(MiB)}`, 'spam'],
    ['1 MiB of an unclosed quoted string', `${fail}; dkim=pass reason="${'\\"'.repeat(MiB / 2)}`, 'spam'],
    ['1 MiB of backslashes in a comment', `${fail} (${'\\'.repeat(MiB)}`, 'spam'],
    ['1 MiB of white space', `${' '.repeat(MiB)}${fail}`, 'ordinary'],
  ])('%s', (_spec, value, kind) => {
    expect(senderVerdict({ 'authentication-results': [value] }, ACME).kind).toBe(kind);
  });

  it('reads a 1 MiB spam status', () => {
    expect(senderVerdict({ 'x-spam-status': [`Yes, score=${'9'.repeat(MiB)}`] }, GMAIL)).toEqual({
      kind: 'spam',
      reasons: ['spam verdict X-Spam-Status: Yes'],
    });
    expect(senderVerdict({ 'x-spam-status': [`${' '.repeat(MiB)}Yes`] }, GMAIL).kind).toBe('ordinary');
  });

  it('reads 10,000 fields of an antispam report only as far as its first 8 KiB', () => {
    const report = (fields: string) => ({ 'x-forefront-antispam-report': [fields] });
    expect(senderVerdict(report(`SCL:9;${';'.repeat(10_000)}`), GMAIL).kind).toBe('spam');
    expect(senderVerdict(report(`${';'.repeat(10_000)}SCL:9`), GMAIL).kind).toBe('ordinary');
    expect(senderVerdict(report(`${'SFV:'.repeat(MiB / 4)}`), GMAIL).kind).toBe('ordinary');
  });

  it('reads 10,000 headers only as far as the first 20', () => {
    const many = Array.from({ length: 10_000 }, () => 'YES');
    expect(
      senderVerdict({ 'x-spam-flag': many, 'authentication-results': Array.from({ length: 10_000 }, () => fail) }, ACME),
    ).toEqual({
      kind: 'spam',
      reasons: ['DMARC fail for example.com (header.from) according to mail.acme.example', 'spam verdict X-Spam-Flag: YES'],
    });
  });

  it.each(['x-spam-flag', 'x-spam', 'x-spamd-result', 'x-rspamd-action', 'x-ms-exchange-organization-scl'])(
    'reads a 1 MiB %s without finding anything in it',
    (name) => {
      expect(senderVerdict({ [name]: [`${' \t'.repeat(MiB / 2)}x`, `${'_ '.repeat(MiB / 2)}`] }, GMAIL).kind).toBe('ordinary');
    },
  );
});
