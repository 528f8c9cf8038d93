import { randomUUID } from 'node:crypto';
import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import {
  agentSignatureOf,
  draftMail,
  loadOutgoingContext,
  readAsRecipient,
  renderMessage,
  threadOf,
} from '../../mail/outgoing.js';
import { findConversation } from '../access.js';
import type { ApiDeps, AppEnv } from '../env.js';
import { Problem, problemResponses } from '../problem.js';
import { ReplyContentFields, resolveReply } from '../reply-content.js';
import { ReplyTimingFields } from './reply-timing.js';

// A5: the reply as the customer will receive it, built by the same code that writes the outbox row and
// rendered to MIME by the same composer that hands it to SMTP, then read back as a mail client would.

export const ReplyInputSchema = z
  .object({
    text: z.string().trim().min(1, 'the reply text is empty').max(100_000).optional().openapi({
      description: 'The reply as plain text; may be left out when `html` is given (the text is then derived from it)',
    }),
    subject: z
      .string()
      .trim()
      .min(1)
      .max(998)
      .optional()
      .openapi({ description: 'Defaults to the channel\'s default subject, else "Re: <conversation subject>"' }),
    ...ReplyContentFields,
    ...ReplyTimingFields,
  })
  .refine((reply) => reply.text !== undefined || reply.html !== undefined, {
    message: 'a reply has a text or an HTML body',
    path: ['text'],
  })
  .openapi('ReplyInput');

const MailPreviewSchema = z
  .object({
    from: z.object({ name: z.string(), address: z.string() }),
    to: z.string(),
    replyTo: z.string().nullable(),
    subject: z.string(),
    inReplyTo: z.string().nullable(),
    references: z.array(z.string()),
    headers: z
      .array(z.object({ name: z.string(), value: z.string() }))
      .openapi({ description: 'Every header of the mail but Message-ID and Date (set when it is sent) and the MIME structure' }),
    text: z.string(),
    html: z.string(),
    cc: z.array(z.string()).openapi({ description: 'Cc recipients (also in the headers)' }),
    bcc: z.array(z.string()).openapi({ description: 'Bcc recipients: in the envelope only, in no header' }),
    attachments: z
      .array(z.object({ filename: z.string(), contentType: z.string(), sizeBytes: z.number().int() }))
      .openapi({ description: "The files as the recipient's mail client lists them" }),
  })
  .openapi('MailPreview');

const previewRoute = createRoute({
  method: 'post',
  path: '/v1/conversations/{conversationId}/replies/preview',
  operationId: 'previewReply',
  tags: ['Conversations'],
  summary: 'Preview a reply exactly as the customer will receive it, without sending it',
  description:
    'Headers, text and HTML of the mail that POST /v1/conversations/{conversationId}/replies would send now with the same body, ' +
    'as the calling agent. Message-ID and Date are assigned when it is sent.',
  security: [{ apiKey: [] }],
  request: {
    params: z.object({ conversationId: z.uuid() }),
    body: { required: true, content: { 'application/json': { schema: ReplyInputSchema } } },
  },
  responses: {
    200: { description: 'The mail as it would go out', content: { 'application/json': { schema: MailPreviewSchema } } },
    ...problemResponses(401, 403, 404, 409, 422),
  },
});

export function replyPreviewRoutes({ db, config }: ApiDeps) {
  const app = new OpenAPIHono<AppEnv>();
  return app.openapi(previewRoute, async (c) => {
    const { conversationId } = c.req.valid('param');
    const input = c.req.valid('json');
    const { subject } = input;
    const user = c.get('user');
    const owner = await findConversation(db, user, conversationId);
    const context = (await loadOutgoingContext(db, conversationId))!;
    const { contactEmail } = context;
    if (!contactEmail) {
      throw new Problem(
        409,
        'no-address',
        'The contact has no email address',
        'set the contact’s email address before mailing them',
      );
    }
    const reply = await resolveReply(
      db,
      config.INBOUND_DOMAIN,
      { id: conversationId, channelId: owner.channel_id, contactEmail },
      input,
    );
    const draft = draftMail({ ...context, contactEmail }, await threadOf(db, conversationId), {
      kind: 'reply',
      outboxId: randomUUID(),
      senderName: user.name,
      agentSignature: await agentSignatureOf(db, user.id),
      subject,
      text: reply.text,
      html: reply.content.html ?? null,
      ...(reply.content.to ? { to: reply.content.to } : {}),
      cc: reply.content.cc ?? [],
      bcc: reply.content.bcc ?? [],
      attachments: reply.attachments,
    });
    const received = await readAsRecipient(await renderMessage(draft));
    return c.json(
      {
        from: draft.from,
        to: draft.to,
        replyTo: draft.replyTo,
        inReplyTo: draft.inReplyTo,
        references: [...draft.references],
        cc: [...(draft.cc ?? [])],
        bcc: [...(draft.bcc ?? [])],
        ...received,
      },
      200,
    );
  });
}
