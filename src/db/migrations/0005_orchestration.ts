import { type Kysely, sql } from 'kysely';

// Everything a conversation goes through after ingest: routing rules, AI agents with their knowledge
// articles, teams, load-aware assignment with a queue, business hours, the first-response SLA and the
// quiet period after which resolved conversations close.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('channels')
    .addColumn('business_hours_enabled', 'boolean', (c) => c.notNull().defaultTo(false))
    // { timeZone, weekly: { monday: [{ start, end }] ... }, closedDates } — src/domain/business-hours.ts
    .addColumn('business_hours', 'jsonb')
    .addColumn('out_of_office_text', 'text')
    .addColumn('ai_outside_business_hours', 'boolean', (c) => c.notNull().defaultTo(true))
    .addColumn('ai_confidence_threshold', 'real', (c) =>
      c
        .notNull()
        .defaultTo(0.6)
        .check(sql`ai_confidence_threshold between 0 and 1`),
    )
    .addColumn('ai_max_turns', 'integer', (c) =>
      c
        .notNull()
        .defaultTo(3)
        .check(sql`ai_max_turns >= 1`),
    )
    // The languages customers write in: escalation phrases are recognised in these.
    .addColumn('languages', 'jsonb', (c) => c.notNull().defaultTo(sql`'["en","de"]'::jsonb`))
    .addColumn('assignment_strategy', 'text', (c) =>
      c
        .notNull()
        .defaultTo('round_robin')
        .check(sql`assignment_strategy in ('round_robin', 'load')`),
    )
    // Open conversations per agent on this channel unless the agent has their own; null = unlimited.
    .addColumn('default_agent_capacity', 'integer', (c) => c.check(sql`default_agent_capacity > 0`))
    .addColumn('sla_first_response_seconds', 'integer', (c) => c.check(sql`sla_first_response_seconds > 0`))
    .addColumn('close_after_seconds', 'integer', (c) =>
      c
        .notNull()
        .defaultTo(7 * 86_400)
        .check(sql`close_after_seconds >= 0`),
    )
    .execute();

  await db.schema
    .alterTable('channel_agents')
    .addColumn('capacity', 'integer', (c) => c.check(sql`capacity > 0`))
    .execute();

  await db.schema
    .alterTable('contacts')
    .addColumn('attributes', 'jsonb', (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
    .execute();

  await db.schema
    .createTable('teams')
    .addColumn('id', 'uuid', (c) => c.primaryKey())
    .addColumn('account_id', 'uuid', (c) => c.notNull().references('accounts.id').onDelete('cascade'))
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema
    .createTable('team_members')
    .addColumn('team_id', 'uuid', (c) => c.notNull().references('teams.id').onDelete('cascade'))
    .addColumn('user_id', 'uuid', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addPrimaryKeyConstraint('team_members_pkey', ['team_id', 'user_id'])
    .execute();

  await db.schema
    .createTable('ai_agents')
    .addColumn('id', 'uuid', (c) => c.primaryKey())
    .addColumn('channel_id', 'uuid', (c) => c.notNull().references('channels.id').onDelete('cascade'))
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('enabled', 'boolean', (c) => c.notNull().defaultTo(true))
    // The first enabled agent by position takes conversations no routing rule sends elsewhere.
    .addColumn('position', 'integer', (c) => c.notNull())
    .addColumn('provider', 'text', (c) => c.notNull().check(sql`provider in ('knowledge_base', 'openai_compatible')`))
    .addColumn('model', 'text')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema.createIndex('ai_agents_channel_idx').on('ai_agents').columns(['channel_id', 'position']).execute();

  await db.schema
    .createTable('knowledge_articles')
    .addColumn('id', 'uuid', (c) => c.primaryKey())
    .addColumn('channel_id', 'uuid', (c) => c.notNull().references('channels.id').onDelete('cascade'))
    .addColumn('title', 'text', (c) => c.notNull())
    .addColumn('body', 'text', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema.createIndex('knowledge_articles_channel_idx').on('knowledge_articles').column('channel_id').execute();

  await db.schema
    .createTable('routing_rules')
    .addColumn('id', 'uuid', (c) => c.primaryKey())
    .addColumn('channel_id', 'uuid', (c) => c.notNull().references('channels.id').onDelete('cascade'))
    .addColumn('position', 'integer', (c) => c.notNull())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('conditions', 'jsonb', (c) => c.notNull())
    .addColumn('actions', 'jsonb', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema.createIndex('routing_rules_channel_idx').on('routing_rules').columns(['channel_id', 'position']).execute();

  await db.schema
    .alterTable('conversations')
    .addColumn('priority', 'text', (c) =>
      c
        .notNull()
        .defaultTo('normal')
        .check(sql`priority in ('low', 'normal', 'high', 'urgent')`),
    )
    .addColumn('labels', 'jsonb', (c) => c.notNull().defaultTo(sql`'[]'::jsonb`))
    .addColumn('team_id', 'uuid', (c) => c.references('teams.id').onDelete('set null'))
    .addColumn('ai_agent_id', 'uuid', (c) => c.references('ai_agents.id').onDelete('set null'))
    // Set while the conversation waits for an agent: the queue is served by priority, then by this.
    .addColumn('queued_at', 'timestamptz')
    .addColumn('first_response_at', 'timestamptz')
    .addColumn('sla_due_at', 'timestamptz')
    .addColumn('sla_breached_at', 'timestamptz')
    .addColumn('closed_at', 'timestamptz')
    .execute();
  await db.schema
    .createIndex('conversations_queue_idx')
    .on('conversations')
    .columns(['channel_id', 'queued_at'])
    .where(sql.ref('stage'), '=', 'queued')
    .execute();
  await db.schema
    .createIndex('conversations_open_by_assignee_idx')
    .on('conversations')
    .columns(['assignee_id', 'channel_id'])
    .where(sql.ref('status'), '=', 'open')
    .execute();

  await sql`alter table outbound_messages drop constraint outbound_messages_kind_check`.execute(db);
  await sql`alter table outbound_messages add constraint outbound_messages_kind_check
    check (kind in ('greeting', 'reply', 'csat_survey', 'out_of_office', 'ai_reply', 'handover'))`.execute(db);
  await db.schema
    .alterTable('outbound_messages')
    .addColumn('ai_agent_id', 'uuid', (c) => c.references('ai_agents.id').onDelete('set null'))
    .execute();
  // One out-of-office note per conversation, however often it waits for business hours.
  await db.schema
    .createIndex('outbound_messages_one_out_of_office_idx')
    .on('outbound_messages')
    .column('conversation_id')
    .unique()
    .where(sql.ref('kind'), '=', 'out_of_office')
    .execute();

  // Who resolved the conversation the survey asks about: the CSAT report groups by them.
  await db.schema
    .alterTable('csat_surveys')
    .addColumn('agent_id', 'uuid', (c) => c.references('users.id').onDelete('set null'))
    .addColumn('ai_agent_id', 'uuid', (c) => c.references('ai_agents.id').onDelete('set null'))
    .addColumn('channel_id', 'uuid', (c) => c.references('channels.id').onDelete('cascade'))
    .execute();
  await db.schema.createIndex('csat_surveys_channel_idx').on('csat_surveys').columns(['channel_id', 'created_at']).execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('csat_surveys').dropColumn('agent_id').dropColumn('ai_agent_id').dropColumn('channel_id').execute();
  await db.schema.dropIndex('outbound_messages_one_out_of_office_idx').execute();
  await db.schema.alterTable('outbound_messages').dropColumn('ai_agent_id').execute();
  await sql`alter table outbound_messages drop constraint outbound_messages_kind_check`.execute(db);
  await sql`alter table outbound_messages add constraint outbound_messages_kind_check
    check (kind in ('greeting', 'reply', 'csat_survey'))`.execute(db);
  await db.schema.dropIndex('conversations_open_by_assignee_idx').execute();
  await db.schema.dropIndex('conversations_queue_idx').execute();
  await db.schema
    .alterTable('conversations')
    .dropColumn('priority')
    .dropColumn('labels')
    .dropColumn('team_id')
    .dropColumn('ai_agent_id')
    .dropColumn('queued_at')
    .dropColumn('first_response_at')
    .dropColumn('sla_due_at')
    .dropColumn('sla_breached_at')
    .dropColumn('closed_at')
    .execute();
  for (const table of ['routing_rules', 'knowledge_articles', 'ai_agents', 'team_members', 'teams']) {
    await db.schema.dropTable(table).execute();
  }
  await db.schema.alterTable('contacts').dropColumn('attributes').execute();
  await db.schema.alterTable('channel_agents').dropColumn('capacity').execute();
  await db.schema
    .alterTable('channels')
    .dropColumn('business_hours_enabled')
    .dropColumn('business_hours')
    .dropColumn('out_of_office_text')
    .dropColumn('ai_outside_business_hours')
    .dropColumn('ai_confidence_threshold')
    .dropColumn('ai_max_turns')
    .dropColumn('languages')
    .dropColumn('assignment_strategy')
    .dropColumn('default_agent_capacity')
    .dropColumn('sla_first_response_seconds')
    .dropColumn('close_after_seconds')
    .execute();
}
