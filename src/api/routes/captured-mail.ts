import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import type { MiddlewareHandler } from 'hono';
import type { SmtpCapture } from '../../mail/smtp-capture.js';
import type { AppEnv } from '../env.js';
import { problemResponses } from '../problem.js';

const CapturedMailSchema = z
  .object({
    id: z.number().int(),
    receivedAt: z.iso.datetime(),
    envelope: z.object({ from: z.string().nullable(), to: z.array(z.string()) }),
    messageId: z.string().nullable(),
    subject: z.string(),
    inReplyTo: z.string().nullable(),
    references: z.array(z.string()),
    headers: z.record(z.string(), z.string()),
    text: z.string(),
  })
  .openapi('CapturedMail');

// {} is "no credentials": allowed from loopback only, which OpenAPI cannot say.
const loopbackOrApiKey: Array<Record<string, string[]>> = [{ apiKey: [] }, {}];

const listRoute = createRoute({
  method: 'get',
  path: '/v1/captured-mail',
  operationId: 'listCapturedMail',
  tags: ['Development'],
  summary: 'Mail sent while no SMTP_URL is configured (newest first)',
  description:
    'Only present when the built-in SMTP capture stands in for an outbound mail server (`npm start` without SMTP_URL). ' +
    'Answers requests from this machine (loopback); any other caller needs an API key.',
  security: loopbackOrApiKey,
  request: { query: z.object({ limit: z.coerce.number().int().min(1).max(1000).default(50) }) },
  responses: {
    200: {
      description: 'Captured mail',
      content: { 'application/json': { schema: z.object({ data: z.array(CapturedMailSchema) }) } },
    },
    ...problemResponses(401, 422),
  },
});

export function capturedMailRoutes(capture: SmtpCapture, access: MiddlewareHandler<AppEnv>) {
  const app = new OpenAPIHono<AppEnv>();
  app.use(listRoute.getRoutingPath(), access);
  return app.openapi(listRoute, (c) => {
    const { limit } = c.req.valid('query');
    const data = capture.mails
      .slice(-limit)
      .reverse()
      .map(({ raw: _raw, receivedAt, ...mail }) => ({ ...mail, receivedAt: receivedAt.toISOString() }));
    return c.json({ data }, 200);
  });
}
