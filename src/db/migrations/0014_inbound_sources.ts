import { type Kysely, sql } from 'kysely';

// Two more ways mail arrives: our own SMTP receiver (the forwarding address's MX) and an uploaded mailbox export.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table inbound_messages drop constraint if exists inbound_messages_received_via_check`.execute(db);
  await sql`
    alter table inbound_messages add constraint inbound_messages_received_via_check
    check (received_via in ('forwarder', 'imap', 'form', 'smtp', 'import'))
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`alter table inbound_messages drop constraint if exists inbound_messages_received_via_check`.execute(db);
  await sql`
    alter table inbound_messages add constraint inbound_messages_received_via_check
    check (received_via in ('forwarder', 'imap', 'form'))
  `.execute(db);
}
