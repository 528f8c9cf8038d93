import { type Kysely, sql } from 'kysely';

// A mail provider's confirmation that it may forward to a channel's forwarding address (Gmail's code and link):
// kept for the channel's admins, never a conversation. One per stored mail.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('forwarding_confirmations')
    .addColumn('id', 'uuid', (c) => c.primaryKey())
    .addColumn('channel_id', 'uuid', (c) => c.notNull().references('channels.id').onDelete('cascade'))
    .addColumn('inbound_message_id', 'uuid', (c) => c.notNull().unique().references('inbound_messages.id').onDelete('cascade'))
    .addColumn('provider', 'text', (c) => c.notNull())
    .addColumn('sender', 'text', (c) => c.notNull())
    .addColumn('subject', 'text', (c) => c.notNull())
    .addColumn('requested_by', 'text')
    .addColumn('confirmation_code', 'text')
    .addColumn('confirmation_url', 'text')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema
    .createIndex('forwarding_confirmations_channel_idx')
    .on('forwarding_confirmations')
    .columns(['channel_id', 'created_at'])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('forwarding_confirmations').execute();
}
