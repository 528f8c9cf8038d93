import { message, type CatalogLanguage } from './message-catalogs.js';

// The words of Mailroom's automatic mail in the conversation's language (src/domain/message-catalogs.ts).
// A channel's own texts (greeting, out of office) are used as the admin wrote them: the one for the
// conversation's language when given per language, else the one for every language, else ours.

/** The admin's text for `language`, else their one text, else null. */
function channelText(
  perLanguage: Readonly<Record<string, string>> | null | undefined,
  configured: string | null,
  language: CatalogLanguage,
): string | null {
  return perLanguage?.[language]?.trim() || configured?.trim() || null;
}

export interface ChannelTexts {
  text: string | null;
  texts?: Readonly<Record<string, string>> | null;
}

export function greetingText(configured: ChannelTexts, language: CatalogLanguage): string {
  return channelText(configured.texts, configured.text, language) ?? message(language, 'greeting.default');
}

/** The channel's out-of-office text (or ours), with when the team is back (already in the customer's words). */
export function outOfOfficeText(configured: ChannelTexts, language: CatalogLanguage, opensAtText: string): string {
  return [
    channelText(configured.texts, configured.text, language) ?? message(language, 'outOfOffice.default'),
    '',
    message(language, 'outOfOffice.back', { opensAt: opensAtText }),
  ].join('\n');
}

/** The AI agent's last words before a person takes over; the channel's signature follows. */
export function handoverText(language: CatalogLanguage): string {
  return message(language, 'handover.text');
}

export const RATINGS = [1, 2, 3, 4, 5] as const;

/** The survey mail: one link per rating (each opens the page with it chosen), how long they hold, and the unsubscribe. */
export function csatSurveyText(input: {
  language: CatalogLanguage;
  ratingUrl: (rating: number) => string;
  validUntilText: string;
  daysValid: number;
  unsubscribeUrl: string;
}): string {
  const { language } = input;
  return [
    message(language, 'survey.intro'),
    '',
    message(language, 'survey.choose'),
    ...RATINGS.map((rating) => `${message(language, 'survey.rating', { rating })}: ${input.ratingUrl(rating)}`),
    '',
    message(language, 'survey.validUntil', { validUntil: input.validUntilText, days: input.daysValid }),
    '',
    message(language, 'survey.unsubscribe', { url: input.unsubscribeUrl }),
  ].join('\n');
}
