import { type Kysely, sql } from 'kysely';

// Safe on the open internet: forwarder secrets stored like API keys (hashed), a contact holds one
// mailbox and never a list, every number the API accepts is storable, and SLA targets are bounded.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('channels').addColumn('forwarder_secret_hash', 'text').execute();
  await sql`update channels set forwarder_secret_hash = encode(sha256(convert_to(forwarder_secret, 'UTF8')), 'hex')`.execute(db);
  await sql`alter table channels alter column forwarder_secret_hash set not null, drop column forwarder_secret`.execute(db);

  // "a@x.example,b@y.example" came through as one address before; such a contact is one whose address is not known (A3).
  await sql`
    update contacts set email = null
      where email ~ '[,;<>()"\\[\\]\\\\[:space:]]' or email !~ '^[^@]+@[^@]+\\.[^@]+$'`.execute(db);
  await sql`
    alter table contacts add constraint contacts_email_one_mailbox
      check (email !~ '[,;<>()"\\[\\]\\\\[:space:]]' and email ~ '^[^@]+@[^@]+\\.[^@]+$')`.execute(db);

  // A real holds no number below ~1e-38; the API takes any double in [0, 1].
  await sql`alter table channels alter column ai_confidence_threshold type double precision`.execute(db);

  // At most 30 days of business time: the deadline is computed stretch by stretch of opening hours.
  await sql`update channels set sla_first_response_seconds = least(sla_first_response_seconds, 2592000)`.execute(db);
  await sql`alter table channels add constraint channels_sla_at_most_30_days check (sla_first_response_seconds <= 2592000)`.execute(
    db,
  );
}
