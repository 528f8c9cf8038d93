import { type Kysely, sql } from 'kysely';

// Erasure and retention: an erased contact keeps its row as an anonymous tombstone (no address, no name, no
// attributes), and so does each erased conversation (no subject, no labels, a reply token nobody knows), so
// reports still count them. An account may keep closed conversations for a number of days only.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('accounts')
    .addColumn('retention_days', 'integer', (c) => c.check(sql`retention_days between 1 and 3650`))
    .execute();
  await db.schema
    .alterTable('contacts')
    .addColumn('erasure_requested_at', 'timestamptz')
    .addColumn('erased_at', 'timestamptz')
    .execute();
  await db.schema.alterTable('conversations').addColumn('erased_at', 'timestamptz').execute();
  // A stored response (Idempotency-Key) of a request about a conversation (a note, a reply) goes with its erasure.
  await db.schema.alterTable('idempotency_keys').addColumn('conversation_id', 'uuid').execute();
  await db.schema
    .createIndex('idempotency_keys_conversation_idx')
    .on('idempotency_keys')
    .column('conversation_id')
    .where(sql.ref('conversation_id'), 'is not', null)
    .execute();
  // The retention sweep's question: an account's closed conversations, oldest first, not yet erased.
  await db.schema
    .createIndex('conversations_retention_idx')
    .on('conversations')
    .columns(['account_id', 'closed_at'])
    .where(sql.ref('erased_at'), 'is', null)
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropIndex('conversations_retention_idx').execute();
  await db.schema.dropIndex('idempotency_keys_conversation_idx').execute();
  await db.schema.alterTable('idempotency_keys').dropColumn('conversation_id').execute();
  await db.schema.alterTable('conversations').dropColumn('erased_at').execute();
  await db.schema.alterTable('contacts').dropColumn('erasure_requested_at').dropColumn('erased_at').execute();
  await db.schema.alterTable('accounts').dropColumn('retention_days').execute();
}
