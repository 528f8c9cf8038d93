import { type Kysely, sql } from 'kysely';

// Uploaded mailbox exports (mbox, Maildir as tar, gzipped or not) and how far their import has come. The export
// itself is kept in pieces of a few MiB in the database, so the API and the worker need no shared disk (and it
// works on PGlite); the pieces are deleted once the import has ended.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('mailbox_imports')
    .addColumn('id', 'uuid', (c) => c.primaryKey())
    .addColumn('account_id', 'uuid', (c) => c.notNull().references('accounts.id').onDelete('cascade'))
    .addColumn('channel_id', 'uuid', (c) => c.notNull().references('channels.id').onDelete('cascade'))
    .addColumn('state', 'text', (c) =>
      c.notNull().check(sql`state in ('uploading', 'uploaded', 'running', 'completed', 'failed', 'cancelled')`),
    )
    // What was uploaded: 'mbox', 'maildir' (a tar), or null for a gzip whose content is recognised when it is read.
    .addColumn('format', 'text', (c) => c.check(sql`format in ('mbox', 'maildir')`))
    .addColumn('compressed', 'boolean', (c) => c.notNull())
    .addColumn('bytes_total', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('bytes_processed', 'bigint', (c) => c.notNull().defaultTo(0))
    // Where the next mail starts in the (unpacked) mbox, or the next tar entry's first header, and that entry's index.
    .addColumn('resume_offset', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('resume_entry', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('mails_imported', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('mails_duplicate', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('mails_rejected', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('entries_skipped', 'integer', (c) => c.notNull().defaultTo(0))
    // The first mails that could not be stored (too large, refused by the database): where and why.
    .addColumn('not_imported', 'jsonb', (c) => c.notNull().defaultTo(sql`'[]'::jsonb`))
    .addColumn('failure_reason', 'text')
    .addColumn('cancel_requested_at', 'timestamptz')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('started_at', 'timestamptz')
    .addColumn('finished_at', 'timestamptz')
    .execute();
  await db.schema
    .createIndex('mailbox_imports_channel_idx')
    .on('mailbox_imports')
    .columns(['channel_id', 'created_at', 'id'])
    .execute();
  await db.schema
    .createTable('mailbox_import_pieces')
    .addColumn('import_id', 'uuid', (c) => c.notNull().references('mailbox_imports.id').onDelete('cascade'))
    .addColumn('position', 'integer', (c) => c.notNull())
    .addColumn('data', 'bytea', (c) => c.notNull())
    .addPrimaryKeyConstraint('mailbox_import_pieces_pkey', ['import_id', 'position'])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('mailbox_import_pieces').execute();
  await db.schema.dropTable('mailbox_imports').execute();
}
