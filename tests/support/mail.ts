/** A plain-text customer mail as a forwarder posts it; every header but the Message-ID has a default. */
export function customerMail(input: {
  messageId: string;
  from?: string;
  to?: string;
  subject?: string;
  text?: string;
  /** Also set as References: the reply to one message. */
  inReplyTo?: string;
  /** Header lines on top, as a receiving server adds them (Authentication-Results, X-Spam-Flag). */
  headers?: string[];
}): string {
  return [
    ...(input.headers ?? []),
    `From: ${input.from ?? '"Ann Example" <ann@example.com>'}`,
    `To: ${input.to ?? 'support@acme.example'}`,
    `Subject: ${input.subject ?? 'A question'}`,
    `Message-ID: <${input.messageId}>`,
    ...(input.inReplyTo ? [`In-Reply-To: ${input.inReplyTo}`, `References: ${input.inReplyTo}`] : []),
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    '',
    input.text ?? 'Hello, I have a question.',
    '',
  ].join('\r\n');
}
