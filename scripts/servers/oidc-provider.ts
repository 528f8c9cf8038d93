// A private OpenID provider for tests (oidc-provider, a certified implementation): loopback only, a client for
// Mailroom (authorization code with PKCE, refresh tokens that rotate) and one for the mail servers that check
// tokens (introspection), revocation, and the provider's development sign-in and consent pages, which a test
// fills in as a browser would. It records what a test needs to prove: every token grant and every introspection.
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { freePort } from './tools.js';

export interface OidcProviderOptions {
  /** Port on 127.0.0.1; a free one when omitted. */
  port?: number;
  /** Where Mailroom's callback is, e.g. http://127.0.0.1:3000/v1/oauth/callback. */
  redirectUris: string[];
  /** Lifetime of access tokens (default 3600 s); a short one lets a test see refreshes. */
  accessTokenTtlSeconds?: number;
}

/** A token request the provider answered. */
export interface TokenGrantRecord {
  grantType: 'authorization_code' | 'refresh_token';
  accountId: string | undefined;
  /** When the access token it issued expires (ms since the epoch). */
  accessTokenExpiresAt: number;
  /** SHA-256 of that access token, to match introspections against. */
  accessTokenHash: string;
}

/** An introspection a mail server made. */
export interface IntrospectionRecord {
  active: boolean;
  tokenHash: string;
  sub: string | undefined;
  at: number;
}

export interface OidcTestProvider {
  issuer: string;
  port: number;
  /** Mailroom's client (confidential, client_secret_post). */
  client: { clientId: string; clientSecret: string };
  /** The client the mail servers introspect with; introspectionUrl carries its credentials for Dovecot. */
  introspection: { clientId: string; clientSecret: string; endpoint: string; urlWithCredentials: string };
  grants: TokenGrantRecord[];
  introspections: IntrospectionRecord[];
  /** Asks the provider about a token, as a resource server does (RFC 7662). */
  introspect(token: string): Promise<{ active: boolean; sub?: string; [claim: string]: unknown }>;
  /** Ends every grant of the account, its access and refresh tokens with it, as a user removing the app's access would. */
  revokeAccount(accountId: string): void;
  stop(): Promise<void>;
}

export const hashToken = (token: string) => createHash('sha256').update(token).digest('hex');

export async function startOidcProvider(opts: OidcProviderOptions): Promise<OidcTestProvider> {
  const { default: Provider } = await import('oidc-provider');
  const port = opts.port ?? (await freePort());
  const issuer = `http://127.0.0.1:${port}`;
  const client = { clientId: 'mailroom', clientSecret: 'mailroom-client-secret' };
  const resourceServer = { clientId: 'mail-servers', clientSecret: 'mail-servers-secret' };
  const store = new Map<string, { model: string; payload: Record<string, any>; expiresAt: number }>();
  const grants: TokenGrantRecord[] = [];
  const introspections: IntrospectionRecord[] = [];

  // Everything in one map: a test can end every grant of an account at once.
  class TestAdapter {
    constructor(readonly model: string) {}
    key = (id: string) => `${this.model}:${id}`;
    async upsert(id: string, payload: Record<string, any>, expiresIn?: number) {
      store.set(this.key(id), { model: this.model, payload, expiresAt: expiresIn ? Date.now() + expiresIn * 1000 : Infinity });
    }
    async find(id: string) {
      const entry = store.get(this.key(id));
      if (!entry || entry.expiresAt < Date.now()) return undefined;
      return entry.payload;
    }
    async findByUid(uid: string) {
      for (const entry of store.values()) if (entry.model === this.model && entry.payload.uid === uid) return entry.payload;
      return undefined;
    }
    async findByUserCode() {
      return undefined;
    }
    async consume(id: string) {
      const entry = store.get(this.key(id));
      if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
    }
    async destroy(id: string) {
      store.delete(this.key(id));
    }
    async revokeByGrantId(grantId: string) {
      for (const [key, entry] of store) if (entry.payload.grantId === grantId) store.delete(key);
    }
  }

  const provider = new Provider(issuer, {
    adapter: TestAdapter,
    clients: [
      {
        client_id: client.clientId,
        client_secret: client.clientSecret,
        redirect_uris: opts.redirectUris,
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_post',
      },
      {
        client_id: resourceServer.clientId,
        client_secret: resourceServer.clientSecret,
        redirect_uris: [],
        grant_types: [],
        response_types: [],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    // Sign-in takes any login (the account is the address typed in): the pages a test fills in.
    findAccount: async (_ctx: unknown, id: string) => ({
      accountId: id,
      claims: async () => ({ sub: id, email: id, email_verified: true }),
    }),
    claims: { openid: ['sub'], email: ['email', 'email_verified'] },
    scopes: ['openid', 'email', 'offline_access', 'mail'],
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
    },
    // A refresh token for the mail client whether it asked for offline_access or not; a new one at every refresh.
    issueRefreshToken: async () => true,
    rotateRefreshToken: true,
    ttl: {
      AccessToken: opts.accessTokenTtlSeconds ?? 3600,
      AuthorizationCode: 60,
      Grant: 14 * 24 * 3600,
      IdToken: 3600,
      Interaction: 600,
      RefreshToken: 14 * 24 * 3600,
      Session: 3600,
    },
    cookies: { keys: ['test-cookie-key-0123456789'] },
  });
  // The development pages warn at every start; expected here.
  provider.on('server_error', (_ctx: unknown, error: Error) => console.error('oidc-provider:', error));

  // Records what the token and introspection endpoints answered.
  provider.use(async (ctx: any, next: () => Promise<void>) => {
    await next();
    if (ctx.path === '/token' && ctx.status === 200 && ctx.body?.access_token) {
      const grantType = ctx.oidc?.params?.grant_type;
      grants.push({
        grantType,
        accountId: ctx.oidc?.entities?.Account?.accountId ?? ctx.oidc?.entities?.Grant?.accountId,
        accessTokenExpiresAt: Date.now() + Number(ctx.body.expires_in) * 1000,
        accessTokenHash: hashToken(ctx.body.access_token),
      });
    }
    if (ctx.path === '/token/introspection' && ctx.status === 200) {
      const token = ctx.oidc?.params?.token;
      introspections.push({
        active: ctx.body?.active === true,
        tokenHash: typeof token === 'string' ? hashToken(token) : '',
        sub: ctx.body?.sub,
        at: Date.now(),
      });
    }
  });

  const server: Server = createServer(provider.callback());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  const introspectionEndpoint = `${issuer}/token/introspection`;
  const basic = Buffer.from(`${resourceServer.clientId}:${resourceServer.clientSecret}`).toString('base64');

  return {
    issuer,
    port,
    client,
    introspection: {
      ...resourceServer,
      endpoint: introspectionEndpoint,
      urlWithCredentials: `http://${resourceServer.clientId}:${resourceServer.clientSecret}@127.0.0.1:${port}/token/introspection`,
    },
    grants,
    introspections,
    async introspect(token) {
      const response = await fetch(introspectionEndpoint, {
        method: 'POST',
        headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ token }),
      });
      if (!response.ok) throw new Error(`introspection answered ${response.status}`);
      return (await response.json()) as { active: boolean; sub?: string };
    },
    revokeAccount(accountId) {
      const grantIds = new Set<string>();
      for (const [key, entry] of store) {
        if (entry.model === 'Grant' && entry.payload.accountId === accountId) {
          grantIds.add(entry.payload.jti);
          store.delete(key);
        }
      }
      for (const [key, entry] of store) if (grantIds.has(entry.payload.grantId)) store.delete(key);
    },
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
