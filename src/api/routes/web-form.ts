import { createHash, randomUUID } from 'node:crypto';
import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import MailComposer from 'nodemailer/lib/mail-composer/index.js';
import type { Channel } from '../../db/schema.js';
import { outboundMessageId } from '../../domain/threading.js';
import { MailRejectedError, WorkflowsUnavailableError } from '../../ingest/ingest.js';
import { createConversationGateway } from '../../temporal/gateway.js';
import { findChannel } from '../access.js';
import type { ApiDeps, AppEnv } from '../env.js';
import { IDEMPOTENCY_HEADER, IdempotencyHeadersSchema } from '../idempotency.js';
import { MailboxAddress } from '../schemas/address.js';
import { Problem, problemResponses } from '../problem.js';
import { SentReplySchema } from './conversations.js';

// A11: a web form (a backend service) opens a conversation. The submission becomes a mail to the channel
// and takes the ingest path of every customer mail; without an address the contact is created without
// one and nobody is mailed (A3).

const security = [{ apiKey: [] }];

const FormConversationInputSchema = z
  .object({
    channelId: z.uuid(),
    contact: z.object({
      email: MailboxAddress.nullable()
        .optional()
        .openapi({ description: 'Unknown (null or absent): the contact is created without one and nobody is mailed (A3)' }),
      name: z.string().trim().min(1).max(200).optional(),
    }),
    subject: z.string().trim().min(1, 'the subject is empty').max(998),
    message: z.string().trim().min(1, 'the message is empty').max(100_000),
    firstMessage: z
      .object({
        text: z.string().trim().min(1, 'the message text is empty').max(100_000),
        subject: z.string().trim().min(1).max(998).optional(),
      })
      .optional()
      .openapi({ description: 'A first mail to the contact from the calling agent; needs contact.email' }),
  })
  .superRefine((input, ctx) => {
    if (input.firstMessage && !input.contact.email) {
      ctx.addIssue({
        code: 'custom',
        path: ['firstMessage'],
        message: 'needs contact.email: a contact without an address is not mailed',
      });
    }
  })
  .openapi('FormConversationInput');

const formConversationRoute = createRoute({
  method: 'post',
  path: '/v1/conversations',
  operationId: 'createConversationFromWebForm',
  tags: ['Conversations'],
  summary: 'Open a conversation from a web form submission (A11)',
  description:
    'The submission becomes an inbound message (received via "form") and takes the path of every customer mail: ' +
    'contact, conversation, workflow, routing, greeting. Without an email address the contact is created without ' +
    'one; nothing is mailed to them until PATCH /v1/contacts/{contactId} sets it. 409 when the channel is disabled.',
  security,
  request: {
    headers: IdempotencyHeadersSchema,
    body: { required: true, content: { 'application/json': { schema: FormConversationInputSchema } } },
  },
  responses: {
    201: {
      description: 'Opened',
      content: {
        'application/json': {
          schema: z
            .object({
              conversationId: z.uuid(),
              contactId: z.uuid(),
              inboundMessageId: z.uuid(),
              firstMessage: SentReplySchema.optional(),
            })
            .openapi('FormConversation'),
        },
      },
    },
    ...problemResponses(401, 403, 404, 409, 413, 422, 503),
  },
});

// A web form without an address still needs a From to be a mail; the ingest neither keeps nor matches it (A3).
const NO_ADDRESS_SENDER = 'no-address@form.invalid';

/** A uuid (RFC 9562 version 8) derived from the seed. */
function uuidFrom(seed: string): string {
  const hex = createHash('sha256').update(seed).digest('hex');
  const variant = ((parseInt(hex[16]!, 16) & 0x3) | 0x8).toString(16);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-8${hex.slice(13, 16)}-${variant}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

/** The web-form submission as a mail to the channel: what the ingest takes. */
function formMail(
  channel: Channel,
  submissionId: string,
  input: { from: { name: string; address: string }; subject: string; text: string },
) {
  const oneLine = (value: string) => value.replace(/[\r\n]+/g, ' ');
  return new MailComposer({
    from: { name: oneLine(input.from.name), address: input.from.address },
    to: channel.email_address,
    subject: oneLine(input.subject),
    text: input.text,
    messageId: outboundMessageId(`form-${submissionId}`, channel.email_address),
    headers: { 'X-Mailroom-Source': 'form' },
  })
    .compile()
    .build();
}

export function formConversationRoutes({ db, temporal, ingest }: ApiDeps) {
  const conversations = createConversationGateway(temporal);
  const app = new OpenAPIHono<AppEnv>();

  app.openapi(formConversationRoute, async (c) => {
    const input = c.req.valid('json');
    const user = c.get('user');
    const channel = await findChannel(db, user, input.channelId, 'work');
    if (!channel.enabled) {
      throw new Problem(
        409,
        'channel-disabled',
        'Channel disabled',
        'the channel takes no new conversations while it is disabled',
      );
    }
    // With an Idempotency-Key the ids derive from it: a retry after a 503 resumes the same submission.
    const key = c.req.header(IDEMPOTENCY_HEADER);
    const submissionId = key ? uuidFrom(`${user.id}\n${key}\n${JSON.stringify(input)}`) : randomUUID();
    const email = input.contact.email?.toLowerCase() ?? null;
    const name = input.contact.name ?? null;
    let knownContactId: string | undefined;
    if (!email) {
      knownContactId = uuidFrom(`${submissionId}\ncontact`);
      await db
        .insertInto('contacts')
        .values({ id: knownContactId, account_id: user.accountId, email: null, name })
        .onConflict((oc) => oc.column('id').doNothing())
        .execute();
    }
    const raw = await formMail(channel, submissionId, {
      from: { name: name ?? '', address: email ?? NO_ADDRESS_SENDER },
      subject: input.subject,
      text: input.message,
    });
    if (raw.length > channel.max_inbound_bytes) {
      throw new Problem(413, 'too-large', 'Message too large', `the channel accepts up to ${channel.max_inbound_bytes} bytes`);
    }
    let result;
    try {
      result = await ingest.ingestRawMail(channel, raw, {
        via: 'form',
        ...(knownContactId ? { contactId: knownContactId } : {}),
      });
    } catch (error) {
      if (error instanceof MailRejectedError) {
        throw new Problem(422, 'unprocessable-mail', 'The submission cannot be processed', error.reason);
      }
      if (error instanceof WorkflowsUnavailableError) {
        throw new Problem(
          503,
          'workflows-unavailable',
          'Workflows are unavailable',
          'the submission is stored; repeat the request with the same Idempotency-Key',
        );
      }
      throw error;
    }
    const { contact_id: contactId } = await db
      .selectFrom('conversations')
      .select('contact_id')
      .where('id', '=', result.conversationId)
      .executeTakeFirstOrThrow();
    let firstMessage;
    if (input.firstMessage) {
      const { text, subject } = input.firstMessage;
      firstMessage = await conversations.reply(
        result.conversationId,
        { author: { id: user.id, name: user.name }, text, ...(subject ? { subject } : {}) },
        `first-message-${submissionId}`, // a repeated request sends it once
      );
    }
    return c.json(
      {
        conversationId: result.conversationId,
        contactId,
        inboundMessageId: result.inboundMessageId,
        ...(firstMessage ? { firstMessage } : {}),
      },
      201,
    );
  });

  return app;
}
