// The words of Mailroom's automatic mail. Channels may override the greeting text.

export const DEFAULT_GREETING =
  'Thank you for contacting us. We have received your message and will get back to you as soon as possible.';

export function greetingText(configured: string | null): string {
  return configured?.trim() || DEFAULT_GREETING;
}

export const DEFAULT_OUT_OF_OFFICE =
  'Thank you for your message. Our team is out of the office right now; we will answer as soon as we are back.';

/** The channel's out-of-office text (or ours), with when the team is back. */
export function outOfOfficeText(configured: string | null, opensAtText: string): string {
  return [configured?.trim() || DEFAULT_OUT_OF_OFFICE, '', `We are back ${opensAtText}.`].join('\n');
}

/** The AI agent's last words before a person takes over. */
export function handoverText(channelName: string): string {
  return [
    'I am handing your request over to a colleague from our support team, who will get back to you personally.',
    '',
    `— ${channelName}`,
  ].join('\n');
}

export function csatSurveyText(input: { channelName: string; surveyUrl: string; validUntil: Date }): string {
  return [
    'Your request has been resolved. How satisfied are you with the help you received?',
    '',
    `Rate us here (it takes one click and an optional comment): ${input.surveyUrl}`,
    '',
    `The link is valid until ${input.validUntil.toUTCString()}.`,
    '',
    `— ${input.channelName}`,
  ].join('\n');
}
