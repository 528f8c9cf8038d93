import { type Kysely, sql } from 'kysely';

// Where each outgoing mail stands: queued (not out yet, or being retried), sent, failed (the SMTP server
// refused it for good) or bounced (a delivery report came back for it), with the reason a person reads.
// A send holds a lease on its row (claimed_until, claim_token) so that a retry while it runs sends nothing.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('outbound_messages')
    .addColumn('delivery_status', 'text', (c) =>
      c
        .notNull()
        .defaultTo('queued')
        .check(sql`delivery_status in ('queued', 'sent', 'failed', 'bounced')`),
    )
    // Failed or bounced: the server's reply or the report's diagnostic; queued: why the last attempt did not go out.
    .addColumn('delivery_error', 'text')
    .addColumn('claimed_until', 'timestamptz')
    .addColumn('claim_token', 'uuid')
    .execute();
  await sql`update outbound_messages set delivery_status = 'sent' where sent_at is not null`.execute(db);
}
