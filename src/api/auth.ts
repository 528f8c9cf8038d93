import { randomBytes } from 'node:crypto';
import { getConnInfo } from '@hono/node-server/conninfo';
import type { MiddlewareHandler } from 'hono';
import { createMiddleware } from 'hono/factory';
import { isLoopbackAddress } from '../security/destinations.js';
import type { Db } from '../db/connection.js';
import { hashSecret } from '../security/secret-hash.js';
import type { AppEnv, AuthenticatedUser } from './env.js';
import { Problem } from './problem.js';
import { rateLimited, type RateLimiter } from './rate-limit.js';

const API_KEY_PREFIX = 'mr_';

/** A new API key and what is stored of it; the key itself is shown once. */
export function generateApiKey(): { key: string; hash: string; prefix: string } {
  const key = `${API_KEY_PREFIX}${randomBytes(24).toString('base64url')}`;
  return { key, hash: hashSecret(key), prefix: key.slice(0, API_KEY_PREFIX.length + 6) };
}

function bearerToken(header: string | undefined): string | undefined {
  const match = /^Bearer\s+(\S+)$/i.exec(header ?? '');
  return match?.[1];
}

/**
 * Every /v1 route but the forwarder's: the caller is a user of one account, by an API key that is not revoked.
 * Each key has its own rate limit, checked before anything else (the database included).
 */
export function requireApiKey(db: Db, perApiKey: RateLimiter) {
  return createMiddleware<AppEnv>(async (c, next) => {
    const key = bearerToken(c.req.header('authorization'));
    if (!key)
      throw new Problem(401, 'unauthenticated', 'Authentication required', 'send the API key as "Authorization: Bearer <key>"');
    const keyHash = hashSecret(key);
    const verdict = perApiKey.take(keyHash);
    if (!verdict.allowed) {
      throw rateLimited(
        `at most ${perApiKey.perMinute} requests a minute with this API key; retry after ${verdict.retryAfterSeconds} s`,
        verdict.retryAfterSeconds,
      );
    }
    const found = await db
      .selectFrom('api_keys as k')
      .innerJoin('users as u', 'u.id', 'k.user_id')
      .select(['k.id as key_id', 'k.last_used_at', 'u.id', 'u.account_id', 'u.name', 'u.role'])
      .where('k.key_hash', '=', keyHash)
      .where('k.revoked_at', 'is', null)
      .executeTakeFirst();
    if (!found) throw new Problem(401, 'unauthenticated', 'Authentication required', 'the API key is unknown or revoked');
    // "Last used" to the minute: one write per key and minute, not one per request.
    if (!found.last_used_at || Date.now() - found.last_used_at.getTime() > 60_000) {
      await db.updateTable('api_keys').set({ last_used_at: new Date() }).where('id', '=', found.key_id).execute();
    }
    c.set('user', { id: found.id, accountId: found.account_id, name: found.name, role: found.role });
    await next();
  });
}

/** Requests from this machine pass; any other caller needs what `requireKey` checks. */
export function loopbackOrApiKey(requireKey: MiddlewareHandler<AppEnv>) {
  return createMiddleware<AppEnv>(async (c, next) => {
    return isLoopbackAddress(getConnInfo(c).remote.address) ? next() : requireKey(c, next);
  });
}

/**
 * The forwarder's credential: the channel secret, as a bearer token or as the password of
 * HTTP Basic auth (what MTAs and inbound-mail services put in a URL).
 */
export function forwarderSecret(header: string | undefined): string | undefined {
  const bearer = bearerToken(header);
  if (bearer) return bearer;
  const basic = /^Basic\s+(\S+)$/i.exec(header ?? '')?.[1];
  if (!basic) return undefined;
  const decoded = Buffer.from(basic, 'base64').toString('utf8');
  return decoded.slice(decoded.indexOf(':') + 1);
}

/** Configuration is the admin's (A2); agents read and answer conversations. Within the account: 403. */
export function requireAdmin(user: AuthenticatedUser, action: string): void {
  if (user.role !== 'admin') throw new Problem(403, 'forbidden', 'Admins only', `only an admin ${action}`);
}
