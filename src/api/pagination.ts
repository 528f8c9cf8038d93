import { z } from '@hono/zod-openapi';
import { sql } from 'kysely';
import { Problem } from './problem.js';

// Cursor pagination, the same on every list: newest first by (created_at, id); `nextCursor` is opaque
// and null on the last page. The cursor names the last row shown, so rows added meanwhile in front
// of it never shift a page, and timestamps keep their full precision (they never leave the database).

export const PageQuerySchema = z.object({
  cursor: z.string().max(200).optional().openapi({ description: 'The nextCursor of the previous page' }),
  limit: z.coerce.number().int().min(1).max(100).default(50).openapi({ description: 'At most this many items (1–100)' }),
});

export function pageSchema<T extends z.ZodType>(item: T, name: string) {
  return z
    .object({
      data: z.array(item),
      nextCursor: z.string().nullable().openapi({ description: 'Pass as `cursor` for the next page; null on the last page' }),
    })
    .openapi(name);
}

const CURSOR_PREFIX = 'c1.';

function encodeCursor(id: string): string {
  return CURSOR_PREFIX + Buffer.from(id).toString('base64url');
}

/** The id of the last row of the previous page; a cursor that is not one of ours is a 422 naming the field. */
export function decodeCursor(cursor: string): string {
  const id = cursor.startsWith(CURSOR_PREFIX)
    ? Buffer.from(cursor.slice(CURSOR_PREFIX.length), 'base64url').toString('utf8')
    : '';
  if (!z.uuid().safeParse(id).success) {
    throw new Problem(422, 'validation', 'Request validation failed', 'invalid query', [
      { field: 'cursor', message: 'not a cursor this API returned' },
    ]);
  }
  return id;
}

/**
 * The condition "after the cursor's row, newest first" for rows of `table` aliased `alias`:
 * `.where(afterCursor('conversations', 'c', cursorId))`.
 */
export function afterCursor(table: string, alias: string, cursorId: string) {
  return sql<boolean>`(${sql.ref(`${alias}.created_at`)}, ${sql.ref(`${alias}.id`)}) < (select created_at, id from ${sql.table(table)} where id = ${cursorId})`;
}

/** One page from rows fetched with limit + 1 (the extra row only says there is more), newest first. */
export function toPage<R extends { id: string }, T>(rows: R[], limit: number, map: (row: R) => T) {
  const page = rows.slice(0, limit);
  const last = page.at(-1);
  return { data: page.map(map), nextCursor: rows.length > limit && last ? encodeCursor(last.id) : null };
}
