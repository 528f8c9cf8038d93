// PostgreSQL's own account of what a workload wrote, per table: rows inserted, updated and deleted
// (pg_stat_user_tables) and the bytes the table takes with its indexes and TOAST (pg_total_relation_size), before and
// after. The row counters reach the shared statistics when a backend's transaction ends (at most once a second) or it
// exits: the benchmark reads them after the processes of the workload stopped.
import { sql } from 'kysely';
import type { Db } from '../src/db/connection.js';

export interface TableUsage {
  inserted: number;
  updated: number;
  deleted: number;
  bytes: number;
}

export type DatabaseUsage = Record<string, TableUsage>;

export async function databaseUsage(db: Db): Promise<DatabaseUsage> {
  const { rows } = await sql<{ table: string; inserted: string; updated: string; deleted: string; bytes: string }>`
    select relname as "table", n_tup_ins as inserted, n_tup_upd as updated, n_tup_del as deleted,
           pg_total_relation_size(relid) as bytes
      from pg_stat_user_tables`.execute(db);
  return Object.fromEntries(
    rows.map((row) => [
      row.table,
      { inserted: Number(row.inserted), updated: Number(row.updated), deleted: Number(row.deleted), bytes: Number(row.bytes) },
    ]),
  );
}

/** What changed from `before` to `after`, tables that did not change left out. */
export function usageDelta(before: DatabaseUsage, after: DatabaseUsage): DatabaseUsage {
  const delta: DatabaseUsage = {};
  for (const [table, now] of Object.entries(after)) {
    const then = before[table] ?? { inserted: 0, updated: 0, deleted: 0, bytes: 0 };
    const change = {
      inserted: now.inserted - then.inserted,
      updated: now.updated - then.updated,
      deleted: now.deleted - then.deleted,
      bytes: now.bytes - then.bytes,
    };
    if (Object.values(change).some((value) => value !== 0)) delta[table] = change;
  }
  return delta;
}

/** The sum of several workloads' deltas, table by table. */
export function sumUsage(deltas: DatabaseUsage[]): DatabaseUsage {
  const sum: DatabaseUsage = {};
  for (const delta of deltas) {
    for (const [table, change] of Object.entries(delta)) {
      const total = (sum[table] ??= { inserted: 0, updated: 0, deleted: 0, bytes: 0 });
      total.inserted += change.inserted;
      total.updated += change.updated;
      total.deleted += change.deleted;
      total.bytes += change.bytes;
    }
  }
  return sum;
}

/** All tables together. */
export function totalUsage(usage: DatabaseUsage): TableUsage {
  return sumUsage(Object.values(usage).map((table) => ({ all: table }))).all ?? { inserted: 0, updated: 0, deleted: 0, bytes: 0 };
}
