import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import type { Channel } from '../../db/schema.js';
import { checkSmtpServer, SMTP_FAILURE_MESSAGES, type SmtpServer } from '../../mail/transport.js';
import { CredentialDecryptionError, decryptCredential, encryptCredential } from '../../security/credentials.js';
import { isSameMailServerLogin } from '../../security/destinations.js';
import { deploymentOAuthClients } from '../../config.js';
import { createMailboxLogins } from '../../mail/mailbox-login.js';
import { ReauthorizationRequiredError, TokenRefreshFailedError } from '../../oauth/access-tokens.js';
import { findChannel } from '../access.js';
import { checkedMailServerHost } from '../mail-server-host.js';
import type { ApiDeps, AppEnv, AuthenticatedUser } from '../env.js';
import { Problem, problemResponses } from '../problem.js';

// A channel's own SMTP server for outgoing mail (password write-only, encrypted at rest), and a
// connection test. Without one the channel sends through the deployment's server (SMTP_URL).
// Admins only, reads too, like the IMAP settings: they name a mail server login.
// The stored password only ever goes to the server and user it was saved with; hosts pass the destination policy.

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
    oauth: z.boolean().openapi({
      description: "Logs in with the mailbox's OAuth 2.0 grant (see …/oauth); a PUT with a password replaces it",
    }),
  })
  .openapi('ChannelSmtp');

const ChannelSmtpInput = z
  .object({
    host,
    port: port.optional().openapi({ description: 'Defaults to 465 with secure, 587 without' }),
    secure: secure.default(false),
    username: username.nullable().default(null).openapi({ description: 'Null or left out: no authentication' }),
    password: password.optional().openapi({
      description:
        'Write-only; left out keeps the stored one, which is possible only while host, port, secure and username stay as stored',
    }),
  })
  .openapi('ChannelSmtpInput');

const SmtpTestInput = z
  .object({ host, port, secure, username: username.nullable(), password })
  .partial()
  .openapi('ChannelSmtpTestInput');

const SmtpTestResult = z
  .discriminatedUnion('ok', [
    z.object({ ok: z.literal(true) }),
    z.object({
      ok: z.literal(false),
      reason: z.enum(['dns', 'refused', 'timeout', 'tls', 'auth', 'protocol']),
      message: z.string().openapi({ description: "A fixed text per reason; the server's own words are never passed on" }),
    }),
  ])
  .openapi('ChannelSmtpTestResult');

const getRoute = createRoute({
  method: 'get',
  path: '/v1/channels/{channelId}/smtp',
  operationId: 'getSmtpSettings',
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
  operationId: 'setSmtpSettings',
  tags,
  summary: 'Send the channel’s mail through its own SMTP server (admins)',
  description:
    'Mail written from now on goes through this server. Test it first with POST /smtp/test. A changed host, port, ' +
    'secure or username needs the password again. A host that resolves only to private, loopback or other ' +
    'non-public addresses is refused (422 naming host) unless the operator allows them (ALLOWED_PRIVATE_NETWORKS); ' +
    'a host that does not resolve yet is saved.',
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
  operationId: 'deleteSmtpSettings',
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
  operationId: 'testSmtpSettings',
  tags,
  summary: 'Try SMTP settings: connect, TLS and log in, without sending (admins)',
  description:
    'Fields left out are taken from the stored settings, so the saved server is tested with an empty body; the ' +
    'stored password is used only with the stored host, port, secure and username. A failure is an answer with ' +
    'ok false and a reason, not an error; a host the destination policy refuses answers 422 naming host.',
  security,
  request: { params: channelParams, body: { required: false, content: json(SmtpTestInput) } },
  responses: {
    200: { description: 'The outcome', content: json(SmtpTestResult) },
    ...problemResponses(401, 403, 404, 422),
  },
});

function describe(channel: Channel): z.infer<typeof ChannelSmtpSchema> {
  if (!channel.smtp_host) {
    return { usesDefault: true, host: null, port: null, secure: false, username: null, passwordSet: false, oauth: false };
  }
  return {
    usesDefault: false,
    host: channel.smtp_host,
    port: channel.smtp_port,
    secure: channel.smtp_secure,
    username: channel.smtp_username,
    passwordSet: channel.smtp_password_encrypted !== null,
    oauth: channel.smtp_auth === 'oauth2',
  };
}

function missingField(field: string, message: string): never {
  throw new Problem(422, 'validation', 'Request validation failed', `${field} needed`, [{ field, message }]);
}

const PASSWORD_FOR_CHANGED_SERVER =
  'required again: host, port, secure or username differ from the stored settings, and the stored password only goes to the server and user it was saved for';

const storedLogin = (channel: Channel) => ({
  host: channel.smtp_host,
  port: channel.smtp_port,
  tls: channel.smtp_secure,
  username: channel.smtp_username,
});

export function channelSmtpRoutes({ db, config }: ApiDeps) {
  const logins = createMailboxLogins({
    db,
    secretKey: config.SECRET_KEY,
    allowedPrivateNetworks: config.ALLOWED_PRIVATE_NETWORKS ?? [],
    oauthClients: deploymentOAuthClients(config),
  });
  const channelOf = (user: AuthenticatedUser, channelId: string) => findChannel(db, user, channelId, 'configure');
  const destinationOf = (host: string) => checkedMailServerHost(host, config.ALLOWED_PRIVATE_NETWORKS);

  const app = new OpenAPIHono<AppEnv>();

  app.openapi(getRoute, async (c) => {
    const channel = await channelOf(c.get('user'), c.req.valid('param').channelId);
    return c.json(describe(channel), 200);
  });

  app.openapi(putRoute, async (c) => {
    const channel = await channelOf(c.get('user'), c.req.valid('param').channelId);
    const input = c.req.valid('json');
    const port = input.port ?? (input.secure ? 465 : 587);
    if (input.username && !input.password) {
      if (!channel.smtp_password_encrypted) missingField('password', 'required with a username: no password is stored yet');
      const requested = { host: input.host, port, tls: input.secure, username: input.username };
      if (!isSameMailServerLogin(storedLogin(channel), requested)) missingField('password', PASSWORD_FOR_CHANGED_SERVER);
    }
    // Refused only for what it resolves to now; a name that does not resolve yet (or DNS being down) is saved.
    await destinationOf(input.host);
    const updated = await db.transaction().execute((trx) =>
      trx
        .updateTable('channels')
        .set({
          smtp_host: input.host,
          smtp_port: port,
          smtp_secure: input.secure,
          smtp_username: input.username,
          // Without a login no password is kept; a new one replaces the stored one.
          // The settings an admin sends are a password login: an OAuth grant never goes to a server named here.
          smtp_auth: 'password',
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
    await db.transaction().execute((trx) =>
      trx
        .updateTable('channels')
        .set({
          smtp_host: null,
          smtp_port: null,
          smtp_secure: false,
          smtp_username: null,
          smtp_password_encrypted: null,
          smtp_auth: 'password',
        })
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
    const serverPort = given.port ?? channel.smtp_port ?? (serverSecure ? 465 : 587);
    let secret: string | null = given.password ?? null;
    const requested = { host: serverHost, port: serverPort, tls: serverSecure, username: login };
    // The OAuth login as connected: only to its own server and account.
    if (!secret && channel.smtp_auth === 'oauth2' && isSameMailServerLogin(storedLogin(channel), requested)) {
      let server;
      try {
        server = await logins.smtpServer(channel);
      } catch (error) {
        if (!(error instanceof ReauthorizationRequiredError || error instanceof TokenRefreshFailedError)) throw error;
        return c.json({ ok: false as const, reason: 'auth' as const, message: SMTP_FAILURE_MESSAGES.auth }, 200);
      }
      const destination = server && (await destinationOf(server.host));
      if (!server || !destination) {
        return c.json({ ok: false as const, reason: 'dns' as const, message: SMTP_FAILURE_MESSAGES.dns }, 200);
      }
      return c.json(await checkSmtpServer(server, destination, TEST_TIMEOUT_MS), 200);
    }
    if (login && !secret) {
      if (!channel.smtp_password_encrypted) missingField('password', 'required with a username: none is stored');
      if (!isSameMailServerLogin(storedLogin(channel), requested)) missingField('password', PASSWORD_FOR_CHANGED_SERVER);
      try {
        secret = decryptCredential(channel.smtp_password_encrypted, config.SECRET_KEY);
      } catch (error) {
        if (!(error instanceof CredentialDecryptionError)) throw error;
        missingField('password', 'required again: the stored password can no longer be read (was SECRET_KEY changed?)');
      }
    }
    const server: SmtpServer = {
      host: serverHost,
      port: serverPort,
      secure: serverSecure,
      username: login ?? null,
      password: secret,
    };
    const destination = await destinationOf(server.host);
    if (!destination) return c.json({ ok: false as const, reason: 'dns' as const, message: SMTP_FAILURE_MESSAGES.dns }, 200);
    return c.json(await checkSmtpServer(server, destination, TEST_TIMEOUT_MS), 200);
  });

  return app;
}
