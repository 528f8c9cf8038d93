import { type Kysely, sql } from 'kysely';

// How each of a channel's mail paths is doing (GET /v1/channels/{id}/health): the last success and the last
// failure of each, and since when a path has been failing. The last mail received per path is read from
// inbound_messages itself, through the index below, so that no mail pays an extra write for it.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('channel_health')
    .addColumn('channel_id', 'uuid', (c) => c.notNull().references('channels.id').onDelete('cascade'))
    .addColumn('path', 'text', (c) => c.notNull())
    .addColumn('last_success_at', 'timestamptz')
    .addColumn('last_error_at', 'timestamptz')
    .addColumn('last_error_reason', 'text')
    .addColumn('last_error_message', 'text')
    // Set by the first failure after a success, cleared by the next success.
    .addColumn('failing_since', 'timestamptz')
    .addPrimaryKeyConstraint('channel_health_pkey', ['channel_id', 'path'])
    .execute();
  await db.schema
    .createIndex('inbound_messages_channel_path_received_idx')
    .on('inbound_messages')
    .columns(['channel_id', 'received_via', 'received_at'])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop index if exists inbound_messages_channel_path_received_idx`.execute(db);
  await db.schema.dropTable('channel_health').execute();
}
