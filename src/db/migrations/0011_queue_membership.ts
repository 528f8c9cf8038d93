import { type Kysely, sql } from 'kysely';

// The channel's queue is the open conversations without an assignee that joined it (queued_at), not a
// stage: the stage is the workflow's to write, and the queue is served in the assignment's transaction.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropIndex('conversations_queue_idx').execute();
  await db.schema
    .createIndex('conversations_queue_idx')
    .on('conversations')
    .columns(['channel_id', 'queued_at'])
    .where(sql.ref('status'), '=', 'open')
    .where(sql.ref('assignee_id'), 'is', null)
    .where(sql.ref('queued_at'), 'is not', null)
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropIndex('conversations_queue_idx').execute();
  await db.schema
    .createIndex('conversations_queue_idx')
    .on('conversations')
    .columns(['channel_id', 'queued_at'])
    .where(sql.ref('stage'), '=', 'queued')
    .execute();
}
