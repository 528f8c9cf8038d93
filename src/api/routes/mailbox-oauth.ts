import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { html } from 'hono/html';
import { deploymentOAuthClients } from '../../config.js';
import type { Db } from '../../db/connection.js';
import type { Channel } from '../../db/schema.js';
import {
  AuthorizationFailedError,
  finishAuthorization,
  MAX_PENDING_PER_CHANNEL,
  OAUTH_CALLBACK_PATH,
  redirectUri,
  revokeGrant,
  startAuthorization,
  type FlowDeps,
  type RequestedConnection,
} from '../../oauth/authorization-flow.js';
import { ProviderConfigurationError } from '../../oauth/provider-client.js';
import { MICROSOFT_TENANT, OAUTH_PROVIDERS, providerPreset } from '../../oauth/providers.js';
import { encryptCredential } from '../../security/credentials.js';
import { WorkflowsUnavailableError } from '../../temporal/gateway.js';
import { applyMailboxSettings } from '../../temporal/mailbox.js';
import { findChannel } from '../access.js';
import { checkedMailServerHost } from '../mail-server-host.js';
import type { ApiDeps, AppEnv } from '../env.js';
import { htmlDocument, htmlResponse } from '../html-document.js';
import { Problem, problemResponses } from '../problem.js';

// A channel's mailbox connected with OAuth 2.0 (Google Workspace, Microsoft 365, any OAuth provider): an admin
// starts the authorization-code flow and opens the URL it returns; the provider's callback stores the grant and
// turns on the IMAP sync; the connection's state says when the grant needs the admin again. Tokens never leave.

const security = [{ apiKey: [] }];
const tags = ['IMAP mailboxes'];
const channelParams = z.object({ channelId: z.uuid() });
const json = <T extends z.ZodType>(schema: T) => ({ 'application/json': { schema } });

const host = z
  .string()
  .trim()
  .min(1)
  .max(255)
  .regex(/^[^\s\0/]+$/, 'a host name or IP address');
const port = z.number().int().min(1).max(65535);
const providerUrl = z.url().max(2048);
// RFC 6749 3.3: scope tokens are printable ASCII but space, '"' and '\'.
const scope = z
  .string()
  .min(1)
  .max(255)
  .regex(/^[\x21\x23-\x5b\x5d-\x7e]+$/, 'a scope token (printable ASCII, no space, quote or backslash)');

const OAuthConnectionSchema = z
  .object({
    method: z.enum(['password', 'oauth2']).openapi({ description: 'How Mailroom logs in to the IMAP server' }),
    provider: z.enum(OAUTH_PROVIDERS).nullable(),
    account: z.string().nullable().openapi({ description: 'The mailbox the grant is for (the IMAP and SMTP user)' }),
    state: z
      .enum(['connected', 'reauthorization_required'])
      .nullable()
      .openapi({
        description:
          'reauthorization_required: the grant was revoked or expired (or the server refuses fresh tokens); the sync waits ' +
          'until an admin connects the mailbox again, then reads on from where it stopped',
      }),
    reason: z.string().nullable().openapi({ description: "With reauthorization_required: the provider's or server's reason" }),
    since: z.iso.datetime().nullable().openapi({ description: 'When the state began' }),
    connectedAt: z.iso.datetime().nullable(),
    refreshedAt: z.iso.datetime().nullable().openapi({ description: 'When the access token was last refreshed' }),
    smtp: z.boolean().openapi({ description: 'Outgoing mail goes through the provider with the same grant' }),
    ownClient: z.boolean().openapi({ description: "The channel's own OAuth client, not the deployment's" }),
  })
  .openapi('MailboxOAuthConnection');

const ConnectInput = z
  .object({
    provider: z.enum(OAUTH_PROVIDERS).openapi({
      description: 'google and microsoft bring endpoints, scopes and mail servers; generic takes them from the request',
    }),
    username: z.string().trim().min(3).max(255).regex(/^\S+$/, 'a mailbox address').optional().openapi({
      description: "The mailbox's address when it is not the signing-in account's email (e.g. a shared mailbox)",
    }),
    tenant: z.string().regex(MICROSOFT_TENANT, 'organizations, common, consumers, a tenant id or domain').optional().openapi({
      description: "microsoft: the tenant (default OAUTH_MICROSOFT_TENANT, else 'organizations')",
    }),
    clientId: z.string().trim().min(1).max(255).optional().openapi({
      description: "The channel's own OAuth client; left out: the deployment's (OAUTH_GOOGLE_CLIENT_ID, ...)",
    }),
    clientSecret: z.string().min(1).max(1024).optional().openapi({ description: 'Write-only; kept encrypted with the grant' }),
    issuer: providerUrl.optional().openapi({ description: 'generic: the issuer, whose discovery document names the endpoints' }),
    authorizationEndpoint: providerUrl.optional().openapi({ description: 'generic without issuer' }),
    tokenEndpoint: providerUrl.optional().openapi({ description: 'generic without issuer' }),
    revocationEndpoint: providerUrl.optional().openapi({ description: 'generic without issuer; used on disconnect' }),
    scopes: z.array(scope).min(1).max(20).optional().openapi({
      description: 'generic: the scopes to ask for (default: openid email offline_access); presets use their own',
    }),
    imap: z
      .object({ host, port: port.default(993), tls: z.boolean().default(true) })
      .optional()
      .openapi({
        description: 'generic: the IMAP server (required); presets use their own',
      }),
    smtp: z
      .object({ host, port: port.default(587), secure: z.boolean().default(false) })
      .nullable()
      .optional()
      .openapi({
        description:
          "The SMTP server outgoing mail goes through with the grant. Presets: the provider's unless null (the channel's " +
          'SMTP settings stay); generic: only when given',
      }),
  })
  .openapi('MailboxOAuthConnectInput');

const ConnectResult = z
  .object({
    authorizationUrl: z.url().openapi({ description: "Open it in the admin's browser: the provider's sign-in and consent" }),
    redirectUri: z.url().openapi({ description: 'The callback; register it with the OAuth client' }),
    expiresAt: z.iso.datetime().openapi({ description: 'The authorization must be finished by then' }),
  })
  .openapi('MailboxOAuthAuthorization');

const CallbackQuery = z.object({
  state: z.string().max(512).optional(),
  code: z.string().max(4096).optional(),
  error: z.string().max(256).optional(),
  // Shown bounded; a longer one is still answered with the page, not a 422.
  error_description: z.string().max(16_384).optional(),
  iss: z.string().max(2048).optional(),
});

const startRoute = createRoute({
  method: 'post',
  path: '/v1/channels/{channelId}/oauth/authorizations',
  operationId: 'startMailboxAuthorization',
  tags,
  summary: "Connect the channel's mailbox with OAuth 2.0: the provider's authorization URL to open (admins)",
  description:
    `The authorization code flow with PKCE. Valid for 10 minutes and once; at most ${MAX_PENDING_PER_CHANNEL} unfinished ` +
    'per channel. When the admin has signed in and consented, the provider sends the browser to the callback, which ' +
    "stores the grant (the refresh token encrypted) and turns on the IMAP sync with it. A provider's or mail server's " +
    'host that resolves to a non-public address is refused (422) unless the operator allows it (ALLOWED_PRIVATE_NETWORKS); ' +
    'provider URLs must be https but there.',
  security,
  request: { params: channelParams, body: { required: true, content: json(ConnectInput) } },
  responses: {
    201: { description: 'Open authorizationUrl', content: json(ConnectResult) },
    ...problemResponses(401, 403, 404, 409, 422, 503),
  },
});

const callbackRoute = createRoute({
  method: 'get',
  path: OAUTH_CALLBACK_PATH,
  operationId: 'completeMailboxAuthorization',
  tags,
  summary: "The provider's redirect after sign-in and consent (the admin's browser)",
  description:
    'Public: the state names the authorization (single use, 10 minutes) and the PKCE verifier binds the code to it. ' +
    'Answers a page saying what happened.',
  security: [],
  request: { query: CallbackQuery },
  responses: {
    200: htmlResponse('The mailbox is connected'),
    400: htmlResponse('Not connected: unknown, used or expired state, a refusal by the provider; the page says which'),
    503: htmlResponse('Connected, but the sync could not be started (Temporal is away)'),
    // A parameter longer than any provider sends.
    ...problemResponses(422),
  },
});

const getRoute = createRoute({
  method: 'get',
  path: '/v1/channels/{channelId}/oauth',
  operationId: 'getMailboxOAuth',
  tags,
  summary: "How the channel's mailbox logs in, and the state of its OAuth grant (admins)",
  security,
  request: { params: channelParams },
  responses: {
    200: { description: 'The connection; never a token', content: json(OAuthConnectionSchema) },
    ...problemResponses(401, 403, 404, 422),
  },
});

const deleteRoute = createRoute({
  method: 'delete',
  path: '/v1/channels/{channelId}/oauth',
  operationId: 'disconnectMailboxOAuth',
  tags,
  summary: "Disconnect the mailbox's OAuth grant: revoked at the provider, removed, IMAP sync off (admins)",
  description:
    'The grant is revoked where the provider has a revocation endpoint (Google, generic ones naming one; Microsoft has ' +
    'none: remove the app in the account) and removed. IMAP sync stops; outgoing mail goes through the deployment’s ' +
    'SMTP server again if it went through the provider.',
  security,
  request: { params: channelParams },
  responses: {
    200: {
      description: 'Disconnected',
      content: json(z.object({ revokedAtProvider: z.boolean() }).openapi('MailboxOAuthDisconnected')),
    },
    ...problemResponses(401, 403, 404, 409, 422, 503),
  },
});

/** The connection as the API shows it, for GET …/oauth and GET …/imap. */
export async function describeMailboxLogin(db: Db, channel: Channel): Promise<z.infer<typeof OAuthConnectionSchema>> {
  const grant =
    channel.imap_auth === 'oauth2' || channel.smtp_auth === 'oauth2'
      ? await db.selectFrom('mailbox_oauth_grants').selectAll().where('channel_id', '=', channel.id).executeTakeFirst()
      : undefined;
  return {
    method: channel.imap_auth,
    provider: grant?.provider ?? null,
    account: grant?.account ?? null,
    state: grant?.state ?? null,
    reason: grant?.reason ?? null,
    since: grant?.state_since.toISOString() ?? null,
    connectedAt: grant?.connected_at.toISOString() ?? null,
    refreshedAt: grant?.refreshed_at?.toISOString() ?? null,
    smtp: channel.smtp_auth === 'oauth2',
    ownClient: grant ? grant.client_secret_encrypted !== null || grant.provider === 'generic' : false,
  };
}

export { OAuthConnectionSchema };

function invalid(field: string, message: string): never {
  throw new Problem(422, 'validation', 'Request validation failed', `${field}: ${message}`, [{ field, message }]);
}

function flowDeps({ db, config }: ApiDeps): FlowDeps {
  return {
    db,
    secretKey: config.SECRET_KEY,
    allowedPrivateNetworks: config.ALLOWED_PRIVATE_NETWORKS ?? [],
    deploymentClients: deploymentOAuthClients(config),
    publicUrl: config.PUBLIC_URL,
  };
}

/** The callback, public: mounted before the API key check. */
export function oauthCallbackRoutes(deps: ApiDeps) {
  const { temporal, taskQueue } = deps;
  const flow = flowDeps(deps);
  const app = new OpenAPIHono<AppEnv>();

  app.openapi(callbackRoute, async (c: Context<AppEnv>) => {
    let finished;
    try {
      finished = await finishAuthorization(flow, new URL(c.req.url));
    } catch (error) {
      if (!(error instanceof AuthorizationFailedError)) throw error;
      return c.html(htmlDocument('The mailbox was not connected', html`<p>${error.message}</p>`), 400);
    }
    const { channel, account } = finished;
    try {
      await applyMailboxSettings(temporal, channel, taskQueue, 'connected; the sync starts when Temporal is back');
    } catch (error) {
      if (!(error instanceof WorkflowsUnavailableError)) throw error;
      return c.html(
        htmlDocument(
          'Mailbox connected, sync not started',
          html`<p>
            ${account} is connected to ${channel.name}, but the sync could not be started now. Save the channel's IMAP settings
            again to start it.
          </p>`,
        ),
        503,
      );
    }
    return c.html(
      htmlDocument(
        'Mailbox connected',
        html`<p>${account} is connected to ${channel.name}. Mail is read from now on; you can close this window.</p>`,
      ),
      200,
    );
  });

  return app;
}

export function mailboxOAuthRoutes(deps: ApiDeps) {
  const { db, temporal, config, taskQueue } = deps;
  const flow = flowDeps(deps);
  const { allowedPrivateNetworks, deploymentClients } = flow;

  /** The admin's request as a connection: presets filled in, every host through the destination policy. */
  async function requestedConnection(input: z.infer<typeof ConnectInput>): Promise<{
    connection: RequestedConnection;
    authorizationParams: Record<string, string>;
  }> {
    if (input.clientSecret && !input.clientId) invalid('clientSecret', 'only with clientId: the deployment brings its own');
    if (input.provider !== 'microsoft' && input.tenant) invalid('tenant', 'only for provider microsoft');
    let connection: RequestedConnection;
    let authorizationParams: Record<string, string> = {};
    const clientSecretEncrypted = input.clientSecret ? encryptCredential(input.clientSecret, config.SECRET_KEY) : null;
    if (input.provider === 'generic') {
      if (!input.clientId) invalid('clientId', 'required for a generic provider');
      if (!input.imap) invalid('imap', 'required for a generic provider: its IMAP server');
      if (!input.issuer && !(input.authorizationEndpoint && input.tokenEndpoint)) {
        invalid('issuer', 'required for a generic provider, or authorizationEndpoint and tokenEndpoint');
      }
      connection = {
        provider: 'generic',
        location: input.issuer
          ? { issuer: input.issuer, tokenEndpoint: null, revocationEndpoint: null, clientId: input.clientId }
          : {
              issuer: null,
              authorizationEndpoint: input.authorizationEndpoint!,
              tokenEndpoint: input.tokenEndpoint!,
              revocationEndpoint: input.revocationEndpoint ?? null,
              clientId: input.clientId,
            },
        clientSecretEncrypted,
        scopes: input.scopes ?? ['openid', 'email', 'offline_access'],
        username: input.username ?? null,
        imap: input.imap,
        smtp: input.smtp ?? null,
      };
    } else {
      for (const field of ['issuer', 'authorizationEndpoint', 'tokenEndpoint', 'revocationEndpoint', 'scopes', 'imap'] as const) {
        if (input[field] !== undefined) invalid(field, `only for a generic provider: ${input.provider} brings its own`);
      }
      const deployment = deploymentClients[input.provider];
      const clientId = input.clientId ?? deployment?.clientId;
      if (!clientId) {
        invalid(
          'clientId',
          `required: the deployment has no OAuth client for ${input.provider} (OAUTH_${input.provider.toUpperCase()}_CLIENT_ID)`,
        );
      }
      const preset = providerPreset(input.provider, input.tenant ?? deploymentClients.microsoft?.tenant);
      connection = {
        provider: input.provider,
        location: { issuer: preset.issuer, tokenEndpoint: null, revocationEndpoint: null, clientId },
        clientSecretEncrypted,
        scopes: preset.scopes,
        username: input.username ?? null,
        imap: preset.imap,
        smtp: input.smtp === null ? null : (input.smtp ?? preset.smtp),
      };
      authorizationParams = preset.authorizationParams;
    }
    for (const [field, server] of [
      ['imap.host', connection.imap],
      ['smtp.host', connection.smtp],
    ] as const) {
      if (!server) continue;
      try {
        await checkedMailServerHost(server.host, allowedPrivateNetworks);
      } catch (error) {
        if (error instanceof Problem) invalid(field, error.detail ?? 'refused by the destination policy');
        throw error;
      }
    }
    return { connection, authorizationParams };
  }

  const app = new OpenAPIHono<AppEnv>();

  app.openapi(startRoute, async (c) => {
    const user = c.get('user');
    const channel = await findChannel(db, user, c.req.valid('param').channelId, 'configure');
    const { connection, authorizationParams } = await requestedConnection(c.req.valid('json'));
    let started;
    try {
      started = await startAuthorization(flow, { userId: user.id, channelId: channel.id, connection, authorizationParams });
    } catch (error) {
      // A preset's provider is not the admin's to fix: it could not be reached, try again later.
      if (error instanceof ProviderConfigurationError && connection.provider !== 'generic') {
        throw new Problem(503, 'provider-unavailable', 'The OAuth provider is unavailable', error.message);
      }
      if (error instanceof ProviderConfigurationError) invalid(error.field, error.message);
      throw error;
    }
    if ('tooMany' in started) {
      throw new Problem(
        409,
        'conflict',
        'Too many unfinished authorizations',
        `this channel has ${MAX_PENDING_PER_CHANNEL} authorizations started in the last 10 minutes and not finished; finish one or wait`,
      );
    }
    return c.json(
      {
        authorizationUrl: started.authorizationUrl,
        redirectUri: redirectUri(config.PUBLIC_URL),
        expiresAt: started.expiresAt.toISOString(),
      },
      201,
    );
  });

  app.openapi(getRoute, async (c) => {
    const channel = await findChannel(db, c.get('user'), c.req.valid('param').channelId, 'configure');
    return c.json(await describeMailboxLogin(db, channel), 200);
  });

  app.openapi(deleteRoute, async (c) => {
    const channel = await findChannel(db, c.get('user'), c.req.valid('param').channelId, 'configure');
    const grant = await db.selectFrom('mailbox_oauth_grants').selectAll().where('channel_id', '=', channel.id).executeTakeFirst();
    if (!grant) throw new Problem(409, 'conflict', 'Not connected with OAuth', "the channel's mailbox has no OAuth grant");
    // Given back first: a grant that cannot be revoked now is still removed here (the provider lets it expire).
    const revokedAtProvider = await revokeGrant(flow, grant).catch(() => false);
    const updated = await db.transaction().execute(async (trx) => {
      await trx.deleteFrom('mailbox_oauth_grants').where('channel_id', '=', channel.id).execute();
      return trx
        .updateTable('channels')
        .set({
          ...(channel.imap_auth === 'oauth2' ? { imap_enabled: false, imap_auth: 'password' as const } : {}),
          ...(channel.smtp_auth === 'oauth2'
            ? {
                smtp_auth: 'password' as const,
                smtp_host: null,
                smtp_port: null,
                smtp_secure: false,
                smtp_username: null,
                smtp_password_encrypted: null,
              }
            : {}),
        })
        .where('id', '=', channel.id)
        .returningAll()
        .executeTakeFirstOrThrow();
    });
    await applyMailboxSettings(temporal, updated, taskQueue, 'disconnected; the IMAP sync stops at its next session');
    return c.json({ revokedAtProvider }, 200);
  });

  return app;
}
