import { type Kysely, sql } from 'kysely';

// The spine: accounts and their people, channels, contacts, conversations,
// every inbound mail kept raw, the outbox, the timeline and CSAT surveys.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('accounts')
    .addColumn('id', 'uuid', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();

  await db.schema
    .createTable('users')
    .addColumn('id', 'uuid', (c) => c.primaryKey())
    .addColumn('account_id', 'uuid', (c) => c.notNull().references('accounts.id').onDelete('cascade'))
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('email', 'text', (c) => c.notNull())
    .addColumn('role', 'text', (c) => c.notNull().check(sql`role in ('admin', 'agent')`))
    .addColumn('api_key_hash', 'text', (c) => c.unique())
    .addColumn('available', 'boolean', (c) => c.notNull().defaultTo(true))
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addUniqueConstraint('users_account_email_key', ['account_id', 'email'])
    .execute();

  await db.schema
    .createTable('channels')
    .addColumn('id', 'uuid', (c) => c.primaryKey())
    .addColumn('account_id', 'uuid', (c) => c.notNull().references('accounts.id').onDelete('cascade'))
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('email_address', 'text', (c) => c.notNull())
    .addColumn('forwarder_secret', 'text', (c) => c.notNull())
    .addColumn('enabled', 'boolean', (c) => c.notNull().defaultTo(true))
    .addColumn('greeting_enabled', 'boolean', (c) => c.notNull().defaultTo(false))
    .addColumn('greeting_text', 'text')
    .addColumn('csat_enabled', 'boolean', (c) => c.notNull().defaultTo(false))
    .addColumn('csat_delay_seconds', 'integer', (c) =>
      c
        .notNull()
        .defaultTo(3600)
        .check(sql`csat_delay_seconds >= 0`),
    )
    .addColumn('csat_link_validity_seconds', 'integer', (c) =>
      c
        .notNull()
        .defaultTo(7 * 24 * 3600)
        .check(sql`csat_link_validity_seconds > 0`),
    )
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();

  await db.schema
    .createTable('channel_agents')
    .addColumn('channel_id', 'uuid', (c) => c.notNull().references('channels.id').onDelete('cascade'))
    .addColumn('user_id', 'uuid', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('last_assigned_at', 'timestamptz')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('channel_agents_pkey', ['channel_id', 'user_id'])
    .execute();

  await db.schema
    .createTable('contacts')
    .addColumn('id', 'uuid', (c) => c.primaryKey())
    .addColumn('account_id', 'uuid', (c) => c.notNull().references('accounts.id').onDelete('cascade'))
    .addColumn('email', 'text', (c) => c.notNull())
    .addColumn('name', 'text')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addUniqueConstraint('contacts_account_email_key', ['account_id', 'email'])
    .execute();

  await db.schema
    .createTable('conversations')
    .addColumn('id', 'uuid', (c) => c.primaryKey())
    .addColumn('account_id', 'uuid', (c) => c.notNull().references('accounts.id').onDelete('cascade'))
    .addColumn('channel_id', 'uuid', (c) => c.notNull().references('channels.id').onDelete('cascade'))
    .addColumn('contact_id', 'uuid', (c) => c.notNull().references('contacts.id'))
    .addColumn('subject', 'text', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull().check(sql`status in ('open', 'resolved', 'closed')`))
    .addColumn('stage', 'text', (c) => c.notNull())
    .addColumn('assignee_id', 'uuid', (c) => c.references('users.id').onDelete('set null'))
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('resolved_at', 'timestamptz')
    .execute();
  await db.schema.createIndex('conversations_channel_idx').on('conversations').columns(['channel_id', 'created_at']).execute();
  await db.schema.createIndex('conversations_contact_idx').on('conversations').column('contact_id').execute();

  await db.schema
    .createTable('inbound_messages')
    .addColumn('id', 'uuid', (c) => c.primaryKey())
    .addColumn('channel_id', 'uuid', (c) => c.notNull().references('channels.id').onDelete('cascade'))
    .addColumn('message_id', 'text', (c) => c.notNull())
    .addColumn('raw', 'bytea', (c) => c.notNull())
    .addColumn('size_bytes', 'integer', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull().check(sql`status in ('received', 'threaded', 'rejected')`))
    .addColumn('rejection_reason', 'text')
    .addColumn('conversation_id', 'uuid', (c) => c.references('conversations.id').onDelete('set null'))
    .addColumn('classification', 'text')
    .addColumn('from_address', 'text')
    .addColumn('from_name', 'text')
    .addColumn('subject', 'text')
    .addColumn('text_body', 'text')
    .addColumn('html_body', 'text')
    .addColumn('in_reply_to', 'text')
    .addColumn('reference_ids', 'jsonb', (c) => c.notNull().defaultTo(sql`'[]'::jsonb`))
    .addColumn('sent_at', 'timestamptz')
    .addColumn('received_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('signalled_at', 'timestamptz')
    // The same mail posted twice, or fetched by IMAP and forwarded too, is stored once.
    .addUniqueConstraint('inbound_messages_channel_message_id_key', ['channel_id', 'message_id'])
    .execute();
  await db.schema
    .createIndex('inbound_messages_conversation_idx')
    .on('inbound_messages')
    .columns(['conversation_id', 'received_at'])
    .execute();

  await db.schema
    .createTable('outbound_messages')
    .addColumn('id', 'uuid', (c) => c.primaryKey())
    .addColumn('conversation_id', 'uuid', (c) => c.notNull().references('conversations.id').onDelete('cascade'))
    .addColumn('kind', 'text', (c) => c.notNull().check(sql`kind in ('greeting', 'reply', 'csat_survey')`))
    .addColumn('message_id', 'text', (c) => c.notNull().unique())
    .addColumn('author_id', 'uuid', (c) => c.references('users.id').onDelete('set null'))
    .addColumn('from_address', 'text', (c) => c.notNull())
    .addColumn('to_address', 'text', (c) => c.notNull())
    .addColumn('subject', 'text', (c) => c.notNull())
    .addColumn('text_body', 'text', (c) => c.notNull())
    .addColumn('in_reply_to', 'text')
    .addColumn('reference_ids', 'jsonb', (c) => c.notNull().defaultTo(sql`'[]'::jsonb`))
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('sent_at', 'timestamptz')
    .execute();
  await db.schema
    .createIndex('outbound_messages_conversation_idx')
    .on('outbound_messages')
    .columns(['conversation_id', 'created_at'])
    .execute();
  // One greeting per conversation, however often its workflow starts again.
  await db.schema
    .createIndex('outbound_messages_one_greeting_idx')
    .on('outbound_messages')
    .column('conversation_id')
    .unique()
    .where(sql.ref('kind'), '=', 'greeting')
    .execute();

  await db.schema
    .createTable('conversation_events')
    .addColumn('id', 'bigserial', (c) => c.primaryKey())
    .addColumn('conversation_id', 'uuid', (c) => c.notNull().references('conversations.id').onDelete('cascade'))
    .addColumn('type', 'text', (c) => c.notNull())
    .addColumn('data', 'jsonb', (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema
    .createIndex('conversation_events_conversation_idx')
    .on('conversation_events')
    .columns(['conversation_id', 'id'])
    .execute();

  await db.schema
    .createTable('csat_surveys')
    .addColumn('id', 'uuid', (c) => c.primaryKey())
    .addColumn('conversation_id', 'uuid', (c) => c.notNull().references('conversations.id').onDelete('cascade'))
    .addColumn('outbound_message_id', 'uuid', (c) => c.references('outbound_messages.id'))
    .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
    .addColumn('rating', 'integer', (c) => c.check(sql`rating between 1 and 5`))
    .addColumn('comment', 'text')
    .addColumn('rated_at', 'timestamptz')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const table of [
    'csat_surveys',
    'conversation_events',
    'outbound_messages',
    'inbound_messages',
    'conversations',
    'contacts',
    'channel_agents',
    'channels',
    'users',
    'accounts',
  ]) {
    await db.schema.dropTable(table).execute();
  }
}
