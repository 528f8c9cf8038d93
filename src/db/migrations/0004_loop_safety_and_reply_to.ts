import { type Kysely, sql } from 'kysely';

// Loop safety: how many automatic mails (greeting, survey) one recipient may get from a channel per hour.
// And the Reply-To of each outgoing mail: the channel address with the conversation's reply token.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('outbound_messages').addColumn('reply_to', 'text').execute();
  await db.schema
    .alterTable('channels')
    .addColumn('automatic_mail_limit_per_hour', 'integer', (c) =>
      c
        .notNull()
        .defaultTo(5)
        .check(sql`automatic_mail_limit_per_hour >= 0`),
    )
    .execute();
  await db.schema
    .createIndex('outbound_messages_recipient_idx')
    .on('outbound_messages')
    .columns(['to_address', 'created_at'])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropIndex('outbound_messages_recipient_idx').execute();
  await db.schema.alterTable('channels').dropColumn('automatic_mail_limit_per_hour').execute();
  await db.schema.alterTable('outbound_messages').dropColumn('reply_to').execute();
}
