import { type Kysely, sql } from 'kysely';

// The shared mailbox shows the team's answers: outgoing mail is copied to the mailbox's Sent folder (the
// exact bytes sent, kept on the row), and replies written in the mailbox itself are recorded in their
// conversation (kind mailbox_reply), read from the Sent folder above a cursor of its own.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('channels')
    // Null: the folder the server marks \Sent (RFC 6154).
    .addColumn('imap_sent_folder', 'text')
    .addColumn('sent_copy_kinds', 'jsonb', (c) =>
      c.notNull().defaultTo(sql`'["greeting","reply","csat_survey","out_of_office","ai_reply","handover"]'::jsonb`),
    )
    .addColumn('record_mailbox_replies', 'boolean', (c) => c.notNull().defaultTo(true))
    .execute();
  await db.schema
    .alterTable('outbound_messages')
    // The message exactly as SMTP took it: what the Sent copy appends.
    .addColumn('mime', 'bytea')
    .addColumn('sent_copy_status', 'text', (c) => c.check(sql`sent_copy_status in ('pending', 'appended', 'failed', 'found')`))
    .addColumn('sent_copy_folder', 'text')
    .addColumn('sent_copy_at', 'timestamptz')
    .addColumn('sent_copy_error', 'text')
    // A session appending the copy holds it until then: a second session meanwhile leaves it alone.
    .addColumn('sent_copy_claimed_until', 'timestamptz')
    .execute();
  await sql`alter table outbound_messages drop constraint outbound_messages_kind_check`.execute(db);
  await sql`alter table outbound_messages add constraint outbound_messages_kind_check
    check (kind in ('greeting', 'reply', 'csat_survey', 'out_of_office', 'ai_reply', 'handover', 'mailbox_reply'))`.execute(db);
  // The copies still to append: few at any time.
  await sql`create index outbound_messages_sent_copy_pending_idx on outbound_messages (created_at)
    where sent_copy_status = 'pending'`.execute(db);
  await db.schema
    .createTable('sent_folder_cursors')
    .addColumn('channel_id', 'uuid', (c) => c.primaryKey().references('channels.id').onDelete('cascade'))
    .addColumn('folder', 'text', (c) => c.notNull())
    .addColumn('uid_validity', 'bigint', (c) => c.notNull())
    .addColumn('last_uid', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('sent_folder_cursors').execute();
  await db.schema.dropIndex('outbound_messages_sent_copy_pending_idx').execute();
  await sql`delete from outbound_messages where kind = 'mailbox_reply'`.execute(db);
  await sql`alter table outbound_messages drop constraint outbound_messages_kind_check`.execute(db);
  await sql`alter table outbound_messages add constraint outbound_messages_kind_check
    check (kind in ('greeting', 'reply', 'csat_survey', 'out_of_office', 'ai_reply', 'handover'))`.execute(db);
  await db.schema
    .alterTable('outbound_messages')
    .dropColumn('mime')
    .dropColumn('sent_copy_status')
    .dropColumn('sent_copy_folder')
    .dropColumn('sent_copy_at')
    .dropColumn('sent_copy_error')
    .dropColumn('sent_copy_claimed_until')
    .execute();
  await db.schema
    .alterTable('channels')
    .dropColumn('imap_sent_folder')
    .dropColumn('sent_copy_kinds')
    .dropColumn('record_mailbox_replies')
    .execute();
}
