import { type Kysely, sql } from 'kysely';

// Stored mail that never reached its conversation (the process died, the parser pool or Temporal was away) is
// resumed by the mail reconciler. A pass holds a lease on the rows it took (resume_claimed_until), so that a
// second pass at the same time takes others; the index keeps the search small while nearly every row is done.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('inbound_messages').addColumn('resume_claimed_until', 'timestamptz').execute();
  await db.schema
    .createIndex('inbound_messages_stalled_idx')
    .on('inbound_messages')
    .column('received_at')
    .where(sql.ref('signalled_at'), 'is', null)
    .where(sql.ref('status'), 'in', sql`('received', 'threaded')`)
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropIndex('inbound_messages_stalled_idx').execute();
  await db.schema.alterTable('inbound_messages').dropColumn('resume_claimed_until').execute();
}
