import { z } from '@hono/zod-openapi';
import type { Updateable } from 'kysely';
import type { Channel, ChannelsTable } from '../../db/schema.js';
import { ASSIGNMENT_STRATEGIES } from '../../domain/assignment.js';
import {
  businessHoursSchema,
  MAX_BUSINESS_TIME_MS,
  WEEKDAYS,
  type BusinessHours,
  type Weekday,
} from '../../domain/business-hours.js';
import { FROM_NAME_TOKENS, SUBJECT_TOKENS, templateProblem } from '../../domain/outgoing-templates.js';
import { sanitizeMailHtml } from '../../mail/sanitize-mail-html.js';
import { MAX_SIGNATURE_CHARS, SIGNATURE_TOKENS } from '../../mail/signature.js';
import { Problem } from '../problem.js';
import { forwardingAddressOf } from '../../domain/forwarding-address.js';

// The channel resource (C1–C8, A6–A8): one JSON shape for every answer, the create and patch bodies
// built from the same groups, and the mapping to and from the channels row.

type ChannelUpdate = Updateable<ChannelsTable>;

// PostgreSQL integer columns: anything larger would be a database error, not a 422.
const INT_MAX = 2_147_483_647;

/** Text; single-line where it becomes a mail header. */
function text(max: number, options: { singleLine?: boolean } = {}) {
  return z
    .string()
    .trim()
    .min(1, 'empty: use null for the default')
    .max(max)
    .refine((v) => !options.singleLine || !/[\r\n]/.test(v), 'must be a single line');
}

/** A template that may use only `allowed` tokens; the issue names the field it sits in. */
function template(max: number, allowed: Record<string, string>) {
  const tokens = Object.values(allowed);
  return text(max, { singleLine: true }).superRefine((value, ctx) => {
    const problem = templateProblem(value, tokens);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });
}

const seconds = (min: 0 | 1) => z.number().int().min(min).max(INT_MAX);

const ChannelName = z.string().trim().min(1).max(200);
const EmailAddress = z
  .string()
  .trim()
  .toLowerCase()
  .max(254)
  .pipe(z.email())
  .openapi({ description: 'Where customers write; stored lower-cased', example: 'support@acme.example' });

/** Texts per language (ISO 639-1 code: text), beside the one text for every language. */
function perLanguage(max: number, what: string) {
  return z
    .record(z.string().regex(/^[a-z]{2}$/, 'an ISO 639-1 code: two lower-case letters'), text(max))
    .refine((texts) => Object.keys(texts).length <= 50, 'at most 50 languages')
    .openapi({
      description: `${what} per language of the conversation (ISO 639-1 code: text), sent as written; a language without one gets the one text, else Mailroom's words in that language`,
      example: { de: 'Vielen Dank, wir kümmern uns darum.' },
    });
}

const GreetingSchema = z
  .object({
    enabled: z.boolean().openapi({ description: 'Send an automatic greeting to a customer who starts a conversation' }),
    text: text(10_000).nullable().openapi({ description: "The greeting's text; null uses Mailroom's default" }),
    texts: perLanguage(10_000, "The greeting's text"),
  })
  .openapi('ChannelGreeting');

const CsatSchema = z
  .object({
    enabled: z.boolean().openapi({ description: 'Mail a satisfaction survey after a conversation is resolved' }),
    delaySeconds: seconds(0).openapi({ description: 'How long after the resolution the survey is sent' }),
    linkValiditySeconds: seconds(1).openapi({ description: 'How long the survey link can be used' }),
  })
  .openapi('ChannelCsat');

const IntervalSchema = z
  .object({
    start: z
      .string()
      .openapi({ description: "Local wall time 'HH:mm'", example: '09:00', pattern: '^([01]\\d|2[0-3]):[0-5]\\d$' }),
    end: z.string().openapi({
      description: "Local wall time 'HH:mm' or '24:00'; an end before the start crosses midnight into the next day",
      example: '17:00',
      pattern: '^(([01]\\d|2[0-3]):[0-5]\\d|24:00)$',
    }),
  })
  .openapi('BusinessHoursInterval');

const intervals = z.array(IntervalSchema).max(48);
const WeeklySchema = z
  .object(Object.fromEntries(WEEKDAYS.map((day) => [day, intervals])) as Record<Weekday, typeof intervals>)
  .openapi('BusinessHoursWeekly', { description: 'Opening intervals per weekday; an empty list is a closed day' });
const WeeklyInput = z
  .strictObject(
    Object.fromEntries(WEEKDAYS.map((day) => [day, intervals.optional()])) as Record<Weekday, z.ZodOptional<typeof intervals>>,
  )
  .openapi({ description: 'Opening intervals per weekday; replaces the whole week: a weekday left out is closed' });

const BusinessHoursFields = {
  enabled: z.boolean().openapi({
    description: 'Outside business hours conversations wait, customers get the out-of-office text and the SLA clock stops',
  }),
  timeZone: z.string().max(100).openapi({ description: 'IANA time zone the hours are read in', example: 'Europe/Berlin' }),
  closedDates: z
    .array(z.string().max(10).openapi({ example: '2026-12-25' }))
    .max(1000)
    .openapi({ description: "Local dates 'YYYY-MM-DD' (holidays) closed all day" }),
  outOfOfficeText: text(10_000)
    .nullable()
    .openapi({ description: "Sent once per conversation outside business hours; null uses Mailroom's default" }),
  outOfOfficeTexts: perLanguage(10_000, 'The out-of-office text'),
};

const BusinessHoursSchema = z.object({ ...BusinessHoursFields, weekly: WeeklySchema }).openapi('ChannelBusinessHours');

const OutgoingSchema = z
  .object({
    defaultSubject: template(500, SUBJECT_TOKENS)
      .nullable()
      .openapi({
        description: `Subject of replies the agent gives none; may contain ${SUBJECT_TOKENS.startedAt}. Null: "Re: <conversation subject>"`,
        example: `Your request of ${SUBJECT_TOKENS.startedAt}`,
      }),
    fromName: template(200, FROM_NAME_TOKENS)
      .nullable()
      .openapi({
        description: `From name of outgoing mail; may contain ${FROM_NAME_TOKENS.agentName} (the channel name for automatic mail). Null: "<agent> (<channel>)"`,
        example: `${FROM_NAME_TOKENS.agentName} at Acme`,
      }),
  })
  .openapi('ChannelOutgoing');

/** One part of a signature: a template that may use only {{agent.name}} and {{channel.name}}. */
const signatureTemplate = () =>
  z
    .string()
    .trim()
    .min(1, 'empty: use null for none')
    .max(MAX_SIGNATURE_CHARS)
    .superRefine((value, ctx) => {
      const problem = templateProblem(value, Object.values(SIGNATURE_TOKENS));
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    });

/** A signature: text and HTML, each may use {{agent.name}} and {{channel.name}}; the HTML keeps only formatting markup. */
export const SignatureSchema = z
  .object({
    text: signatureTemplate()
      .nullable()
      .openapi({ description: 'Below the text part, after "-- "', example: `${SIGNATURE_TOKENS.agentName}\nAcme Support` }),
    html: signatureTemplate()
      // Kept as the allowlist of inbound mail leaves it (no scripts, no remote styles): what is stored is what is sent.
      .transform((value) => sanitizeMailHtml(value))
      .nullable()
      .openapi({
        description: 'Below the HTML part; null shows the text signature there. Sanitized like inbound mail',
        example: `<p><b>${SIGNATURE_TOKENS.agentName}</b><br>${SIGNATURE_TOKENS.channelName}</p>`,
      }),
  })
  .openapi('Signature');

const AssignmentSchema = z
  .object({
    strategy: z.enum(ASSIGNMENT_STRATEGIES).openapi({
      description: 'round_robin: the agent who waited longest; load: the agent with the fewest open conversations',
    }),
    defaultAgentCapacity: z.number().int().min(1).max(1000).nullable().openapi({
      description: 'Open conversations an agent takes at once unless they have their own capacity; null = unlimited',
    }),
  })
  .openapi('ChannelAssignment');

const SlaSchema = z
  .object({
    firstResponseSeconds: z
      .number()
      .int()
      .min(1)
      .max(MAX_BUSINESS_TIME_MS / 1000)
      .nullable()
      .openapi({ description: 'First human reply due within this much business time (at most 30 days); null = no SLA' }),
  })
  .openapi('ChannelSla');

const AiSchema = z
  .object({
    confidenceThreshold: z
      .number()
      .min(0)
      .max(1)
      .openapi({ description: 'Below this confidence the AI agent hands the conversation to a person' }),
    maxTurns: z.number().int().min(1).max(1000).openapi({ description: 'AI answers without a resolution before it hands over' }),
    answerOutsideBusinessHours: z.boolean().openapi({ description: 'Whether AI agents answer while business hours are closed' }),
  })
  .openapi('ChannelAi');

const LanguagesSchema = z
  .array(z.string().regex(/^[a-z]{2}$/, 'an ISO 639-1 code: two lower-case letters'))
  .min(1)
  .max(50)
  .openapi({
    description: 'ISO 639-1 codes of the languages customers write in: requests for a person are recognised in these',
    example: ['en', 'de'],
  });

const LimitsSchema = z
  .object({
    maxInboundBytes: z.number().int().min(1).max(INT_MAX).openapi({
      description:
        "Larger mail is refused by the forwarder endpoint (never more than the deployment's limit) and quarantined from IMAP",
    }),
    maxAttachmentBytes: z.number().int().min(0).max(INT_MAX).openapi({
      description:
        'Larger attachments are kept as metadata with a note, without their bytes; a larger upload for a reply is refused (413)',
    }),
    maxReplyAttachments: z
      .number()
      .int()
      .min(0)
      .max(100)
      .openapi({ description: 'Files one agent reply carries at most (uploaded or forwarded); more is refused (422)' }),
    maxReplyAttachmentBytes: z
      .number()
      .int()
      .min(0)
      .max(INT_MAX)
      .openapi({ description: 'What the files of one agent reply weigh together at most; more is refused (422)' }),
    automaticMailLimitPerHour: z.number().int().min(0).max(10_000).openapi({
      description:
        'Automatic mails (greeting, survey, out of office, AI answer, handover note) one recipient gets per hour at most (mail loops)',
    }),
    automaticMailLimitPerDomainPerHour: z.number().int().min(0).max(100_000).openapi({
      description: 'Automatic mails all recipients at one domain get per hour at most (a flood of forged senders)',
    }),
    automaticMailLimitPerChannelPerHour: z.number().int().min(0).max(1_000_000).openapi({
      description:
        'Automatic mails the channel sends per hour at most, to anyone; past a limit the suppression is on the timeline',
    }),
  })
  .openapi('ChannelLimits');

// A host name, or `*.` and a host name for any host below it.
const AUTHSERV_ID = /^(?:\*\.)?[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/;

const SendersSchema = z
  .object({
    trustedAuthservIds: z
      .array(z.string().trim().toLowerCase().max(253).regex(AUTHSERV_ID, 'a host name such as mx.google.com, or *.example.net'))
      .max(20)
      .openapi({
        description:
          'The authserv-ids of the servers that receive this channel’s mail (Authentication-Results: mx.google.com; …). ' +
          'Only their verdicts count: a mail failing DMARC by them is spam. Anyone can write the header into a mail.',
        example: ['mx.google.com'],
      }),
    trustUnnamedAuthenticationResults: z.boolean().openapi({
      description:
        'Microsoft 365 writes Authentication-Results without an authserv-id: believe the topmost one (mailboxes in Microsoft 365)',
    }),
    trustSpamHeaders: z.boolean().openapi({
      description: 'A spam verdict of the receiving server (X-Spam-Flag, X-Spam-Status, rspamd, Microsoft SCL) makes a mail spam',
    }),
  })
  .openapi('ChannelSenders', {
    description:
      'Mail from a spoofed sender or with a spam verdict is stored and shown with the reason, never answered automatically, ' +
      'and kept out of the queue until an agent releases it (POST /v1/conversations/{id}/not-spam).',
  });

const CloseAfterSeconds = seconds(0).openapi({ description: 'Quiet time after resolution after which a conversation closes' });
const UndoSendSeconds = z
  .number()
  .int()
  .min(0, 'the undo grace period is 0 to 30 seconds')
  .max(30, 'the undo grace period is 0 to 30 seconds')
  .openapi({
    description:
      "Undo send: how long an agent's reply waits before it goes out; DELETE /v1/conversations/{id}/replies/{replyId} cancels it meanwhile. 0 (the default) sends at once",
  });

export const ChannelSchema = z
  .object({
    id: z.uuid(),
    name: z.string(),
    emailAddress: z.string().openapi({ description: 'Where customers write', example: 'support@acme.example' }),
    enabled: z.boolean().openapi({ description: 'A disabled channel takes no mail (forwarder 409, IMAP stopped)' }),
    forwardingAddress: z.string().nullable().openapi({
      description: 'username@subdomain.<inbound domain>, set once with PUT /forwarding-address; null until then',
      example: 'support@acme.inbound.mailroom.dev',
    }),
    createdAt: z.iso.datetime(),
    greeting: GreetingSchema,
    csat: CsatSchema,
    businessHours: BusinessHoursSchema,
    outgoing: OutgoingSchema,
    signature: SignatureSchema.openapi({
      description:
        "Below every mail of the channel: automatic mail, AI answers, handover notes, and agents' replies unless the agent has their own",
    }),
    assignment: AssignmentSchema,
    sla: SlaSchema,
    ai: AiSchema,
    languages: LanguagesSchema,
    closeAfterSeconds: CloseAfterSeconds,
    undoSendSeconds: UndoSendSeconds,
    limits: LimitsSchema,
    senders: SendersSchema,
  })
  .openapi('Channel');

export type ChannelJson = z.infer<typeof ChannelSchema>;

export const ChannelWithSecretSchema = ChannelSchema.extend({
  forwarderSecret: z.string().openapi({
    description: 'The secret the mail forwarder authenticates with; shown only here and when rotated',
  }),
}).openapi('ChannelWithSecret');

/**
 * The settings groups of a write: each group is optional, and a group given changes only the fields given.
 * Strict objects, like the bodies they sit in: an unknown field (a typo) is a 422 naming it, not silently
 * ignored, and the document says so (additionalProperties: false).
 */
const settingsInput = {
  enabled: z.boolean().optional(),
  greeting: GreetingSchema.partial().strict().optional(),
  csat: CsatSchema.partial().strict().optional(),
  businessHours: z
    .strictObject({ ...BusinessHoursFields, weekly: WeeklyInput })
    .partial()
    .optional(),
  outgoing: OutgoingSchema.partial().strict().optional(),
  signature: SignatureSchema.partial().strict().optional(),
  assignment: AssignmentSchema.partial().strict().optional(),
  sla: SlaSchema.partial().strict().optional(),
  ai: AiSchema.partial().strict().optional(),
  languages: LanguagesSchema.optional(),
  closeAfterSeconds: CloseAfterSeconds.optional(),
  undoSendSeconds: UndoSendSeconds.optional(),
  limits: LimitsSchema.partial().strict().optional(),
  senders: SendersSchema.partial().strict().optional(),
};

export const ChannelCreateInput = z
  .strictObject({ name: ChannelName, emailAddress: EmailAddress, ...settingsInput })
  .openapi('ChannelCreateInput');

const patchFields = { name: ChannelName.optional(), emailAddress: EmailAddress.optional(), ...settingsInput };

export const ChannelPatchInput = z
  .strictObject(patchFields)
  .refine((patch) => Object.keys(patch).length > 0, `send at least one of: ${Object.keys(patchFields).join(', ')}`)
  .openapi('ChannelPatchInput', {
    description: 'Only the fields given change; a settings group given replaces only its fields given',
    minProperties: 1,
  });

export type ChannelSettingsInput = z.infer<typeof ChannelPatchInput>;

/** The settings being edited, before they are saved (the automatic-mail preview): the patch body's shape. */
export const ChannelSettingsDraft = z
  .strictObject(patchFields)
  .openapi('ChannelSettingsDraft', { description: 'The same groups and fields as PATCH /v1/channels/{id}; nothing is saved' });

export { forwardingAddressOf };

export function toChannel(row: Channel, inboundDomain: string): ChannelJson {
  const hours = row.business_hours;
  return {
    id: row.id,
    name: row.name,
    emailAddress: row.email_address,
    enabled: row.enabled,
    forwardingAddress: forwardingAddressOf(row, inboundDomain),
    createdAt: row.created_at.toISOString(),
    greeting: { enabled: row.greeting_enabled, text: row.greeting_text, texts: row.greeting_texts },
    csat: {
      enabled: row.csat_enabled,
      delaySeconds: row.csat_delay_seconds,
      linkValiditySeconds: row.csat_link_validity_seconds,
    },
    businessHours: {
      enabled: row.business_hours_enabled,
      timeZone: hours?.timeZone ?? 'UTC',
      weekly: Object.fromEntries(WEEKDAYS.map((day) => [day, hours?.weekly[day] ?? []])) as Record<
        Weekday,
        { start: string; end: string }[]
      >,
      closedDates: hours?.closedDates ?? [],
      outOfOfficeText: row.out_of_office_text,
      outOfOfficeTexts: row.out_of_office_texts,
    },
    outgoing: { defaultSubject: row.default_subject, fromName: row.from_name },
    signature: { text: row.signature_text, html: row.signature_html },
    assignment: { strategy: row.assignment_strategy, defaultAgentCapacity: row.default_agent_capacity },
    sla: { firstResponseSeconds: row.sla_first_response_seconds },
    ai: {
      confidenceThreshold: row.ai_confidence_threshold,
      maxTurns: row.ai_max_turns,
      answerOutsideBusinessHours: row.ai_outside_business_hours,
    },
    languages: row.languages,
    closeAfterSeconds: row.close_after_seconds,
    undoSendSeconds: row.undo_send_seconds,
    limits: {
      maxInboundBytes: row.max_inbound_bytes,
      maxAttachmentBytes: row.max_attachment_bytes,
      maxReplyAttachments: row.max_reply_attachments,
      maxReplyAttachmentBytes: row.max_reply_attachment_bytes,
      automaticMailLimitPerHour: row.automatic_mail_limit_per_hour,
      automaticMailLimitPerDomainPerHour: row.automatic_mail_limit_per_domain_per_hour,
      automaticMailLimitPerChannelPerHour: row.automatic_mail_limit_per_channel_per_hour,
    },
    senders: {
      trustedAuthservIds: row.trusted_authserv_ids,
      trustUnnamedAuthenticationResults: row.trust_unnamed_authentication_results,
      trustSpamHeaders: row.trust_spam_headers,
    },
  };
}

/**
 * The column changes of a create or patch body applied to `current`. Business hours are checked as a
 * whole after merging (the domain's rules: a real time zone, well-formed intervals, at least one when enabled).
 */
export function settingsColumns(input: ChannelSettingsInput, current: Channel): ChannelUpdate {
  const set: ChannelUpdate = {};
  const assign = <K extends keyof ChannelUpdate>(column: K, value: ChannelUpdate[K] | undefined) => {
    if (value !== undefined) set[column] = value;
  };
  assign('name', input.name);
  assign('email_address', input.emailAddress);
  assign('enabled', input.enabled);
  assign('greeting_enabled', input.greeting?.enabled);
  assign('greeting_text', input.greeting?.text);
  assign('greeting_texts', input.greeting?.texts && JSON.stringify(input.greeting.texts));
  assign('signature_text', input.signature?.text);
  assign('signature_html', input.signature?.html);
  assign('csat_enabled', input.csat?.enabled);
  assign('csat_delay_seconds', input.csat?.delaySeconds);
  assign('csat_link_validity_seconds', input.csat?.linkValiditySeconds);
  assign('default_subject', input.outgoing?.defaultSubject);
  assign('from_name', input.outgoing?.fromName);
  assign('assignment_strategy', input.assignment?.strategy);
  assign('default_agent_capacity', input.assignment?.defaultAgentCapacity);
  assign('sla_first_response_seconds', input.sla?.firstResponseSeconds);
  assign('ai_confidence_threshold', input.ai?.confidenceThreshold);
  assign('ai_max_turns', input.ai?.maxTurns);
  assign('ai_outside_business_hours', input.ai?.answerOutsideBusinessHours);
  // Repeated codes would only repeat the phrase tables.
  assign('languages', input.languages && JSON.stringify([...new Set(input.languages)]));
  assign('close_after_seconds', input.closeAfterSeconds);
  assign('undo_send_seconds', input.undoSendSeconds);
  assign('max_inbound_bytes', input.limits?.maxInboundBytes);
  assign('max_attachment_bytes', input.limits?.maxAttachmentBytes);
  assign('max_reply_attachments', input.limits?.maxReplyAttachments);
  assign('max_reply_attachment_bytes', input.limits?.maxReplyAttachmentBytes);
  assign('automatic_mail_limit_per_hour', input.limits?.automaticMailLimitPerHour);
  assign('automatic_mail_limit_per_domain_per_hour', input.limits?.automaticMailLimitPerDomainPerHour);
  assign('automatic_mail_limit_per_channel_per_hour', input.limits?.automaticMailLimitPerChannelPerHour);
  assign(
    'trusted_authserv_ids',
    input.senders?.trustedAuthservIds && JSON.stringify([...new Set(input.senders.trustedAuthservIds)]),
  );
  assign('trust_unnamed_authentication_results', input.senders?.trustUnnamedAuthenticationResults);
  assign('trust_spam_headers', input.senders?.trustSpamHeaders);

  const given = input.businessHours;
  if (given) {
    assign('out_of_office_text', given.outOfOfficeText);
    assign('out_of_office_texts', given.outOfOfficeTexts && JSON.stringify(given.outOfOfficeTexts));
    const { timeZone, weekly, closedDates, enabled } = given;
    if (timeZone !== undefined || weekly !== undefined || closedDates !== undefined || enabled !== undefined) {
      const hours = mergedBusinessHours(given, current);
      set.business_hours_enabled = enabled ?? current.business_hours_enabled;
      set.business_hours = JSON.stringify(hours);
    }
  }
  return set;
}

function mergedBusinessHours(given: NonNullable<ChannelSettingsInput['businessHours']>, current: Channel): BusinessHours {
  const stored = current.business_hours;
  const merged: BusinessHours = {
    timeZone: given.timeZone ?? stored?.timeZone ?? 'UTC',
    weekly: given.weekly ?? stored?.weekly ?? {},
    closedDates: given.closedDates ?? stored?.closedDates ?? [],
  };
  const enabled = given.enabled ?? current.business_hours_enabled;
  const parsed = businessHoursSchema.safeParse(merged);
  if (parsed.success) return parsed.data;
  // Disabled hours may be an empty week: the rule "at least one interval" is for hours that are used.
  const issues = parsed.error.issues.filter(
    (issue) => enabled || !(issue.code === 'custom' && issue.path.join('.') === 'weekly'),
  );
  if (issues.length === 0) return merged;
  throw new Problem(
    422,
    'validation',
    'Request validation failed',
    'invalid business hours',
    issues.map((issue) => ({ field: ['businessHours', ...issue.path].join('.'), message: issue.message })),
  );
}
