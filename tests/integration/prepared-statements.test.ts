import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createScratchDatabase, type ScratchDatabase } from '../../scripts/servers/scratch-database.js';
import type { Database } from '../../src/db/schema.js';

// connectPostgres prepares each statement text once per connection: the server keeps it under a name and later calls
// only bind and execute it. Checked on the server itself (pg_prepared_statements lists what this session prepared).
describe('prepared statements on PostgreSQL', () => {
  let database: ScratchDatabase;

  beforeAll(async () => {
    database = await createScratchDatabase(inject('databaseUrl'), { prefix: 'mailroom_test', maxConnections: 1 });
  });

  afterAll(async () => {
    await database?.drop();
  });

  const preparedHere = async () =>
    (await sql<{ name: string; statement: string }>`select name, statement from pg_prepared_statements`.execute(database.db))
      .rows;

  it('prepares a statement on its first run, reuses it after, and answers each call with its own values', async () => {
    const text = (value: number) => sql<{ doubled: number }>`select ${value}::int * 2 as doubled`.execute(database.db);
    expect((await text(2)).rows).toEqual([{ doubled: 4 }]);
    expect((await text(21)).rows).toEqual([{ doubled: 42 }]);
    const prepared = (await preparedHere()).filter((row) => row.statement.includes('as doubled'));
    expect(prepared).toHaveLength(1);
    expect(prepared[0]!.name).toMatch(/^mailroom_\d+$/);
  });

  it('runs statements in transactions and reports their errors as before', async () => {
    await database.db.transaction().execute(async (trx) => {
      await sql`create temporary table numbers (n int primary key)`.execute(trx);
      await sql`insert into numbers values (${1})`.execute(trx);
      // The same prepared insert, refused by the server with its own words; the transaction is rolled back.
      await expect(sql`insert into numbers values (${1})`.execute(trx)).rejects.toThrow(/duplicate key/);
    });
    const { rows } = await sql<{ n: number }>`select ${7}::int as n`.execute(database.db);
    expect(rows).toEqual([{ n: 7 }]);
  });

  it('answers with the new columns after a migration changed a table under a prepared statement', async () => {
    await sql`create table changing (id int primary key)`.execute(database.db);
    await sql`insert into changing values (1)`.execute(database.db);
    const all = (db: Kysely<Database> = database.db) =>
      sql<Record<string, unknown>>`select * from changing where id = ${1}`.execute(db);
    expect((await all()).rows).toEqual([{ id: 1 }]);
    await sql`alter table changing add column label text not null default 'new'`.execute(database.db);
    expect((await all()).rows).toEqual([{ id: 1, label: 'new' }]);

    // In a transaction the changed statement fails it once; the next call, outside, answers again.
    await sql`alter table changing add column note text`.execute(database.db);
    await expect(database.db.transaction().execute((trx) => all(trx))).rejects.toThrow(/must not change result type/);
    expect((await all()).rows).toEqual([{ id: 1, label: 'new', note: null }]);
  });
});
