// The words of Mailroom's automatic mail. Channels may override the greeting text.

export const DEFAULT_GREETING =
  'Thank you for contacting us. We have received your message and will get back to you as soon as possible.';

export function greetingText(configured: string | null): string {
  return configured?.trim() || DEFAULT_GREETING;
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
