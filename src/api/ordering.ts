import { sql, type Transaction } from 'kysely';
import type { Database } from '../db/schema.js';
import { Problem } from './problem.js';

// A channel's positioned lists (AI agents, routing rules): positions are always 0..n-1 without gaps,
// rewritten under the channel's row lock so that concurrent inserts, moves and reorders serialize.

export type PositionedTable = 'ai_agents' | 'routing_rules';

/** Takes the channel's row lock for the rest of the transaction. */
export async function lockChannel(trx: Transaction<Database>, channelId: string): Promise<void> {
  await trx.selectFrom('channels').select('id').where('id', '=', channelId).forUpdate().executeTakeFirstOrThrow();
}

/** The ids of the channel's rows in their order (the order the workflow reads them in). */
export async function orderedIds(trx: Transaction<Database>, table: PositionedTable, channelId: string): Promise<string[]> {
  const { rows } = await sql<{ id: string }>`
    select id from ${sql.table(table)} where channel_id = ${channelId} order by position, created_at, id
  `.execute(trx);
  return rows.map((row) => row.id);
}

/** The position after the last row: where a new row goes before placeAt moves it. */
export async function endPosition(trx: Transaction<Database>, table: PositionedTable, channelId: string): Promise<number> {
  const { rows } = await sql<{ count: string }>`
    select count(*) as count from ${sql.table(table)} where channel_id = ${channelId}
  `.execute(trx);
  return Number(rows[0]?.count ?? 0);
}

/** Positions 0..n-1 in the order of `ids`, in one statement. */
async function writeOrder(trx: Transaction<Database>, table: PositionedTable, channelId: string, ids: string[]): Promise<void> {
  if (ids.length === 0) return;
  const values = sql.join(ids.map((id, index) => sql`(${id}::uuid, ${index}::integer)`));
  await sql`
    update ${sql.table(table)} as t set position = o.position
    from (values ${values}) as o(id, position)
    where t.id = o.id and t.channel_id = ${channelId} and t.position is distinct from o.position
  `.execute(trx);
}

/**
 * Moves the row to index `position` (beyond the end: last; undefined: where it is) and closes gaps,
 * e.g. after an insert at the end or a delete. Call under lockChannel.
 */
export async function placeAt(
  trx: Transaction<Database>,
  table: PositionedTable,
  channelId: string,
  id: string | null,
  position?: number,
): Promise<void> {
  const ids = await orderedIds(trx, table, channelId);
  if (id !== null && position !== undefined) {
    const others = ids.filter((other) => other !== id);
    others.splice(Math.min(position, others.length), 0, id);
    return writeOrder(trx, table, channelId, others);
  }
  return writeOrder(trx, table, channelId, ids);
}

/**
 * Puts the channel's rows in the order of `ids`, which must name each of them exactly once;
 * anything else is a 422 naming `ids`. Call under lockChannel.
 */
export async function reorder(
  trx: Transaction<Database>,
  table: PositionedTable,
  channelId: string,
  ids: string[],
  what: string,
): Promise<void> {
  const current = await orderedIds(trx, table, channelId);
  const known = new Set(current);
  const seen = new Set<string>();
  const errors: Array<{ field: string; message: string }> = [];
  ids.forEach((id, index) => {
    if (seen.has(id)) errors.push({ field: 'ids', message: `${id} is listed more than once (at ${index})` });
    else if (!known.has(id)) errors.push({ field: 'ids', message: `${id} (at ${index}) is not one of this channel's ${what}` });
    seen.add(id);
  });
  const missing = current.filter((id) => !seen.has(id));
  if (missing.length > 0) errors.push({ field: 'ids', message: `missing ${missing.join(', ')}: list every one of the ${what}` });
  if (errors.length > 0) {
    throw new Problem(
      422,
      'validation',
      'Request validation failed',
      `ids must list each of the channel's ${current.length} ${what} exactly once`,
      errors,
    );
  }
  await writeOrder(trx, table, channelId, ids);
}
