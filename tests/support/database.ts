import { inject } from 'vitest';
import type { Db } from '../../src/db/connection.js';
import { migrateToLatest } from '../../src/db/migrate.js';
import { createScratchDatabase } from '../../scripts/servers/scratch-database.js';

/** A fresh, migrated database of its own on the test PostgreSQL server, for one test file. */
export async function createTestDatabase(): Promise<{ db: Db; url: string; drop(): Promise<void> }> {
  const database = await createScratchDatabase(inject('databaseUrl'), { prefix: 'mailroom_test', maxConnections: 20 });
  await migrateToLatest(database.db);
  return database;
}
