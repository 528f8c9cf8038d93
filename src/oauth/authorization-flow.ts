import { createHash, randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import * as oidc from 'openid-client';
import type { Db } from '../db/connection.js';
import type { Channel, OAuthProviderName } from '../db/schema.js';
import { decryptCredential, encryptCredential } from '../security/credentials.js';
import {
  bounded,
  exchangeAuthorizationCode,
  providerConfiguration,
  providerReason,
  revokeRefreshToken,
  userInfoEmail,
  type ProviderLocation,
} from './provider-client.js';
import type { DeploymentOAuthClients, ImapServer, SmtpServerAddress } from './providers.js';
import { grantLocation } from './access-tokens.js';

// The authorization-code flow that connects a channel's mailbox: an admin starts it (PKCE S256, a random state
// stored hashed with the admin, the channel and the verifier, valid for minutes), the provider's callback
// finishes it once, and the grant replaces the channel's IMAP (and SMTP) login.

/** How long an admin has to sign in at the provider. */
export const AUTHORIZATION_TTL_MS = 10 * 60_000;
/** Unfinished authorizations per channel; a flood of starts is refused beyond. */
export const MAX_PENDING_PER_CHANNEL = 10;
/** The path of the callback; the redirect URI is PUBLIC_URL followed by it. */
export const OAUTH_CALLBACK_PATH = '/v1/oauth/callback';

/** What the admin asked for, kept with the authorization until the callback. */
export interface RequestedConnection {
  provider: OAuthProviderName;
  location: Omit<ProviderLocation, 'clientSecret'>;
  /** The channel's own client secret, encrypted; null: the deployment's (or a public client). */
  clientSecretEncrypted: string | null;
  scopes: string[];
  /** The mailbox's address when it is not the signing-in account's (e.g. a shared mailbox). */
  username: string | null;
  imap: ImapServer;
  /** Null: the channel's SMTP settings stay as they are. */
  smtp: SmtpServerAddress | null;
}

/** The callback cannot finish: a text for the admin's browser, never a token or secret. */
export class AuthorizationFailedError extends Error {
  override name = 'AuthorizationFailedError';
}

export const hashState = (state: string) => createHash('sha256').update(state).digest('hex');

export interface FlowDeps {
  db: Db;
  secretKey: string;
  allowedPrivateNetworks: readonly string[];
  deploymentClients: DeploymentOAuthClients;
  publicUrl: string;
}

export function redirectUri(publicUrl: string): string {
  return new URL(OAUTH_CALLBACK_PATH, publicUrl).toString();
}

function locationWithSecret(connection: RequestedConnection, deps: FlowDeps): ProviderLocation {
  const deployment = connection.provider === 'generic' ? undefined : deps.deploymentClients[connection.provider];
  return {
    ...connection.location,
    clientSecret: connection.clientSecretEncrypted
      ? decryptCredential(connection.clientSecretEncrypted, deps.secretKey)
      : (deployment?.clientSecret ?? null),
  };
}

/**
 * Stores a new authorization for (admin, channel) and returns the provider's authorization URL.
 * Throws ProviderConfigurationError when the provider cannot be used as given.
 */
export async function startAuthorization(
  deps: FlowDeps,
  input: { userId: string; channelId: string; connection: RequestedConnection; authorizationParams: Record<string, string> },
): Promise<{ authorizationUrl: string; expiresAt: Date } | { tooMany: true }> {
  const config = await providerConfiguration(locationWithSecret(input.connection, deps), deps.allowedPrivateNetworks);
  await deps.db
    .deleteFrom('oauth_authorizations')
    .where('expires_at', '<', sql<Date>`now() - interval '1 day'`)
    .execute();
  const pending = await deps.db
    .selectFrom('oauth_authorizations')
    .select((eb) => eb.fn.countAll<string>().as('count'))
    .where('channel_id', '=', input.channelId)
    .where('used_at', 'is', null)
    .where('expires_at', '>', sql<Date>`now()`)
    .executeTakeFirstOrThrow();
  if (Number(pending.count) >= MAX_PENDING_PER_CHANNEL) return { tooMany: true };
  const state = oidc.randomState();
  const codeVerifier = oidc.randomPKCECodeVerifier();
  const nonce = oidc.randomNonce();
  const expiresAt = new Date(Date.now() + AUTHORIZATION_TTL_MS);
  await deps.db
    .insertInto('oauth_authorizations')
    .values({
      id: randomUUID(),
      state_hash: hashState(state),
      user_id: input.userId,
      channel_id: input.channelId,
      code_verifier_encrypted: encryptCredential(codeVerifier, deps.secretKey),
      nonce,
      connection: JSON.stringify(input.connection),
      expires_at: expiresAt,
    })
    .execute();
  const url = oidc.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri(deps.publicUrl),
    response_type: 'code',
    scope: input.connection.scopes.join(' '),
    state,
    ...(input.connection.scopes.includes('openid') ? { nonce } : {}),
    code_challenge: await oidc.calculatePKCECodeChallenge(codeVerifier),
    code_challenge_method: 'S256',
    ...(input.connection.username ? { login_hint: input.connection.username } : {}),
    ...input.authorizationParams,
  });
  return { authorizationUrl: url.toString(), expiresAt };
}

/** The connection as finished: which channel got which account. */
export interface FinishedConnection {
  channel: Channel;
  account: string;
  /** The channel's IMAP login changed to another server or account: its folders are read from their end again. */
  mailboxChanged: boolean;
}

/**
 * Finishes the authorization the callback names: state known, unused and unexpired (it is used up here, whatever
 * follows), the admin still an admin of the channel's account, the code exchanged with the PKCE verifier. Then the
 * grant is stored and the channel's IMAP (and SMTP) login becomes OAuth. Throws AuthorizationFailedError.
 */
export async function finishAuthorization(deps: FlowDeps, callbackUrl: URL): Promise<FinishedConnection> {
  const params = callbackUrl.searchParams;
  const state = params.get('state');
  if (!state)
    throw new AuthorizationFailedError('The answer from the provider carries no state. Start connecting the mailbox again.');
  const stateHash = hashState(state);
  const authorization = await deps.db
    .updateTable('oauth_authorizations')
    .set({ used_at: sql<Date>`now()` })
    .where('state_hash', '=', stateHash)
    .where('used_at', 'is', null)
    .returningAll()
    .executeTakeFirst();
  if (!authorization) {
    const known = await deps.db
      .selectFrom('oauth_authorizations')
      .select('id')
      .where('state_hash', '=', stateHash)
      .executeTakeFirst();
    throw new AuthorizationFailedError(
      known
        ? 'This authorization was used already. Start connecting the mailbox again.'
        : 'This authorization is unknown (its state matches none that was started). Start connecting the mailbox again.',
    );
  }
  if (authorization.expires_at.getTime() < Date.now()) {
    throw new AuthorizationFailedError(
      'This authorization has expired (it is valid for 10 minutes). Start connecting the mailbox again.',
    );
  }
  const providerError = params.get('error');
  if (providerError) {
    const description = params.get('error_description');
    throw new AuthorizationFailedError(
      `The provider did not authorize the mailbox: ${bounded(description ? `${providerError}: ${description}` : providerError)}`,
    );
  }
  const channel = await deps.db
    .selectFrom('channels')
    .innerJoin('users', 'users.account_id', 'channels.account_id')
    .selectAll('channels')
    .where('channels.id', '=', authorization.channel_id)
    .where('channels.deleted_at', 'is', null)
    .where('users.id', '=', authorization.user_id)
    .where('users.role', '=', 'admin')
    .executeTakeFirst();
  if (!channel) {
    throw new AuthorizationFailedError('The admin who started this authorization can no longer configure the channel.');
  }
  const connection = authorization.connection as RequestedConnection;
  let tokens;
  let config;
  try {
    config = await providerConfiguration(locationWithSecret(connection, deps), deps.allowedPrivateNetworks);
    // The code is exchanged at the redirect URI it was sent to, whatever host name the request came in by.
    const current = new URL(redirectUri(deps.publicUrl));
    current.search = callbackUrl.search;
    tokens = await exchangeAuthorizationCode(config, current, {
      codeVerifier: decryptCredential(authorization.code_verifier_encrypted, deps.secretKey),
      state,
      nonce: connection.scopes.includes('openid') ? authorization.nonce : undefined,
    });
  } catch (error) {
    throw new AuthorizationFailedError(`The provider did not give a grant for the mailbox: ${providerReason(error)}`);
  }
  if (!tokens.refreshToken) {
    throw new AuthorizationFailedError(
      'The provider gave no refresh token, so the mailbox could only be read for an hour. Allow offline access and start again.',
    );
  }
  // The admin's word first (a shared mailbox), then the ID token, userinfo, and Microsoft's sign-in name.
  const account =
    connection.username ??
    tokens.email ??
    (tokens.subject ? await userInfoEmail(config, tokens.accessToken, tokens.subject) : undefined) ??
    (connection.provider === 'microsoft' ? tokens.preferredUsername : undefined);
  // eslint-disable-next-line no-control-regex -- an address with a control character is no mailbox name
  if (!account || account.length > 255 || /[\s\u0000-\u001f]/.test(account)) {
    throw new AuthorizationFailedError(
      'The provider did not name the mailbox (no email in the ID token). Start again and give the mailbox address as username.',
    );
  }
  const grant = {
    provider: connection.provider,
    issuer: connection.location.issuer,
    token_endpoint: connection.location.issuer ? null : connection.location.tokenEndpoint,
    revocation_endpoint: connection.location.issuer ? null : connection.location.revocationEndpoint,
    client_id: connection.location.clientId,
    client_secret_encrypted: connection.clientSecretEncrypted,
    scopes: connection.scopes.join(' '),
    account,
    refresh_token_encrypted: encryptCredential(tokens.refreshToken, deps.secretKey),
    access_token_encrypted: encryptCredential(tokens.accessToken, deps.secretKey),
    access_token_expires_at: tokens.expiresAt,
    token_refusals: 0,
    state: 'connected' as const,
    reason: null,
    state_since: sql<Date>`now()`,
    connected_at: sql<Date>`now()`,
    refreshed_at: null,
  };
  const mailboxChanged =
    channel.imap_host?.toLowerCase() !== connection.imap.host.toLowerCase() || channel.imap_username !== account;
  // A grant it replaces is not revoked: at Google and many others that would end the new grant of the same account too.
  const updated = await deps.db.transaction().execute(async (trx) => {
    await trx
      .insertInto('mailbox_oauth_grants')
      .values({ channel_id: channel.id, ...grant })
      .onConflict((oc) => oc.column('channel_id').doUpdateSet({ ...grant, refresh_count: 0 }))
      .execute();
    // Another account's mailbox has other folders: its UID cursors would mean nothing there.
    if (mailboxChanged) await trx.deleteFrom('imap_cursors').where('channel_id', '=', channel.id).execute();
    return trx
      .updateTable('channels')
      .set({
        imap_enabled: true,
        imap_auth: 'oauth2',
        imap_host: connection.imap.host,
        imap_port: connection.imap.port,
        imap_tls: connection.imap.tls,
        imap_username: account,
        imap_password_encrypted: null,
        ...(connection.smtp
          ? {
              smtp_auth: 'oauth2' as const,
              smtp_host: connection.smtp.host,
              smtp_port: connection.smtp.port,
              smtp_secure: connection.smtp.secure,
              smtp_username: account,
              smtp_password_encrypted: null,
            }
          : {}),
      })
      .where('id', '=', channel.id)
      .returningAll()
      .executeTakeFirstOrThrow();
  });
  return { channel: updated, account, mailboxChanged };
}

/** Revokes a grant's refresh token at its provider, where it has a revocation endpoint; whether it did. */
export async function revokeGrant(
  deps: Pick<FlowDeps, 'secretKey' | 'allowedPrivateNetworks' | 'deploymentClients'>,
  grant: Parameters<typeof grantLocation>[0],
): Promise<boolean> {
  const config = await providerConfiguration(
    grantLocation(grant, deps.secretKey, deps.deploymentClients),
    deps.allowedPrivateNetworks,
  );
  return revokeRefreshToken(config, decryptCredential(grant.refresh_token_encrypted, deps.secretKey));
}
