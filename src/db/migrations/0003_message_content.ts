import { type Kysely, sql } from 'kysely';

/** What a channel keeps of one attachment unless its settings say otherwise: 10 MiB. */
export const DEFAULT_MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024;

// What a mail says, kept apart from its raw bytes: recipients, the new part of a reply, attachments
// in their own table; and the reply token that lets a reply find its conversation by address alone.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('channels')
    .addColumn('max_attachment_bytes', 'integer', (c) =>
      c
        .notNull()
        .defaultTo(DEFAULT_MAX_ATTACHMENT_BYTES)
        .check(sql`max_attachment_bytes >= 0`),
    )
    .execute();

  // 122 random bits in hex: unguessable, and safe in an address local part that some servers lower-case.
  // A volatile default gives every existing conversation a token of its own.
  await db.schema
    .alterTable('conversations')
    .addColumn('reply_token', 'text', (c) =>
      c
        .notNull()
        .unique()
        .defaultTo(sql`replace(gen_random_uuid()::text, '-', '')`),
    )
    .execute();

  await db.schema
    .alterTable('inbound_messages')
    .addColumn('to_addresses', 'jsonb', (c) => c.notNull().defaultTo(sql`'[]'::jsonb`))
    .addColumn('cc_addresses', 'jsonb', (c) => c.notNull().defaultTo(sql`'[]'::jsonb`))
    .addColumn('reply_text', 'text')
    .addColumn('returned_message_id', 'text')
    .execute();

  await db.schema
    .createTable('attachments')
    .addColumn('id', 'uuid', (c) => c.primaryKey())
    .addColumn('inbound_message_id', 'uuid', (c) => c.notNull().references('inbound_messages.id').onDelete('cascade'))
    // Order in the mail; with the message id it makes a repeated ingest write nothing twice.
    .addColumn('position', 'integer', (c) => c.notNull())
    .addColumn('filename', 'text', (c) => c.notNull())
    .addColumn('content_type', 'text', (c) => c.notNull())
    .addColumn('size_bytes', 'integer', (c) => c.notNull())
    .addColumn('content_id', 'text')
    .addColumn('inline', 'boolean', (c) => c.notNull().defaultTo(false))
    .addColumn('sha256', 'text', (c) => c.notNull())
    .addColumn('content', 'bytea')
    .addColumn('omitted_reason', 'text')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addUniqueConstraint('attachments_message_position_key', ['inbound_message_id', 'position'])
    // Either the bytes are here, or the reason they are not.
    .addCheckConstraint('attachments_content_or_reason', sql`(content is null) = (omitted_reason is not null)`)
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('attachments').execute();
  for (const column of ['returned_message_id', 'reply_text', 'cc_addresses', 'to_addresses']) {
    await db.schema.alterTable('inbound_messages').dropColumn(column).execute();
  }
  await db.schema.alterTable('conversations').dropColumn('reply_token').execute();
  await db.schema.alterTable('channels').dropColumn('max_attachment_bytes').execute();
}
