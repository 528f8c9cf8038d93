import type { Kysely } from 'kysely';

// Where a folder's existing mail ends: the last UID it held when first synced (or when its UIDs were renumbered).
// Mail up to it is history (imported within the channel's import days, else left alone); mail above it is new,
// even an old mail someone moves into the folder later. Null for folders first read before 0008, read as new mail.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('imap_cursors').addColumn('history_last_uid', 'bigint').execute();
}
