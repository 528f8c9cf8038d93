import { sql, type Selectable } from 'kysely';
import type { Db } from '../db/connection.js';
import type { MailboxOAuthGrantsTable } from '../db/schema.js';
import { accessTokenRefreshDue } from '../domain/token-refresh.js';
import { decryptCredential, encryptCredential } from '../security/credentials.js';
import {
  bounded,
  isGrantEnded,
  providerConfiguration,
  providerReason,
  refreshAccessToken,
  type ProviderLocation,
} from './provider-client.js';
import type { DeploymentOAuthClients } from './providers.js';

// A channel's short-lived access tokens for IMAP and SMTP. The current one is kept encrypted on the grant's row,
// so every worker process shares it (one refresh for all of them, and a rotated refresh token is never lost
// to a second process refreshing with the old one); refreshes run under the row's lock, one at a time.

/** The grant needs an admin: revoked or expired at the provider, or the mail server refuses fresh tokens. */
export class ReauthorizationRequiredError extends Error {
  override name = 'ReauthorizationRequiredError';
  constructor(
    readonly channelId: string,
    readonly reason: string,
    readonly since: Date,
  ) {
    super(`the mailbox's OAuth grant needs to be connected again: ${reason}`);
  }
}

/** The provider could not be asked for a token now (down, slow, an unexpected answer): worth a retry. */
export class TokenRefreshFailedError extends Error {
  override name = 'TokenRefreshFailedError';
}

export interface MailboxAccessToken {
  /** The mailbox's address: the user name of the IMAP and SMTP login. */
  user: string;
  accessToken: string;
}

type Grant = Selectable<MailboxOAuthGrantsTable>;

export interface AccessTokenDeps {
  db: Db;
  secretKey: string;
  allowedPrivateNetworks: readonly string[];
  deploymentClients?: DeploymentOAuthClients;
}

/** Where grant's tokens come from, with the client secret it was connected with (its own, or the deployment's). */
export function grantLocation(grant: Grant, secretKey: string, deploymentClients: DeploymentOAuthClients = {}): ProviderLocation {
  const deployment = grant.provider === 'generic' ? undefined : deploymentClients[grant.provider];
  return {
    issuer: grant.issuer,
    tokenEndpoint: grant.token_endpoint,
    revocationEndpoint: grant.revocation_endpoint,
    clientId: grant.client_id,
    clientSecret: grant.client_secret_encrypted
      ? decryptCredential(grant.client_secret_encrypted, secretKey)
      : (deployment?.clientSecret ?? null),
  };
}

export function createAccessTokens({ db, secretKey, allowedPrivateNetworks, deploymentClients }: AccessTokenDeps) {
  const needsRefresh = (grant: Grant, now: number) =>
    !grant.access_token_encrypted ||
    accessTokenRefreshDue({ expiresAt: grant.access_token_expires_at, issuedAt: grant.refreshed_at ?? grant.connected_at }, now);

  /** Marks the grant as needing an admin, with the reason; the caller throws after its transaction commits. */
  const endGrant = (channelId: string, reason: string) =>
    db
      .updateTable('mailbox_oauth_grants')
      .set({
        state: 'reauthorization_required',
        reason: bounded(reason),
        state_since: sql<Date>`now()`,
        access_token_encrypted: null,
        access_token_expires_at: null,
      })
      .where('channel_id', '=', channelId)
      .where('state', '=', 'connected')
      .returning(['reason', 'state_since'])
      .executeTakeFirst();

  return {
    /**
     * The channel's current access token, refreshed first when it is about to expire (or a server refused it).
     * Throws ReauthorizationRequiredError when the grant is gone, TokenRefreshFailedError when the provider is away.
     */
    async accessTokenFor(channelId: string): Promise<MailboxAccessToken> {
      const outcome = await db.transaction().execute(async (trx) => {
        // The lock serialises refreshes of one grant across processes: whoever waited finds the fresh token.
        const grant = await trx
          .selectFrom('mailbox_oauth_grants')
          .selectAll()
          .where('channel_id', '=', channelId)
          .forUpdate()
          .executeTakeFirst();
        if (!grant) return { kind: 'ended', reason: 'the mailbox has no OAuth grant: connect it', since: new Date() } as const;
        if (grant.state !== 'connected') {
          return { kind: 'ended', reason: grant.reason ?? 'reauthorization required', since: grant.state_since } as const;
        }
        if (!needsRefresh(grant, Date.now())) {
          const accessToken = decryptCredential(grant.access_token_encrypted!, secretKey);
          return { kind: 'token', token: { user: grant.account, accessToken } } as const;
        }
        let tokens;
        try {
          const config = await providerConfiguration(grantLocation(grant, secretKey, deploymentClients), allowedPrivateNetworks);
          tokens = await refreshAccessToken(config, decryptCredential(grant.refresh_token_encrypted, secretKey));
        } catch (error) {
          if (isGrantEnded(error)) return { kind: 'refused', reason: providerReason(error) } as const;
          throw new TokenRefreshFailedError(`refreshing the access token failed: ${providerReason(error)}`);
        }
        await trx
          .updateTable('mailbox_oauth_grants')
          .set({
            access_token_encrypted: encryptCredential(tokens.accessToken, secretKey),
            access_token_expires_at: tokens.expiresAt,
            // Rotation: the provider's new refresh token replaces the old, in the same commit as the access token.
            ...(tokens.refreshToken ? { refresh_token_encrypted: encryptCredential(tokens.refreshToken, secretKey) } : {}),
            refreshed_at: sql<Date>`now()`,
            refresh_count: sql<number>`refresh_count + 1`,
            // A refresh forced by a refused token keeps the count: that fresh token refused too ends the grant.
            ...(grant.access_token_encrypted ? { token_refusals: 0 } : {}),
          })
          .where('channel_id', '=', channelId)
          .execute();
        return { kind: 'token', token: { user: grant.account, accessToken: tokens.accessToken } } as const;
      });
      if (outcome.kind === 'token') return outcome.token;
      if (outcome.kind === 'refused') {
        const ended = await endGrant(channelId, `the provider refused to refresh the grant (${outcome.reason})`);
        throw new ReauthorizationRequiredError(channelId, ended?.reason ?? outcome.reason, ended?.state_since ?? new Date());
      }
      throw new ReauthorizationRequiredError(channelId, outcome.reason, outcome.since);
    },

    /**
     * A mail server refused accessToken. The first time it is dropped, so the next use refreshes it; when the fresh
     * one is refused too, the grant needs an admin (e.g. IMAP turned off for the account, or the scope withdrawn).
     */
    async refused(channelId: string, accessToken: string, server: string): Promise<void> {
      const ended = await db.transaction().execute(async (trx) => {
        const grant = await trx
          .selectFrom('mailbox_oauth_grants')
          .select(['access_token_encrypted', 'token_refusals', 'state'])
          .where('channel_id', '=', channelId)
          .forUpdate()
          .executeTakeFirst();
        if (!grant || grant.state !== 'connected' || !grant.access_token_encrypted) return false;
        // Refreshed meanwhile by another session: that newer token has not been refused.
        if (decryptCredential(grant.access_token_encrypted, secretKey) !== accessToken) return false;
        if (grant.token_refusals >= 1) return true;
        await trx
          .updateTable('mailbox_oauth_grants')
          .set({ token_refusals: 1, access_token_encrypted: null, access_token_expires_at: null })
          .where('channel_id', '=', channelId)
          .execute();
        return false;
      });
      if (ended) await endGrant(channelId, `the ${server} server refused a freshly refreshed access token`);
    },

    /** A mail server accepted the current token: a refusal before it counted for nothing. */
    async accepted(channelId: string): Promise<void> {
      await db
        .updateTable('mailbox_oauth_grants')
        .set({ token_refusals: 0 })
        .where('channel_id', '=', channelId)
        .where('token_refusals', '>', 0)
        .execute();
    },
  };
}

export type AccessTokens = ReturnType<typeof createAccessTokens>;
