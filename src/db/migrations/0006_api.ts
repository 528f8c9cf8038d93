import { type Kysely, sql } from 'kysely';

// What the HTTP API for backend services needs: several revocable API keys per user, the channel's
// immutable forwarding address, its outgoing-mail settings (subject, From name, own SMTP server),
// channels removed without losing their conversations, contacts whose address is not known yet (A3),
// conversations opened from a web form, and the Idempotency-Key record of creating and sending POSTs.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('api_keys')
    .addColumn('id', 'uuid', (c) => c.primaryKey())
    .addColumn('user_id', 'uuid', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('name', 'text', (c) => c.notNull())
    // sha256 of the key; the key itself is shown once, at creation.
    .addColumn('key_hash', 'text', (c) => c.notNull().unique())
    // The first characters, so that a person can tell their keys apart.
    .addColumn('key_prefix', 'text', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('last_used_at', 'timestamptz')
    .addColumn('revoked_at', 'timestamptz')
    .execute();
  await sql`
    insert into api_keys (id, user_id, name, key_hash, key_prefix, created_at)
    select gen_random_uuid(), id, 'default', api_key_hash, 'mr_', created_at from users where api_key_hash is not null
  `.execute(db);
  await db.schema.alterTable('users').dropColumn('api_key_hash').execute();

  await db.schema
    .alterTable('channels')
    // username@subdomain.<INBOUND_DOMAIN>: set once, never changed (A8).
    .addColumn('forwarding_username', 'text')
    .addColumn('forwarding_subdomain', 'text')
    // Tokens: {{conversation.started_at}}; null = "Re: <conversation subject>".
    .addColumn('default_subject', 'text')
    // Tokens: {{agent.name}}; null = "<agent> (<channel>)" for replies, the channel name otherwise.
    .addColumn('from_name', 'text')
    // The channel's own SMTP server; null host = the deployment's (SMTP_URL).
    .addColumn('smtp_host', 'text')
    .addColumn('smtp_port', 'integer', (c) => c.check(sql`smtp_port between 1 and 65535`))
    .addColumn('smtp_secure', 'boolean', (c) => c.notNull().defaultTo(false))
    .addColumn('smtp_username', 'text')
    .addColumn('smtp_password_encrypted', 'text')
    // Removed channels keep their conversations readable; they take no mail and leave every list.
    .addColumn('deleted_at', 'timestamptz')
    .execute();
  await sql`
    create unique index channels_forwarding_address_key on channels (forwarding_subdomain, forwarding_username)
    where forwarding_username is not null
  `.execute(db);

  // The From name is decided when the mail is written (templates, the sender's name), not when it is sent.
  await db.schema.alterTable('outbound_messages').addColumn('from_name', 'text').execute();

  await sql`alter table contacts alter column email drop not null`.execute(db);
  await sql`alter table inbound_messages drop constraint if exists inbound_messages_received_via_check`.execute(db);
  await sql`
    alter table inbound_messages add constraint inbound_messages_received_via_check
    check (received_via in ('forwarder', 'imap', 'form'))
  `.execute(db);

  await db.schema
    .createTable('idempotency_keys')
    .addColumn('user_id', 'uuid', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('key', 'text', (c) => c.notNull())
    // method, path and body: the same key with another request is refused.
    .addColumn('request_hash', 'text', (c) => c.notNull())
    // Null while the first request is in flight.
    .addColumn('response_status', 'integer')
    .addColumn('response_content_type', 'text')
    .addColumn('response_body', 'text')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('idempotency_keys_pkey', ['user_id', 'key'])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('idempotency_keys').execute();
  await sql`alter table inbound_messages drop constraint if exists inbound_messages_received_via_check`.execute(db);
  await sql`alter table inbound_messages add constraint inbound_messages_received_via_check check (received_via in ('forwarder', 'imap'))`.execute(
    db,
  );
  await sql`drop index if exists channels_forwarding_address_key`.execute(db);
  await db.schema.alterTable('outbound_messages').dropColumn('from_name').execute();
  await db.schema
    .alterTable('channels')
    .dropColumn('forwarding_username')
    .dropColumn('forwarding_subdomain')
    .dropColumn('default_subject')
    .dropColumn('from_name')
    .dropColumn('smtp_host')
    .dropColumn('smtp_port')
    .dropColumn('smtp_secure')
    .dropColumn('smtp_username')
    .dropColumn('smtp_password_encrypted')
    .dropColumn('deleted_at')
    .execute();
  await db.schema
    .alterTable('users')
    .addColumn('api_key_hash', 'text', (c) => c.unique())
    .execute();
  await sql`update users u set api_key_hash = (select key_hash from api_keys k where k.user_id = u.id order by created_at limit 1)`.execute(
    db,
  );
  await db.schema.dropTable('api_keys').execute();
}
