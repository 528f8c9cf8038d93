import { type Kysely, sql } from 'kysely';

// Spoofing, spam and backscatter: what the receiving server said about each mail's sender, whom a
// channel trusts to say it, a spam state for conversations, and automatic-mail limits per recipient
// domain and per channel. IMAP without surprises: mail over the size limit is quarantined without
// its bytes (refetched by UID when reprocessed), and a new mailbox starts at the folder's end unless
// the admin imports its last days (imported mail gets no automatic mail).
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('channels')
    // Authentication-Results of these authserv-ids are believed ("mx.google.com", "*.example.net").
    .addColumn('trusted_authserv_ids', 'jsonb', (c) => c.notNull().defaultTo(sql`'[]'::jsonb`))
    // Microsoft 365 writes Authentication-Results without an authserv-id: believe the topmost one.
    .addColumn('trust_unnamed_authentication_results', 'boolean', (c) => c.notNull().defaultTo(false))
    .addColumn('trust_spam_headers', 'boolean', (c) => c.notNull().defaultTo(true))
    .addColumn('automatic_mail_limit_per_domain_per_hour', 'integer', (c) =>
      c
        .notNull()
        .defaultTo(50)
        .check(sql`automatic_mail_limit_per_domain_per_hour >= 0`),
    )
    .addColumn('automatic_mail_limit_per_channel_per_hour', 'integer', (c) =>
      c
        .notNull()
        .defaultTo(500)
        .check(sql`automatic_mail_limit_per_channel_per_hour >= 0`),
    )
    // Days of existing mail the first sync of a folder imports; 0 starts at the folder's end.
    .addColumn('imap_import_days', 'integer', (c) =>
      c
        .notNull()
        .defaultTo(0)
        .check(sql`imap_import_days between 0 and 3650`),
    )
    .execute();

  await db.schema
    .alterTable('inbound_messages')
    .addColumn('sender_verdict', 'text', (c) => c.check(sql`sender_verdict in ('ordinary', 'unverified', 'spam')`))
    .addColumn('sender_verdict_reasons', 'jsonb', (c) => c.notNull().defaultTo(sql`'[]'::jsonb`))
    // Existing mail a mailbox import brought in: stored and threaded, never answered automatically.
    .addColumn('imported', 'boolean', (c) => c.notNull().defaultTo(false))
    // Where an IMAP mail came from, so that one quarantined without its bytes can be fetched again.
    .addColumn('source_folder', 'text')
    .addColumn('source_uid_validity', 'bigint')
    .addColumn('source_uid', 'bigint')
    .execute();
  // Null only for IMAP mail quarantined by its RFC822.SIZE before the download.
  await sql`alter table inbound_messages alter column raw drop not null`.execute(db);

  // The moment a folder was first synced: its mail from before then is imported history.
  await db.schema.alterTable('imap_cursors').addColumn('imported_before', 'timestamptz').execute();

  // Spam: stored and shown, kept out of the queue until an agent releases it.
  await sql`alter table conversations drop constraint if exists conversations_status_check`.execute(db);
  await sql`alter table conversations add constraint conversations_status_check
    check (status in ('open', 'resolved', 'closed', 'spam'))`.execute(db);

  // Automatic mail counted per channel and recipient domain within the last hour.
  await db.schema.createIndex('outbound_messages_created_idx').on('outbound_messages').column('created_at').execute();
}
