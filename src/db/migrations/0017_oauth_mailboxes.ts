import { type Kysely, sql } from 'kysely';

// OAuth 2.0 mailboxes (Google Workspace, Microsoft 365, any OAuth provider): how a channel logs in to its IMAP and
// SMTP server, its grant (refresh token encrypted, connection state with the provider's reason), and the
// authorizations an admin started and the provider's callback finishes (single use, minutes long).
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('channels')
    .addColumn('imap_auth', 'text', (c) =>
      c
        .notNull()
        .defaultTo('password')
        .check(sql`imap_auth in ('password', 'oauth2')`),
    )
    .addColumn('smtp_auth', 'text', (c) =>
      c
        .notNull()
        .defaultTo('password')
        .check(sql`smtp_auth in ('password', 'oauth2')`),
    )
    .execute();

  await db.schema
    .createTable('mailbox_oauth_grants')
    .addColumn('channel_id', 'uuid', (c) => c.primaryKey().references('channels.id').onDelete('cascade'))
    .addColumn('provider', 'text', (c) => c.notNull().check(sql`provider in ('google', 'microsoft', 'generic')`))
    // The provider as connected: an issuer to discover, or the endpoints themselves.
    .addColumn('issuer', 'text')
    .addColumn('token_endpoint', 'text')
    .addColumn('revocation_endpoint', 'text')
    .addColumn('client_id', 'text', (c) => c.notNull())
    // Null: the deployment's client secret (OAUTH_<PROVIDER>_CLIENT_SECRET), or a public client.
    .addColumn('client_secret_encrypted', 'text')
    .addColumn('scopes', 'text', (c) => c.notNull())
    .addColumn('account', 'text', (c) => c.notNull())
    .addColumn('refresh_token_encrypted', 'text', (c) => c.notNull())
    .addColumn('access_token_encrypted', 'text')
    .addColumn('access_token_expires_at', 'timestamptz')
    // A mail server refused the current access token this many times in a row; a fresh one refused too ends the grant.
    .addColumn('token_refusals', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('state', 'text', (c) =>
      c
        .notNull()
        .defaultTo('connected')
        .check(sql`state in ('connected', 'reauthorization_required')`),
    )
    .addColumn('reason', 'text', (c) => c.check(sql`length(reason) <= 500`))
    .addColumn('state_since', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('connected_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('refreshed_at', 'timestamptz')
    .addColumn('refresh_count', 'integer', (c) => c.notNull().defaultTo(0))
    .execute();

  await db.schema
    .createTable('oauth_authorizations')
    .addColumn('id', 'uuid', (c) => c.primaryKey())
    // SHA-256 of the state sent to the provider: the database never holds a state that would complete the flow.
    .addColumn('state_hash', 'text', (c) => c.notNull().unique())
    .addColumn('user_id', 'uuid', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('channel_id', 'uuid', (c) => c.notNull().references('channels.id').onDelete('cascade'))
    .addColumn('code_verifier_encrypted', 'text', (c) => c.notNull())
    .addColumn('nonce', 'text', (c) => c.notNull())
    // Provider, client, scopes, account and mail servers as the admin asked (a client secret in it is encrypted).
    .addColumn('connection', 'jsonb', (c) => c.notNull())
    .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
    .addColumn('used_at', 'timestamptz')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema.createIndex('oauth_authorizations_expires_at').on('oauth_authorizations').column('expires_at').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('oauth_authorizations').execute();
  await db.schema.dropTable('mailbox_oauth_grants').execute();
  await db.schema.alterTable('channels').dropColumn('imap_auth').dropColumn('smtp_auth').execute();
}
