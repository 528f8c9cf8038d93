import { nextOpening } from '../domain/business-hours.js';
import { formatDate, formatDay, message } from '../domain/message-catalogs.js';
import { csatSurveyText, greetingText, handoverText, outOfOfficeText } from '../domain/templates.js';
import { signUnsubscribeToken } from '../domain/unsubscribe-token.js';
import type { DraftInput, OutgoingContext } from './outgoing.js';

// What each automatic mail says, in the conversation's language, for the send and for the settings preview alike.

export type AutomaticDraft = Omit<DraftInput, 'outboxId'>;

export function greetingDraft(context: OutgoingContext): AutomaticDraft {
  return {
    kind: 'greeting',
    senderName: null,
    text: greetingText({ text: context.greeting_text, texts: context.greeting_texts }, context.language),
  };
}

/** When the team is back, in the customer's words and the channel's time zone; `fallback` without business hours. */
export function opensAtFor(context: OutgoingContext, fallback: string, now: Date = new Date()): string {
  const opensAt = context.business_hours ? nextOpening(context.business_hours, now) : null;
  return opensAt ? formatDate(context.language, opensAt, context.timeZone) : fallback;
}

export function outOfOfficeDraft(context: OutgoingContext, opensAtText: string): AutomaticDraft {
  return {
    kind: 'out_of_office',
    senderName: null,
    text: outOfOfficeText(
      { text: context.out_of_office_text, texts: context.out_of_office_texts },
      context.language,
      opensAtText,
    ),
  };
}

export function handoverDraft(context: OutgoingContext, aiAgentName: string): AutomaticDraft {
  return { kind: 'handover', senderName: aiAgentName, text: handoverText(context.language) };
}

/** The survey links: the rating page with each rating chosen (only its POST records), and the one-click unsubscribe. */
export function surveyUrls(input: { publicUrl: string; secretKey: string; token: string; contactId: string }) {
  return {
    ratingUrl: (rating: number) => `${input.publicUrl}/csat/${input.token}?rating=${rating}`,
    unsubscribeUrl: `${input.publicUrl}/unsubscribe/surveys/${signUnsubscribeToken(input.contactId, input.secretKey)}`,
  };
}

export function surveyDraft(
  context: OutgoingContext,
  input: { publicUrl: string; secretKey: string; token: string; expiresAt: Date; now?: Date },
): AutomaticDraft {
  const { language } = context;
  const urls = surveyUrls({ ...input, contactId: context.contactId });
  const now = input.now ?? new Date();
  return {
    kind: 'csat_survey',
    senderName: null,
    subjectFrom: (subject: string) => message(language, 'survey.subject', { subject }),
    text: csatSurveyText({
      language,
      ratingUrl: urls.ratingUrl,
      validUntilText: formatDay(language, input.expiresAt, context.timeZone),
      // Rounded: the link was made valid for whole days a moment ago.
      daysValid: Math.max(0, Math.round((input.expiresAt.getTime() - now.getTime()) / 86_400_000)),
      unsubscribeUrl: urls.unsubscribeUrl,
    }),
    listUnsubscribe: urls.unsubscribeUrl,
  };
}
