import { type Kysely, sql } from 'kysely';

// Activities that change the database run once per activity execution: the first attempt's result is kept
// with its effects (same transaction), and a retry of an attempt that committed (its worker died before it
// could report) gets that result instead of doing it again. Kept a day: far longer than any retry of a
// committed attempt takes.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('activity_effects')
    // The workflow run and the activity's id, which every attempt of one activity execution shares.
    .addColumn('key', 'text', (c) => c.primaryKey())
    .addColumn('result', 'jsonb')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema.createIndex('activity_effects_created_at_idx').on('activity_effects').column('created_at').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('activity_effects').execute();
}
