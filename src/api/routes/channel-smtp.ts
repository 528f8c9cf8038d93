import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import type { Channel } from '../../db/schema.js';
import { smtpServerTransport, type SmtpServer } from '../../mail/transport.js';
import { decryptCredential, encryptCredential } from '../../security/credentials.js';
import { findChannel } from '../access.js';
import type { ApiDeps, AppEnv, AuthenticatedUser } from '../env.js';
import { Problem, problemResponses } from '../problem.js';

// A channel's own SMTP server for outgoing mail (password write-only, encrypted at rest), and a
// connection test. Without one the channel sends through the deployment's server (SMTP_URL).
// Admins only, reads too, like the IMAP settings: they name a mail server login.

const security = [{ apiKey: [] }];
const tags = ['Channels'];
const channelParams = z.object({ channelId: z.uuid() });
const json = <T extends z.ZodType>(schema: T) => ({ 'application/json': { schema } });
const TEST_TIMEOUT_MS = 10_000;

const host = z
  .string()
  .trim()
  .min(1)
  .max(255)
  .regex(/^[^\s\0/]+$/, 'a host name or IP address')
  .openapi({ example: 'smtp.acme.example' });
const port = z.number().int().min(1).max(65535);
const secure = z.boolean().openapi({ description: 'Implicit TLS (port 465); false uses STARTTLS when the server offers it' });
const username = z.string().min(1).max(255);
const password = z.string().min(1).max(1024);

const ChannelSmtpSchema = z
  .object({
    usesDefault: z
      .boolean()
      .openapi({ description: "True: mail goes through the deployment's SMTP server; the other fields are null" }),
    host: z.string().nullable(),
    port: port.nullable(),
    secure,
    username: z.string().nullable().openapi({ description: 'Null: the server is used without authentication' }),
    passwordSet: z.boolean().openapi({ description: 'The password itself is never returned' }),
  })
  .openapi('ChannelSmtp');

const ChannelSmtpInput = z
  .object({
    host,
    port: port.optional().openapi({ description: 'Defaults to 465 with secure, 587 without' }),
    secure: secure.default(false),
    username: username.nullable().default(null).openapi({ description: 'Null or left out: no authentication' }),
    password: password.optional().openapi({ description: 'Write-only; left out keeps the stored one' }),
  })
  .openapi('ChannelSmtpInput');

const SmtpTestInput = z
  .object({ host, port, secure, username: username.nullable(), password })
  .partial()
  .openapi('ChannelSmtpTestInput');

const SmtpTestResult = z
  .object({
    ok: z.boolean(),
    error: z.string().optional().openapi({ description: 'What failed: connection, TLS or login; only when ok is false' }),
  })
  .openapi('ChannelSmtpTestResult');

const getRoute = createRoute({
  method: 'get',
  path: '/v1/channels/{channelId}/smtp',
  tags,
  summary: "The channel's own SMTP server for outgoing mail, or that it uses the deployment's (admins)",
  security,
  request: { params: channelParams },
  responses: {
    200: { description: 'Settings', content: json(ChannelSmtpSchema) },
    ...problemResponses(401, 403, 404, 422),
  },
});

const putRoute = createRoute({
  method: 'put',
  path: '/v1/channels/{channelId}/smtp',
  tags,
  summary: 'Send the channel’s mail through its own SMTP server (admins)',
  description: 'Mail written from now on goes through this server. Test it first with POST /smtp/test.',
  security,
  request: { params: channelParams, body: { required: true, content: json(ChannelSmtpInput) } },
  responses: {
    200: { description: 'Saved', content: json(ChannelSmtpSchema) },
    ...problemResponses(401, 403, 404, 422),
  },
});

const deleteRoute = createRoute({
  method: 'delete',
  path: '/v1/channels/{channelId}/smtp',
  tags,
  summary: "Forget the channel's SMTP server: its mail goes through the deployment's again (admins)",
  security,
  request: { params: channelParams },
  responses: {
    204: { description: 'Removed' },
    ...problemResponses(401, 403, 404, 422),
  },
});

const testRoute = createRoute({
  method: 'post',
  path: '/v1/channels/{channelId}/smtp/test',
  tags,
  summary: 'Try SMTP settings: connect, TLS and log in, without sending (admins)',
  description:
    'Fields left out are taken from the stored settings, so the saved server is tested with an empty body. ' +
    'A failure is an answer with ok false, not an error.',
  security,
  request: { params: channelParams, body: { required: false, content: json(SmtpTestInput) } },
  responses: {
    200: { description: 'The outcome', content: json(SmtpTestResult) },
    ...problemResponses(401, 403, 404, 422),
  },
});

function describe(channel: Channel): z.infer<typeof ChannelSmtpSchema> {
  if (!channel.smtp_host) return { usesDefault: true, host: null, port: null, secure: false, username: null, passwordSet: false };
  return {
    usesDefault: false,
    host: channel.smtp_host,
    port: channel.smtp_port,
    secure: channel.smtp_secure,
    username: channel.smtp_username,
    passwordSet: channel.smtp_password_encrypted !== null,
  };
}

function missingField(field: string, message: string): never {
  throw new Problem(422, 'validation', 'Request validation failed', `${field} needed`, [{ field, message }]);
}

export function channelSmtpRoutes({ db, config }: ApiDeps) {
  const channelOf = (user: AuthenticatedUser, channelId: string) => findChannel(db, user, channelId, 'configure');

  const app = new OpenAPIHono<AppEnv>();

  app.openapi(getRoute, async (c) => {
    const channel = await channelOf(c.get('user'), c.req.valid('param').channelId);
    return c.json(describe(channel), 200);
  });

  app.openapi(putRoute, async (c) => {
    const channel = await channelOf(c.get('user'), c.req.valid('param').channelId);
    const input = c.req.valid('json');
    if (input.username && !input.password && !channel.smtp_password_encrypted) {
      missingField('password', 'required with a username: no password is stored yet');
    }
    const updated = await db.transaction().execute((trx) =>
      trx
        .updateTable('channels')
        .set({
          smtp_host: input.host,
          smtp_port: input.port ?? (input.secure ? 465 : 587),
          smtp_secure: input.secure,
          smtp_username: input.username,
          // Without a login no password is kept; a new one replaces the stored one.
          smtp_password_encrypted: !input.username
            ? null
            : input.password
              ? encryptCredential(input.password, config.SECRET_KEY)
              : channel.smtp_password_encrypted,
        })
        .where('id', '=', channel.id)
        .where('deleted_at', 'is', null)
        .returningAll()
        .executeTakeFirst(),
    );
    if (!updated) throw new Problem(404, 'not-found', 'Channel not found', `no channel ${channel.id}`);
    return c.json(describe(updated), 200);
  });

  app.openapi(deleteRoute, async (c) => {
    const channel = await channelOf(c.get('user'), c.req.valid('param').channelId);
    await db
      .transaction()
      .execute((trx) =>
        trx
          .updateTable('channels')
          .set({ smtp_host: null, smtp_port: null, smtp_secure: false, smtp_username: null, smtp_password_encrypted: null })
          .where('id', '=', channel.id)
          .execute(),
      );
    return c.body(null, 204);
  });

  app.openapi(testRoute, async (c) => {
    const channel = await channelOf(c.get('user'), c.req.valid('param').channelId);
    const given = c.req.valid('json') ?? {};
    const serverHost = given.host ?? channel.smtp_host;
    if (!serverHost) missingField('host', "required: the channel has no SMTP server of its own (it uses the deployment's)");
    const serverSecure = given.secure ?? channel.smtp_secure;
    const login = given.username !== undefined ? given.username : channel.smtp_username;
    let secret: string | null = given.password ?? null;
    if (login && !secret && channel.smtp_password_encrypted) {
      try {
        secret = decryptCredential(channel.smtp_password_encrypted, config.SECRET_KEY);
      } catch (error) {
        return c.json({ ok: false, error: (error as Error).message }, 200);
      }
    }
    if (login && !secret) missingField('password', 'required with a username: none is stored');
    const server: SmtpServer = {
      host: serverHost,
      port: given.port ?? channel.smtp_port ?? (serverSecure ? 465 : 587),
      secure: serverSecure,
      username: login ?? null,
      password: secret,
    };
    const transporter = smtpServerTransport(server, { pool: false, timeoutMs: TEST_TIMEOUT_MS });
    try {
      await transporter.verify();
      return c.json({ ok: true }, 200);
    } catch (error) {
      return c.json({ ok: false, error: (error as Error).message || String(error) }, 200);
    } finally {
      transporter.close();
    }
  });

  return app;
}
