import { type Kysely, sql } from 'kysely';

// Signatures (per channel, per agent), the conversation's language with per-language texts of the channel,
// and the one-click unsubscribe from surveys (RFC 8058), kept per contact.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('channels')
    .addColumn('signature_text', 'text')
    .addColumn('signature_html', 'text')
    // { "de": "…", "en": "…" }: the admin's greeting and out-of-office texts per language, beside the one text for all.
    .addColumn('greeting_texts', 'jsonb', (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
    .addColumn('out_of_office_texts', 'jsonb', (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
    .execute();
  await db.schema.alterTable('users').addColumn('signature_text', 'text').addColumn('signature_html', 'text').execute();
  await db.schema.alterTable('conversations').addColumn('language', 'text').execute();
  await db.schema.alterTable('contacts').addColumn('surveys_unsubscribed_at', 'timestamptz').execute();
  await db.schema
    .alterTable('outbound_messages')
    // The signature as the mail carries it, below the body: text and HTML.
    .addColumn('signature_text', 'text')
    .addColumn('signature_html', 'text')
    // The https URL of List-Unsubscribe (with List-Unsubscribe-Post: One-Click) on survey mail.
    .addColumn('list_unsubscribe', 'text')
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('outbound_messages')
    .dropColumn('signature_text')
    .dropColumn('signature_html')
    .dropColumn('list_unsubscribe')
    .execute();
  await db.schema.alterTable('contacts').dropColumn('surveys_unsubscribed_at').execute();
  await db.schema.alterTable('conversations').dropColumn('language').execute();
  await db.schema.alterTable('users').dropColumn('signature_text').dropColumn('signature_html').execute();
  await db.schema
    .alterTable('channels')
    .dropColumn('signature_text')
    .dropColumn('signature_html')
    .dropColumn('greeting_texts')
    .dropColumn('out_of_office_texts')
    .execute();
}
