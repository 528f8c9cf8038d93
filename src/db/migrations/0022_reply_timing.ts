import { type Kysely, sql } from 'kysely';

// Undo send and send later: an agent's reply may wait in the outbox (scheduled, until scheduled_for) as a
// timer of its conversation's workflow, and end cancelled (undone by an agent, or because the customer wrote
// first). Who is writing a reply right now: a lease per agent and conversation that runs out unless renewed.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table outbound_messages drop constraint if exists outbound_messages_delivery_status_check`.execute(db);
  await sql`alter table outbound_messages add constraint outbound_messages_delivery_status_check
    check (delivery_status in ('queued', 'sent', 'failed', 'bounced', 'scheduled', 'cancelled'))`.execute(db);
  await db.schema
    .alterTable('outbound_messages')
    .addColumn('scheduled_for', 'timestamptz')
    .addColumn('cancelled_at', 'timestamptz')
    .addColumn('cancelled_by', 'uuid', (c) => c.references('users.id').onDelete('set null'))
    .addColumn('cancel_reason', 'text')
    .execute();
  await db.schema
    .alterTable('channels')
    .addColumn('undo_send_seconds', 'integer', (c) =>
      c
        .notNull()
        .defaultTo(0)
        .check(sql`undo_send_seconds between 0 and 30`),
    )
    .execute();
  await db.schema
    .createTable('draft_leases')
    .addColumn('conversation_id', 'uuid', (c) => c.notNull().references('conversations.id').onDelete('cascade'))
    .addColumn('user_id', 'uuid', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('since', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
    .addPrimaryKeyConstraint('draft_leases_pkey', ['conversation_id', 'user_id'])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('draft_leases').execute();
  await db.schema.alterTable('channels').dropColumn('undo_send_seconds').execute();
  await sql`delete from outbound_messages where delivery_status in ('scheduled', 'cancelled')`.execute(db);
  await db.schema
    .alterTable('outbound_messages')
    .dropColumn('scheduled_for')
    .dropColumn('cancelled_at')
    .dropColumn('cancelled_by')
    .dropColumn('cancel_reason')
    .execute();
  await sql`alter table outbound_messages drop constraint if exists outbound_messages_delivery_status_check`.execute(db);
  await sql`alter table outbound_messages add constraint outbound_messages_delivery_status_check
    check (delivery_status in ('queued', 'sent', 'failed', 'bounced'))`.execute(db);
}
