import { IntlMessageFormat } from 'intl-messageformat';
import { DateTime } from 'luxon';

// The words of Mailroom's automatic mail and the rating page, per language (ICU MessageFormat: plural rules
// and selects in the catalog, not in code). Admin-written texts never pass through here: they stay as written.

export const CATALOG_LANGUAGES = ['en', 'de'] as const;
export type CatalogLanguage = (typeof CATALOG_LANGUAGES)[number];

const en = {
  'greeting.default': 'Thank you for contacting us. We have received your message and will get back to you as soon as possible.',
  'outOfOffice.default':
    'Thank you for your message. Our team is out of the office right now; we will answer as soon as we are back.',
  'outOfOffice.back': 'We are back {opensAt}.',
  'handover.text': 'I am handing your request over to a colleague from our support team, who will get back to you personally.',
  'survey.subject': 'How did we do? {subject}',
  'survey.intro': 'Your request has been resolved. How satisfied are you with the help you received?',
  'survey.choose': 'Choose a rating (one click; you can add a comment on the page):',
  'survey.rating': '{rating, plural, one {# star} other {# stars}}',
  'survey.validUntil':
    'The links are valid until {validUntil} ({days, plural, =0 {less than a day} one {# day} other {# days}} from now).',
  'survey.unsubscribe': 'No more surveys from us: {url}',
  'page.title': 'How satisfied are you with our help?',
  'page.scale': '1 = not at all, 5 = very satisfied',
  'page.comment': 'Anything you would like to tell us? (optional)',
  'page.submit': 'Send rating',
  'page.thanks': 'Thank you!',
  'page.recorded': 'Your rating of {rating}/5 has been recorded. You can change it with the same link until it expires.',
  'page.retry.title': 'Please try again',
  'page.retry.text': 'We could not record your rating just now. Please try again in a minute.',
  'unsubscribe.title': 'Unsubscribed',
  'unsubscribe.done': 'You will receive no more satisfaction surveys from us.',
  'unsubscribe.confirm': 'Stop receiving satisfaction surveys from us?',
  'unsubscribe.button': 'Unsubscribe',
} as const;

export type MessageKey = keyof typeof en;

const de: Record<MessageKey, string> = {
  'greeting.default': 'Vielen Dank für Ihre Nachricht. Wir haben sie erhalten und melden uns so schnell wie möglich bei Ihnen.',
  'outOfOffice.default':
    'Vielen Dank für Ihre Nachricht. Unser Team ist gerade nicht im Büro; wir antworten, sobald wir zurück sind.',
  'outOfOffice.back': 'Wir sind ab {opensAt} wieder für Sie da.',
  'handover.text':
    'Ich übergebe Ihr Anliegen an eine Kollegin oder einen Kollegen aus unserem Support-Team, die sich persönlich bei Ihnen melden.',
  'survey.subject': 'Wie zufrieden waren Sie? {subject}',
  'survey.intro': 'Ihr Anliegen wurde gelöst. Wie zufrieden sind Sie mit unserer Hilfe?',
  'survey.choose': 'Wählen Sie eine Bewertung (ein Klick; auf der Seite können Sie einen Kommentar ergänzen):',
  'survey.rating': '{rating, plural, one {# Stern} other {# Sterne}}',
  'survey.validUntil':
    'Die Links sind gültig bis {validUntil} ({days, plural, =0 {weniger als ein Tag} one {noch # Tag} other {noch # Tage}}).',
  'survey.unsubscribe': 'Keine Umfragen mehr von uns: {url}',
  'page.title': 'Wie zufrieden sind Sie mit unserer Hilfe?',
  'page.scale': '1 = gar nicht, 5 = sehr zufrieden',
  'page.comment': 'Möchten Sie uns noch etwas mitteilen? (optional)',
  'page.submit': 'Bewertung senden',
  'page.thanks': 'Vielen Dank!',
  'page.recorded':
    'Ihre Bewertung {rating}/5 wurde gespeichert. Mit demselben Link können Sie sie ändern, solange er gültig ist.',
  'page.retry.title': 'Bitte versuchen Sie es erneut',
  'page.retry.text': 'Wir konnten Ihre Bewertung gerade nicht speichern. Bitte versuchen Sie es in einer Minute erneut.',
  'unsubscribe.title': 'Abgemeldet',
  'unsubscribe.done': 'Sie erhalten keine Zufriedenheitsumfragen mehr von uns.',
  'unsubscribe.confirm': 'Keine Zufriedenheitsumfragen mehr von uns erhalten?',
  'unsubscribe.button': 'Abmelden',
};

const CATALOGS: Record<CatalogLanguage, Record<MessageKey, string>> = { en, de };

// Parsed once per language and key: the catalogs are ours and fixed.
const compiled = new Map<string, IntlMessageFormat>();

function isCatalogLanguage(language: string): language is CatalogLanguage {
  return (CATALOG_LANGUAGES as readonly string[]).includes(language);
}

/** The catalog language for `wanted` (a conversation's), else the channel's first one we have, else English. */
export function catalogLanguage(wanted: string | null | undefined, channelLanguages: readonly string[] = []): CatalogLanguage {
  for (const language of [wanted, ...channelLanguages]) {
    const base = language?.trim().toLowerCase().split(/[-_]/)[0] ?? '';
    if (isCatalogLanguage(base)) return base;
  }
  return 'en';
}

/** One message of the catalog in `language`, with its values (numbers pick the plural form). */
export function message(language: CatalogLanguage, key: MessageKey, values: Record<string, string | number> = {}): string {
  const id = `${language}:${key}`;
  let format = compiled.get(id);
  if (!format) {
    format = new IntlMessageFormat(CATALOGS[language][key], language);
    compiled.set(id, format);
  }
  return String(format.format(values));
}

/** A moment as the customer reads it: their language's date format, in the channel's time zone with its name. */
export function formatDate(language: CatalogLanguage, at: Date, timeZone: string): string {
  return DateTime.fromJSDate(at, { zone: timeZone })
    .setLocale(language)
    .toLocaleString({ ...DateTime.DATETIME_FULL, timeZoneName: 'short' });
}

/** A day as the customer reads it (the survey's last day), in the channel's time zone. */
export function formatDay(language: CatalogLanguage, at: Date, timeZone: string): string {
  return DateTime.fromJSDate(at, { zone: timeZone }).setLocale(language).toLocaleString(DateTime.DATE_FULL);
}
