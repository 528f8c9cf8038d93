import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import { readChannelHealth, type MailPath } from '../../db/channel-health.js';
import { findChannel } from '../access.js';
import type { ApiDeps, AppEnv } from '../env.js';
import { problemResponses } from '../problem.js';

// How each way in and out of a channel is doing, for the admin who wonders why mail stopped.

const timestamp = z.iso.datetime().nullable();

const PathError = z
  .object({
    reason: z.string().openapi({ description: 'Coarse and stable (dns, refused, timeout, tls, auth, workflows_unavailable, …)' }),
    message: z.string().openapi({ description: 'What happened, in one line' }),
    at: z.iso.datetime(),
  })
  .openapi('MailPathError');

const PathHealth = z
  .object({
    state: z.enum(['unused', 'ok', 'failing', 'off']).openapi({
      description:
        'unused: nothing went this way yet; ok: its last attempt worked; failing: it has failed since failingSince; ' +
        'off: not configured or turned off (IMAP, a Sent folder)',
    }),
    lastMailAt: timestamp.openapi({ description: 'Inbound paths: when the last mail came in this way' }),
    lastSuccessAt: timestamp.openapi({
      description: 'Inbound: the last mail handed to its conversation (IMAP: the last completed sync); outbound: the last send',
    }),
    lastError: PathError.nullable(),
    failingSince: timestamp,
  })
  .openapi('MailPathHealth');

const ChannelHealthSchema = z
  .object({
    channelId: z.uuid(),
    inbound: z.object({ forwarder: PathHealth, smtpReceiver: PathHealth, imap: PathHealth }),
    outbound: z.object({ smtp: PathHealth, sentFolder: PathHealth }),
  })
  .openapi('ChannelHealth');

const route = createRoute({
  method: 'get',
  path: '/v1/channels/{channelId}/health',
  operationId: 'getChannelHealth',
  tags: ['Channels'],
  summary: "How the channel's ways in and out are doing: last mail, last success, last error and since when",
  description:
    'Per inbound path (the forwarder endpoint, the SMTP receiver at the forwarding address, the IMAP mailbox) the last ' +
    'mail received, the last success and the last error with its coarse reason; per outbound path (SMTP sending, the ' +
    'copy to the Sent folder) the last send and the last failure. An error stays readable after the path recovers; ' +
    'failingSince is set only while it is failing. Agents of the channel may read it.',
  security: [{ apiKey: [] }],
  request: { params: z.object({ channelId: z.uuid() }) },
  responses: {
    200: { description: 'The health of each path', content: { 'application/json': { schema: ChannelHealthSchema } } },
    ...problemResponses(401, 403, 404),
  },
});

const iso = (date: Date | null) => date?.toISOString() ?? null;

export function channelHealthRoutes({ db }: ApiDeps) {
  const app = new OpenAPIHono<AppEnv>();
  return app.openapi(route, async (c) => {
    const channel = await findChannel(db, c.get('user'), c.req.valid('param').channelId, 'work');
    const health = await readChannelHealth(db, channel.id);
    const describe = (path: MailPath, off = false): z.infer<typeof PathHealth> => {
      const { lastMailAt, lastSuccessAt, lastError, failingSince } = health[path];
      return {
        state: off ? 'off' : failingSince ? 'failing' : lastSuccessAt || lastMailAt ? 'ok' : 'unused',
        lastMailAt: iso(lastMailAt),
        lastSuccessAt: iso(lastSuccessAt),
        lastError: lastError && { reason: lastError.reason, message: lastError.message, at: lastError.at.toISOString() },
        failingSince: iso(failingSince),
      };
    };
    return c.json(
      {
        channelId: channel.id,
        inbound: {
          forwarder: describe('forwarder'),
          smtpReceiver: describe('smtp_receiver'),
          imap: describe('imap', !channel.imap_enabled),
        },
        outbound: { smtp: describe('smtp'), sentFolder: describe('sent_folder', !channel.imap_enabled) },
      },
      200,
    );
  });
}
