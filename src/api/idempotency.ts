import { createHash } from 'node:crypto';
import { z } from '@hono/zod-openapi';
import { createMiddleware } from 'hono/factory';
import { sql } from 'kysely';
import type { Db } from '../db/connection.js';
import { decryptCredential, encryptCredential } from '../security/credentials.js';
import type { AppEnv } from './env.js';
import { Problem } from './problem.js';

// Idempotency-Key (IETF draft-ietf-httpapi-idempotency-key-header) on the POSTs that create or send:
// a client that retries after a timeout gets the first answer again instead of a second conversation
// or a second mail. Keys are per user and remembered for 24 hours. The stored answer is encrypted: some
// answers carry a secret shown once (a new API key, a forwarder secret).

export const IDEMPOTENCY_HEADER = 'idempotency-key';
const REMEMBERED_FOR = '24 hours';

/** Add to `request.headers` of a route that honours the header, so the OpenAPI document shows it. */
export const IdempotencyHeadersSchema = z.object({
  'idempotency-key': z
    .string()
    .min(1)
    .max(255)
    .optional()
    .openapi({
      description:
        'Any unique string (a UUID): repeating the request with the same key within 24 hours answers the first response again, ' +
        'with `Idempotent-Replayed: true`, and does nothing twice.',
    }),
});

/** The conversation a request path is about (`/v1/conversations/{id}/…`), so that its erasure finds the stored response. */
function conversationOfPath(path: string): string | null {
  return /^\/v1\/conversations\/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})(?:\/|$)/i.exec(path)?.[1] ?? null;
}

/** Runs after authentication; a no-op without the header. */
export function idempotency(db: Db, secretKey: string) {
  return createMiddleware<AppEnv>(async (c, next) => {
    const key = c.req.header(IDEMPOTENCY_HEADER);
    if (key === undefined || c.req.method !== 'POST') return next();
    if (key.length === 0 || key.length > 255) {
      throw new Problem(422, 'validation', 'Request validation failed', 'invalid header', [
        { field: 'Idempotency-Key', message: 'must be 1 to 255 characters' },
      ]);
    }
    const user = c.get('user');
    const requestHash = createHash('sha256')
      .update(`${c.req.method} ${c.req.path}\n`)
      .update(await c.req.text())
      .digest('hex');

    await db
      .deleteFrom('idempotency_keys')
      .where('user_id', '=', user.id)
      .where('key', '=', key)
      .where('created_at', '<', sql<Date>`now() - ${REMEMBERED_FOR}::interval`)
      .execute();
    const claimed = await db
      .insertInto('idempotency_keys')
      .values({ user_id: user.id, key, request_hash: requestHash, conversation_id: conversationOfPath(c.req.path) })
      .onConflict((oc) => oc.columns(['user_id', 'key']).doNothing())
      .returning('key')
      .executeTakeFirst();

    if (!claimed) {
      const first = await db
        .selectFrom('idempotency_keys')
        .selectAll()
        .where('user_id', '=', user.id)
        .where('key', '=', key)
        .executeTakeFirst();
      if (!first) throw new Problem(409, 'idempotency-conflict', 'Request in progress', 'retry with the same Idempotency-Key');
      if (first.request_hash !== requestHash) {
        throw new Problem(
          422,
          'idempotency-key-reused',
          'Idempotency-Key reused',
          'this Idempotency-Key was used for a different request; use a new key for a new request',
        );
      }
      if (first.response_status === null) {
        throw new Problem(
          409,
          'idempotency-conflict',
          'Request in progress',
          'the first request with this Idempotency-Key is still running',
        );
      }
      const body = first.response_body === null ? '' : decryptCredential(first.response_body, secretKey);
      return c.body(body, first.response_status as 200, {
        'content-type': first.response_content_type ?? 'application/json',
        'idempotent-replayed': 'true',
      });
    }

    try {
      await next();
    } catch (error) {
      await forget(db, user.id, key);
      throw error;
    }
    // Problems are thrown and turned into responses by the app's error handler after this point,
    // so c.res here is a success or a client error the route answered itself.
    if (c.error || c.res.status >= 500) {
      // Not an answer worth repeating: the client may retry with the same key.
      await forget(db, user.id, key);
      return;
    }
    await db
      .updateTable('idempotency_keys')
      .set({
        response_status: c.res.status,
        response_content_type: c.res.headers.get('content-type'),
        response_body: encryptCredential(await c.res.clone().text(), secretKey),
      })
      .where('user_id', '=', user.id)
      .where('key', '=', key)
      .execute();
  });
}

async function forget(db: Db, userId: string, key: string) {
  await db.deleteFrom('idempotency_keys').where('user_id', '=', userId).where('key', '=', key).execute();
}
