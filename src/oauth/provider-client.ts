import { createHash } from 'node:crypto';
import * as oidc from 'openid-client';
import { refusedRange, resolveDestination } from '../security/destinations.js';
import { providerFetch, ProviderResponseTooLargeError } from './provider-http.js';

// One OAuth provider as openid-client sees it (authorization code with PKCE, refresh, revocation), reached only
// through providerFetch: the destination policy, bounded answers, a deadline.

/** Where a grant's tokens come from and which client asks for them. */
export interface ProviderLocation {
  /** An issuer to discover the endpoints from (presets, generic providers with discovery). */
  issuer: string | null;
  authorizationEndpoint?: string | null;
  tokenEndpoint: string | null;
  revocationEndpoint: string | null;
  clientId: string;
  /** Null: a public client (PKCE only). */
  clientSecret: string | null;
}

/** The provider cannot be used as configured: a URL that is not https, a host the policy refuses, discovery failing. */
export class ProviderConfigurationError extends Error {
  override name = 'ProviderConfigurationError';
  constructor(
    message: string,
    /** The request field that names the provider's URL, for the API's 422. */
    readonly field: string,
  ) {
    super(message);
  }
}

/** What a provider's error answer says, bounded and on one line (it is shown in the API and the Temporal UI). */
export const MAX_REASON_CHARS = 300;

export function providerReason(error: unknown): string {
  if (error instanceof oidc.ResponseBodyError) {
    const described = error.error_description ? `${error.error}: ${error.error_description}` : error.error;
    return bounded(described);
  }
  if (error instanceof oidc.AuthorizationResponseError) {
    return bounded(error.error_description ? `${error.error}: ${error.error_description}` : error.error);
  }
  if (error instanceof ProviderResponseTooLargeError) return bounded(error.message);
  const cause = (error as { cause?: unknown }).cause;
  if (cause instanceof ProviderResponseTooLargeError) return bounded(cause.message);
  return bounded(`the OAuth provider could not be reached or answered unexpectedly (${(error as Error).message ?? 'unknown'})`);
}

/** Whether the grant itself is gone (revoked, expired, the client no longer allowed): only an admin can renew it. */
export function isGrantEnded(error: unknown): boolean {
  return (
    error instanceof oidc.ResponseBodyError && ['invalid_grant', 'invalid_client', 'unauthorized_client'].includes(error.error)
  );
}

export function bounded(text: string): string {
  // eslint-disable-next-line no-control-regex
  const line = text.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
  return line.length > MAX_REASON_CHARS ? `${line.slice(0, MAX_REASON_CHARS - 1)}…` : line;
}

/**
 * Whether plain http may be used for url: only to a host inside a private network the operator allowed
 * (ALLOWED_PRIVATE_NETWORKS, e.g. loopback for tests); anything on the internet needs https.
 */
async function checkedProviderUrl(url: string, field: string, allowedPrivateNetworks: readonly string[]): Promise<boolean> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ProviderConfigurationError(`${url} is not a URL`, field);
  }
  if (parsed.username || parsed.password) throw new ProviderConfigurationError('the URL must not carry credentials', field);
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') {
    throw new ProviderConfigurationError('the URL must be https', field);
  }
  let address: string;
  try {
    address = (await resolveDestination(parsed.hostname.replace(/^\[|\]$/g, ''), allowedPrivateNetworks)).address;
  } catch (error) {
    throw new ProviderConfigurationError((error as Error).message, field);
  }
  if (parsed.protocol === 'https:') return false;
  if (refusedRange(address, []) === undefined) throw new ProviderConfigurationError('the URL must be https', field);
  return true;
}

// Discovery documents change rarely; one per issuer and client for a few minutes saves a request per refresh.
const DISCOVERY_TTL_MS = 10 * 60_000;
const MAX_CACHED = 500;
const discovered = new Map<string, { config: oidc.Configuration; until: number }>();

/** openid-client's configuration for location, by discovery or from the endpoints given. */
export async function providerConfiguration(
  location: ProviderLocation,
  allowedPrivateNetworks: readonly string[],
): Promise<oidc.Configuration> {
  const cacheKey = createHash('sha256').update(JSON.stringify(location)).digest('hex');
  const cached = discovered.get(cacheKey);
  if (cached && cached.until > Date.now()) return cached.config;
  const fetch = providerFetch(allowedPrivateNetworks) as unknown as oidc.CustomFetch;
  let config: oidc.Configuration;
  if (location.issuer) {
    const insecure = await checkedProviderUrl(location.issuer, 'issuer', allowedPrivateNetworks);
    try {
      config = await oidc.discovery(new URL(location.issuer), location.clientId, location.clientSecret ?? undefined, undefined, {
        [oidc.customFetch]: fetch,
        ...(insecure ? { execute: [oidc.allowInsecureRequests] } : {}),
      });
    } catch (error) {
      if (error instanceof ProviderConfigurationError) throw error;
      throw new ProviderConfigurationError(`discovery at ${location.issuer} failed: ${providerReason(error)}`, 'issuer');
    }
    // Endpoints the discovery document names are dialled too: they must pass the same policy.
    const metadata = config.serverMetadata();
    for (const [field, url] of [
      ['issuer', metadata.authorization_endpoint],
      ['issuer', metadata.token_endpoint],
    ] as const) {
      if (!url)
        throw new ProviderConfigurationError(`discovery at ${location.issuer} names no token or authorization endpoint`, field);
      await checkedProviderUrl(url, field, allowedPrivateNetworks);
    }
  } else {
    if (!location.tokenEndpoint) throw new ProviderConfigurationError('a token endpoint is needed', 'tokenEndpoint');
    const insecure = await checkedProviderUrl(location.tokenEndpoint, 'tokenEndpoint', allowedPrivateNetworks);
    if (location.revocationEndpoint)
      await checkedProviderUrl(location.revocationEndpoint, 'revocationEndpoint', allowedPrivateNetworks);
    config = new oidc.Configuration(
      {
        issuer: new URL(location.tokenEndpoint).origin,
        token_endpoint: location.tokenEndpoint,
        ...(location.authorizationEndpoint ? { authorization_endpoint: location.authorizationEndpoint } : {}),
        ...(location.revocationEndpoint ? { revocation_endpoint: location.revocationEndpoint } : {}),
      },
      location.clientId,
      location.clientSecret ?? undefined,
    );
    config[oidc.customFetch] = fetch;
    if (insecure) oidc.allowInsecureRequests(config);
  }
  if (discovered.size >= MAX_CACHED) discovered.delete(discovered.keys().next().value!);
  discovered.set(cacheKey, { config, until: Date.now() + DISCOVERY_TTL_MS });
  return config;
}

/** Tokens as a grant keeps them. */
export interface GrantedTokens {
  accessToken: string;
  expiresAt: Date;
  /** Absent when the provider keeps the refresh token as it was (no rotation). */
  refreshToken?: string;
  /** The account's address from the ID token, where the provider sent one. */
  email?: string;
  /** The ID token's subject and preferred_username (Microsoft's sign-in name, usually the address). */
  subject?: string;
  preferredUsername?: string;
}

// A provider that names no lifetime: assume an hour, as Google and Microsoft give.
const DEFAULT_LIFETIME_S = 3600;

function grantedTokens(response: oidc.TokenEndpointResponse & oidc.TokenEndpointResponseHelpers): GrantedTokens {
  const claims = response.id_token ? response.claims() : undefined;
  const text = (claim: unknown) => (typeof claim === 'string' && claim ? claim : undefined);
  const email = text(claims?.email);
  const preferredUsername = text(claims?.preferred_username);
  return {
    accessToken: response.access_token,
    expiresAt: new Date(Date.now() + (response.expiresIn() ?? DEFAULT_LIFETIME_S) * 1000),
    ...(response.refresh_token ? { refreshToken: response.refresh_token } : {}),
    ...(email ? { email } : {}),
    ...(claims?.sub ? { subject: claims.sub } : {}),
    ...(preferredUsername ? { preferredUsername } : {}),
  };
}

/** The authorization code from the callback, exchanged with the PKCE verifier; state and nonce checked. */
export async function exchangeAuthorizationCode(
  config: oidc.Configuration,
  callbackUrl: URL,
  checks: { codeVerifier: string; state: string; nonce: string | undefined },
): Promise<GrantedTokens> {
  const response = await oidc.authorizationCodeGrant(config, callbackUrl, {
    pkceCodeVerifier: checks.codeVerifier,
    expectedState: checks.state,
    ...(checks.nonce ? { expectedNonce: checks.nonce } : {}),
    idTokenExpected: false,
  });
  return grantedTokens(response);
}

/** The account's address from the userinfo endpoint, where the provider has one and the token may read it. */
export async function userInfoEmail(
  config: oidc.Configuration,
  accessToken: string,
  subject: string,
): Promise<string | undefined> {
  if (!config.serverMetadata().userinfo_endpoint) return undefined;
  try {
    const info = await oidc.fetchUserInfo(config, accessToken, subject);
    return typeof info.email === 'string' && info.email ? info.email : undefined;
  } catch {
    return undefined; // e.g. Microsoft's userinfo wants a Graph token, not the mailbox's
  }
}

export async function refreshAccessToken(config: oidc.Configuration, refreshToken: string): Promise<GrantedTokens> {
  return grantedTokens(await oidc.refreshTokenGrant(config, refreshToken));
}

/** Revokes the refresh token where the provider has a revocation endpoint; false where it has none. */
export async function revokeRefreshToken(config: oidc.Configuration, refreshToken: string): Promise<boolean> {
  if (!config.serverMetadata().revocation_endpoint) return false;
  await oidc.tokenRevocation(config, refreshToken, { token_type_hint: 'refresh_token' });
  return true;
}
