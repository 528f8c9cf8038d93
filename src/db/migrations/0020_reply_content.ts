import { type Kysely, sql } from 'kysely';

/** How many files one reply carries at most unless the channel says otherwise. */
export const DEFAULT_MAX_REPLY_ATTACHMENTS = 10;
/** What the files of one reply weigh together at most unless the channel says otherwise: 20 MiB. */
export const DEFAULT_MAX_REPLY_ATTACHMENT_BYTES = 20 * 1024 * 1024;

// What a reply carries beyond its text: files (uploaded by an agent, or forwarded from the customer's mail), Cc and
// Bcc recipients, and the agent's HTML. Uploaded files wait in reply_attachments until a reply takes them.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('channels')
    .addColumn('max_reply_attachments', 'integer', (c) =>
      c
        .notNull()
        .defaultTo(DEFAULT_MAX_REPLY_ATTACHMENTS)
        .check(sql`max_reply_attachments between 0 and 100`),
    )
    .addColumn('max_reply_attachment_bytes', 'integer', (c) =>
      c
        .notNull()
        .defaultTo(DEFAULT_MAX_REPLY_ATTACHMENT_BYTES)
        .check(sql`max_reply_attachment_bytes >= 0`),
    )
    .execute();

  await db.schema
    .alterTable('outbound_messages')
    .addColumn('cc_addresses', 'jsonb', (c) => c.notNull().defaultTo(sql`'[]'::jsonb`))
    .addColumn('bcc_addresses', 'jsonb', (c) => c.notNull().defaultTo(sql`'[]'::jsonb`))
    .addColumn('html_body', 'text')
    .execute();

  await db.schema
    .createTable('reply_attachments')
    .addColumn('id', 'uuid', (c) => c.primaryKey())
    .addColumn('conversation_id', 'uuid', (c) => c.notNull().references('conversations.id').onDelete('cascade'))
    // Null while the upload waits for a reply.
    .addColumn('outbound_message_id', 'uuid', (c) => c.references('outbound_messages.id').onDelete('cascade'))
    .addColumn('uploaded_by', 'uuid', (c) => c.references('users.id').onDelete('set null'))
    // A file of the customer's mail that the reply forwards.
    .addColumn('source_attachment_id', 'uuid', (c) => c.references('attachments.id').onDelete('set null'))
    .addColumn('position', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('filename', 'text', (c) => c.notNull())
    .addColumn('content_type', 'text', (c) => c.notNull())
    .addColumn('size_bytes', 'integer', (c) => c.notNull())
    .addColumn('sha256', 'text')
    .addColumn('content', 'bytea', (c) => c.notNull())
    // False while an upload is being streamed in: such a row is never sent.
    .addColumn('complete', 'boolean', (c) => c.notNull().defaultTo(false))
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema.createIndex('reply_attachments_conversation_idx').on('reply_attachments').column('conversation_id').execute();
  await db.schema
    .createIndex('reply_attachments_outbound_idx')
    .on('reply_attachments')
    .columns(['outbound_message_id', 'position'])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('reply_attachments').execute();
  await db.schema
    .alterTable('outbound_messages')
    .dropColumn('cc_addresses')
    .dropColumn('bcc_addresses')
    .dropColumn('html_body')
    .execute();
  await db.schema.alterTable('channels').dropColumn('max_reply_attachments').dropColumn('max_reply_attachment_bytes').execute();
}
