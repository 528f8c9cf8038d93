import { randomUUID } from 'node:crypto';
import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import type { Channel } from '../../db/schema.js';
import { signCsatToken } from '../../domain/csat-token.js';
import { catalogLanguage } from '../../domain/message-catalogs.js';
import {
  greetingDraft,
  handoverDraft,
  opensAtFor,
  outOfOfficeDraft,
  surveyDraft,
  type AutomaticDraft,
} from '../../mail/automatic-mail.js';
import {
  draftMail,
  loadOutgoingContext,
  readAsRecipient,
  renderMessage,
  threadOf,
  type OutgoingContext,
} from '../../mail/outgoing.js';
import type { ThreadMessage } from '../../domain/threading.js';
import { findChannel } from '../access.js';
import type { ApiDeps, AppEnv } from '../env.js';
import { Problem, problemResponses } from '../problem.js';
import { ChannelSettingsDraft, settingsColumns } from '../schemas/channel.js';

// A5 while configuring: each automatic mail rendered from the settings being edited, by the drafting and
// composing code of the real send; nothing is saved.

const AUTOMATIC_MAILS = ['greeting', 'out_of_office', 'handover', 'survey'] as const;

const PreviewInput = z
  .strictObject({
    mail: z.enum(AUTOMATIC_MAILS).openapi({ description: 'Which automatic mail' }),
    language: z
      .string()
      .regex(/^[a-z]{2}$/, 'an ISO 639-1 code: two lower-case letters')
      .optional()
      .openapi({ description: "Default: the conversation's, else the channel's first. Mailroom's words exist in en and de" }),
    conversationId: z.uuid().optional().openapi({
      description: 'Render it for this conversation of the channel (its subject, contact and thread); default: an example',
    }),
    settings: ChannelSettingsDraft.optional(),
  })
  .openapi('AutomaticMailPreviewInput');

const PreviewSchema = z
  .object({
    language: z.string().openapi({ description: 'The language the mail is in' }),
    from: z.object({ name: z.string(), address: z.string() }),
    to: z.string(),
    replyTo: z.string().nullable(),
    subject: z.string(),
    headers: z.array(z.object({ name: z.string(), value: z.string() })).openapi({
      description: 'Every header but Message-ID and Date (set when it is sent) and the MIME structure',
    }),
    text: z.string(),
    html: z.string(),
  })
  .openapi('AutomaticMailPreview');

const previewRoute = createRoute({
  method: 'post',
  path: '/v1/channels/{channelId}/automatic-mail/preview',
  operationId: 'previewAutomaticMail',
  tags: ['Channels'],
  summary: 'Preview an automatic mail (greeting, out of office, handover note, survey) from settings being edited (admins)',
  description:
    'Headers, text and HTML the composer would send with the channel’s settings changed by `settings` (nothing is saved). ' +
    'The survey’s links point to an example survey.',
  security: [{ apiKey: [] }],
  request: {
    params: z.object({ channelId: z.uuid() }),
    body: { required: true, content: { 'application/json': { schema: PreviewInput } } },
  },
  responses: {
    200: { description: 'The mail as it would go out', content: { 'application/json': { schema: PreviewSchema } } },
    ...problemResponses(401, 403, 404, 409, 422),
  },
});

// The example a preview without a conversation is written for.
const EXAMPLE = { subject: 'Example request', contactEmail: 'customer@example.com', replyToken: 'preview' };
const EXAMPLE_ID = '00000000-0000-4000-8000-000000000000';

/** The channel row as it would be with the draft saved (the jsonb columns read back as values). */
function withDraft(channel: Channel, draft: z.infer<typeof ChannelSettingsDraft>): Channel {
  const changed: Record<string, unknown> = { ...channel };
  for (const [column, value] of Object.entries(settingsColumns(draft, channel))) {
    const current = (channel as unknown as Record<string, unknown>)[column];
    changed[column] = typeof value === 'string' && current !== null && typeof current === 'object' ? JSON.parse(value) : value;
  }
  return changed as unknown as Channel;
}

export function automaticMailPreviewRoutes({ db, config }: ApiDeps) {
  const app = new OpenAPIHono<AppEnv>();
  return app.openapi(previewRoute, async (c) => {
    const { channelId } = c.req.valid('param');
    const input = c.req.valid('json');
    const user = c.get('user');
    // Admins only, as editing the settings it renders.
    const stored = await findChannel(db, user, channelId, 'configure');
    const channel = withDraft(stored, input.settings ?? {});

    let base: OutgoingContext;
    let thread: ThreadMessage[] = [];
    if (input.conversationId) {
      const found = await loadOutgoingContext(db, input.conversationId);
      if (!found || found.channelId !== channelId) {
        throw new Problem(404, 'not-found', 'Conversation not found', `no conversation ${input.conversationId} on this channel`);
      }
      base = found;
      thread = await threadOf(db, input.conversationId);
    } else {
      base = {
        id: EXAMPLE_ID,
        channelId,
        subject: EXAMPLE.subject,
        startedAt: new Date(),
        reply_token: EXAMPLE.replyToken,
        conversationLanguage: null,
        contactId: EXAMPLE_ID,
        contactEmail: EXAMPLE.contactEmail,
        surveys_unsubscribed_at: null,
      } as OutgoingContext;
    }
    const context: OutgoingContext = {
      ...base,
      channelName: channel.name,
      channelAddress: channel.email_address,
      default_subject: channel.default_subject,
      fromNameTemplate: channel.from_name,
      business_hours: channel.business_hours,
      greeting_text: channel.greeting_text,
      out_of_office_text: channel.out_of_office_text,
      csat_link_validity_seconds: channel.csat_link_validity_seconds,
      languages: channel.languages,
      signature_text: channel.signature_text,
      signature_html: channel.signature_html,
      greeting_texts: channel.greeting_texts,
      out_of_office_texts: channel.out_of_office_texts,
      timeZone: channel.business_hours?.timeZone ?? 'UTC',
      language: catalogLanguage(input.language ?? base.conversationLanguage, channel.languages),
    };
    if (!context.contactEmail) {
      throw new Problem(
        409,
        'no-address',
        'The contact has no email address',
        'set the contact’s email address before mailing them',
      );
    }

    const automatic = await automaticDraft(input.mail, context);
    const draft = draftMail({ ...context, contactEmail: context.contactEmail }, thread, { outboxId: randomUUID(), ...automatic });
    const received = await readAsRecipient(await renderMessage(draft));
    return c.json({ language: context.language, from: draft.from, to: draft.to, replyTo: draft.replyTo, ...received }, 200);
  });

  async function automaticDraft(mail: (typeof AUTOMATIC_MAILS)[number], context: OutgoingContext): Promise<AutomaticDraft> {
    switch (mail) {
      case 'greeting':
        return greetingDraft(context);
      case 'out_of_office':
        return outOfOfficeDraft(context, opensAtFor(context, '—'));
      case 'handover': {
        const agent = await db
          .selectFrom('ai_agents')
          .select('name')
          .where('channel_id', '=', context.channelId)
          .orderBy('position')
          .executeTakeFirst();
        return handoverDraft(context, agent?.name ?? 'AI agent');
      }
      case 'survey': {
        const expiresAt = new Date(Date.now() + context.csat_link_validity_seconds * 1000);
        const token = signCsatToken(
          { surveyId: EXAMPLE_ID, expiresAt: Math.floor(expiresAt.getTime() / 1000) },
          config.SECRET_KEY,
        );
        return surveyDraft(context, { publicUrl: config.PUBLIC_URL, secretKey: config.SECRET_KEY, token, expiresAt });
      }
    }
  }
}
