import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';
import pg from 'pg';
import { connectPostgres, type Db } from '../../src/db/connection.js';
import { migrateToLatest } from '../../src/db/migrate.js';

/** A fresh, migrated database of its own on the test PostgreSQL server, for one test file. */
export async function createTestDatabase(): Promise<{ db: Db; url: string; drop(): Promise<void> }> {
  const serverUrl = inject('databaseUrl');
  const name = `mailroom_test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  const db = connectPostgres(url.toString(), { maxConnections: 20 });
  await migrateToLatest(db);
  return {
    db,
    url: url.toString(),
    async drop() {
      await db.destroy();
      const client = new pg.Client({ connectionString: serverUrl });
      await client.connect();
      await client.query(`drop database if exists ${name} with (force)`);
      await client.end();
    },
  };
}
