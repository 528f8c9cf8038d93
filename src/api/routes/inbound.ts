import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import { bodyLimit } from 'hono/body-limit';
import {
  ForwardingConfirmationError,
  MailRejectedError,
  ParserBusyError,
  WorkflowsUnavailableError,
} from '../../ingest/ingest.js';
import { secretMatchesHash } from '../../security/secret-hash.js';
import { forwarderSecret } from '../auth.js';
import type { ApiDeps, AppEnv } from '../env.js';
import { Problem, problemResponses } from '../problem.js';
import { readRequestBody } from '../request-body.js';
import { rateLimited, type RateLimiter } from '../rate-limit.js';

const PARSER_BUSY_RETRY_AFTER_SECONDS = 5;

const IngestedSchema = z
  .object({
    conversationId: z.uuid(),
    inboundMessageId: z.uuid(),
    duplicate: z
      .boolean()
      .openapi({ description: 'True when this Message-ID had been received before; nothing new was created' }),
  })
  .openapi('IngestedMail');

const ForwardingConfirmationKeptSchema = z
  .object({
    inboundMessageId: z.uuid(),
    forwardingConfirmationId: z
      .uuid()
      .openapi({ description: 'Listed under GET /v1/channels/{channelId}/forwarding-confirmations' }),
  })
  .openapi('ForwardingConfirmationKept');

// Either scheme: the channel secret as bearer token, or as Basic password.
const forwarderSecurity: Record<string, string[]>[] = [{ channelSecret: [] }, { channelSecretBasic: [] }];

const route = createRoute({
  method: 'post',
  path: '/v1/channels/{channelId}/inbound',
  operationId: 'deliverInboundMail',
  tags: ['Inbound mail'],
  summary: 'Deliver a raw email to a channel (mail forwarders)',
  description:
    'The body is the message exactly as received (RFC 822 / MIME). Authenticate with the channel secret as a bearer token or as the ' +
    'HTTP Basic password. The mail is stored before anything else; 202 is answered once its conversation workflow has it. ' +
    'Posting the same Message-ID again answers the same and creates nothing. On 503 the mail is kept: post it again. ' +
    'Each channel takes a configured number of mails a minute, as many at once after a pause; beyond it the answer is ' +
    '429 with Retry-After: nothing was stored, post the mail again after that many seconds.',
  security: forwarderSecurity,
  request: {
    params: z.object({ channelId: z.uuid() }),
    // Not empty: an empty body is answered 400 "the body is empty".
    body: { required: true, content: { 'message/rfc822': { schema: { type: 'string', format: 'binary', minLength: 1 } } } },
  },
  responses: {
    200: {
      description: "A mail provider's forwarding confirmation (Gmail's): kept for the channel's admins, not a conversation",
      content: { 'application/json': { schema: ForwardingConfirmationKeptSchema } },
    },
    202: { description: 'Accepted into a conversation', content: { 'application/json': { schema: IngestedSchema } } },
    ...problemResponses(400, 401, 404, 409, 413, 422, 429, 503),
    503: {
      ...problemResponses(503)[503]!,
      description: 'Temporal is away, or every parser thread is busy (then with Retry-After): the mail is stored, post it again',
      headers: {
        'Retry-After': {
          description: 'Seconds after which to post again, when the parser threads are busy',
          required: false,
          schema: { type: 'integer' as const, minimum: 1 },
        },
      },
    },
  },
});

export function inboundRoutes({ db, ingest, config }: ApiDeps, perChannel: RateLimiter) {
  const tooLarge = () => new Problem(413, 'too-large', 'Message too large', `the limit is ${config.MAX_INBOUND_BYTES} bytes`);
  const app = new OpenAPIHono<AppEnv>();
  app.use(
    route.getRoutingPath(),
    bodyLimit({
      maxSize: config.MAX_INBOUND_BYTES,
      onError: () => {
        throw tooLarge();
      },
    }),
  );
  return app.openapi(route, async (c) => {
    const { channelId } = c.req.valid('param');
    // A removed channel answers like a missing one.
    const channel = await db
      .selectFrom('channels')
      .selectAll()
      .where('id', '=', channelId)
      .where('deleted_at', 'is', null)
      .executeTakeFirst();
    if (!channel) throw new Problem(404, 'not-found', 'Channel not found', `no channel ${channelId}`);
    const secret = forwarderSecret(c.req.header('authorization'));
    if (!secret || !secretMatchesHash(secret, channel.forwarder_secret_hash)) {
      throw new Problem(
        401,
        'unauthenticated',
        'Wrong channel secret',
        'send the channel secret as a bearer token or HTTP Basic password',
      );
    }
    // Counted only once the secret is right: nobody else can use up a channel's limit.
    const verdict = perChannel.take(channel.id);
    if (!verdict.allowed) {
      throw rateLimited(
        `at most ${perChannel.perMinute} mails a minute to this channel; retry after ${verdict.retryAfterSeconds} s (this mail was not stored)`,
        verdict.retryAfterSeconds,
      );
    }
    if (!channel.enabled)
      throw new Problem(409, 'channel-disabled', 'Channel disabled', 'the channel does not accept mail while it is disabled');
    const raw = await readRequestBody(c.req.raw, config.MAX_INBOUND_BYTES, tooLarge);
    if (raw.length === 0) throw new Problem(400, 'not-mime', 'Not an email', 'the body is empty');
    // The forwarder still has the mail: refusing it here loses nothing (IMAP mail over the limit is quarantined instead).
    if (raw.length > channel.max_inbound_bytes) {
      throw new Problem(413, 'too-large', 'Message too large', `the channel accepts up to ${channel.max_inbound_bytes} bytes`);
    }
    try {
      const result = await ingest.ingestRawMail(channel, raw);
      return c.json(result, 202);
    } catch (error) {
      if (error instanceof ForwardingConfirmationError) {
        return c.json(
          { inboundMessageId: error.inboundMessageId, forwardingConfirmationId: error.forwardingConfirmationId },
          200,
        );
      }
      if (error instanceof MailRejectedError) {
        throw new Problem(
          400,
          'unprocessable-mail',
          'The mail cannot be processed',
          `${error.reason}; the bytes are kept as inbound message ${error.inboundMessageId}`,
        );
      }
      if (error instanceof ParserBusyError) {
        // Kept: the forwarder (an MTA, a provider) posts it again after the pause, and the store dedupes.
        throw new Problem(
          503,
          'busy',
          'Too many mails at once',
          'the mail is stored; post it again after Retry-After seconds',
          undefined,
          {
            'Retry-After': String(PARSER_BUSY_RETRY_AFTER_SECONDS),
          },
        );
      }
      if (error instanceof WorkflowsUnavailableError) {
        throw new Problem(
          503,
          'workflows-unavailable',
          'Workflows are unavailable',
          'the mail is stored; post it again to complete delivery',
        );
      }
      throw error;
    }
  });
}
