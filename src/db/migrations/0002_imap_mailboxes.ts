import { type Kysely, sql } from 'kysely';

// IMAP mailboxes: per-channel connection settings (password encrypted), and a UID cursor per folder.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('channels')
    .addColumn('imap_enabled', 'boolean', (c) => c.notNull().defaultTo(false))
    .addColumn('imap_host', 'text')
    .addColumn('imap_port', 'integer', (c) => c.check(sql`imap_port between 1 and 65535`))
    .addColumn('imap_tls', 'boolean', (c) => c.notNull().defaultTo(true))
    .addColumn('imap_username', 'text')
    .addColumn('imap_password_encrypted', 'text')
    .addColumn('imap_folders', 'jsonb', (c) => c.notNull().defaultTo(sql`'["INBOX"]'::jsonb`))
    .addColumn('imap_after_processing', 'text', (c) =>
      c
        .notNull()
        .defaultTo('none')
        .check(sql`imap_after_processing in ('none', 'mark_seen', 'move')`),
    )
    .addColumn('imap_move_to_folder', 'text')
    .addColumn('imap_poll_interval_seconds', 'integer', (c) =>
      c
        .notNull()
        .defaultTo(60)
        .check(sql`imap_poll_interval_seconds >= 5`),
    )
    .addColumn('max_inbound_bytes', 'integer', (c) => c.notNull().defaultTo(25 * 1024 * 1024))
    .execute();

  await db.schema
    .createTable('imap_cursors')
    .addColumn('channel_id', 'uuid', (c) => c.notNull().references('channels.id').onDelete('cascade'))
    .addColumn('folder', 'text', (c) => c.notNull())
    // Positions are only meaningful within one UIDVALIDITY; a new one means the folder is read again.
    .addColumn('uid_validity', 'bigint', (c) => c.notNull())
    .addColumn('last_uid', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('imap_cursors_pkey', ['channel_id', 'folder'])
    .execute();

  await db.schema
    .alterTable('inbound_messages')
    .addColumn('received_via', 'text', (c) =>
      c
        .notNull()
        .defaultTo('forwarder')
        .check(sql`received_via in ('forwarder', 'imap')`),
    )
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('inbound_messages').dropColumn('received_via').execute();
  await db.schema.dropTable('imap_cursors').execute();
  for (const column of [
    'imap_enabled',
    'imap_host',
    'imap_port',
    'imap_tls',
    'imap_username',
    'imap_password_encrypted',
    'imap_folders',
    'imap_after_processing',
    'imap_move_to_folder',
    'imap_poll_interval_seconds',
    'max_inbound_bytes',
  ]) {
    await db.schema.alterTable('channels').dropColumn(column).execute();
  }
}
