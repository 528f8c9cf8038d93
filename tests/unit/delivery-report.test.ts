import { describe, expect, it } from 'vitest';
import { readDeliveryReport } from '../../src/mail/delivery-report.js';

const part = (contentType: string, lines: string[]) => ({ contentType, content: Buffer.from(lines.join('\r\n')) });
const perMessage = ['Reporting-MTA: dns; mx.example.net', 'Arrival-Date: Mon, 1 Jun 2026 10:00:00 +0000', ''];

describe('readDeliveryReport', () => {
  it.each<[string, Array<ReturnType<typeof part>>, ReturnType<typeof readDeliveryReport>]>([
    [
      'a failed recipient with the server’s diagnostic, folded over two lines',
      [
        part('message/delivery-status', [
          ...perMessage,
          'Final-Recipient: rfc822; ann@example.com',
          'Action: failed',
          'Status: 5.1.1',
          'Diagnostic-Code: smtp; 550 5.1.1 <ann@example.com>:',
          '\tRecipient address rejected: User unknown',
        ]),
      ],
      { failed: true, reason: 'ann@example.com: 550 5.1.1 <ann@example.com>: Recipient address rejected: User unknown' },
    ],
    [
      'a failure without a diagnostic: its status',
      [
        part('message/delivery-status', [
          ...perMessage,
          'Final-Recipient: rfc822;bob@example.com',
          'Action: failed',
          'Status: 5.2.2',
        ]),
      ],
      { failed: true, reason: 'bob@example.com: status 5.2.2' },
    ],
    [
      'a delay is no bounce',
      [
        part('message/delivery-status', [
          ...perMessage,
          'Final-Recipient: rfc822; ann@example.com',
          'Action: delayed',
          'Status: 4.4.1',
          'Will-Retry-Until: Tue, 2 Jun 2026 10:00:00 +0000',
        ]),
      ],
      { failed: false, reason: null },
    ],
    [
      'the failed one among several recipients',
      [
        part('message/global-delivery-status', [
          ...perMessage,
          'Final-Recipient: rfc822; ok@example.com',
          'Action: delivered',
          'Status: 2.0.0',
          '',
          'Final-Recipient: rfc822; gone@example.com',
          'Action: Failed',
          'Status: 5.1.1',
        ]),
      ],
      { failed: true, reason: 'gone@example.com: status 5.1.1' },
    ],
    [
      'no Action, a permanent status',
      [part('message/delivery-status', [...perMessage, 'Status: 5.0.0'])],
      { failed: true, reason: 'status 5.0.0' },
    ],
    ['no report part (qmail)', [part('text/plain', ['Hi. This is the qmail-send program.'])], undefined],
  ])('%s', (_name, parts, expected) => {
    expect(readDeliveryReport(parts)).toEqual(expected);
  });

  // mailparser reads a message/delivery-status part as text: it follows the report's human part.
  const asText = (...lines: string[]) => ['Your message could not be delivered.', '', ...perMessage, ...lines].join('\n');

  it.each<[string, string, ReturnType<typeof readDeliveryReport>]>([
    [
      'a failure in the text',
      asText(
        'Final-Recipient: rfc822; ann@example.com',
        'Action: failed',
        'Status: 5.1.1',
        'Diagnostic-Code: smtp; 550 5.1.1 no such user',
      ),
      { failed: true, reason: 'ann@example.com: 550 5.1.1 no such user' },
    ],
    [
      'a delay in the text',
      asText('Final-Recipient: rfc822; ann@example.com', 'Action: delayed', 'Status: 4.4.1'),
      { failed: false, reason: null },
    ],
    ['prose without an Action (qmail)', 'Sorry, I could not deliver your message.\nStatus: 5 things went wrong', undefined],
  ])('%s', (_name, text, expected) => {
    expect(readDeliveryReport([], text)).toEqual(expected);
  });

  it('keeps the reason on one bounded line', () => {
    const report = readDeliveryReport([
      part('message/delivery-status', [...perMessage, 'Action: failed', `Diagnostic-Code: smtp; 550 \u0007${'y'.repeat(2000)}`]),
    ]);
    expect(report?.failed).toBe(true);
    expect(report?.reason).not.toMatch(/\p{Cc}/u);
    expect(report!.reason!.length).toBeLessThanOrEqual(500);
  });
});
