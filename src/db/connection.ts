import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { openEmbeddedDatabase } from './embedded-database.js';
import type { Database } from './schema.js';

export { openEmbeddedDatabase } from './embedded-database.js';

export type Db = Kysely<Database>;

/** A pool on a PostgreSQL server: tests, docker-compose and production. */
export function connectPostgres(databaseUrl: string, options: { maxConnections?: number } = {}): Db {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: options.maxConnections ?? 10 });
  // An idle connection the server drops (restart, failover) must not crash the process; the pool replaces it.
  pool.on('error', (error) => console.warn(`PostgreSQL dropped an idle connection: ${error.message}`));
  return new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
}

export async function openDatabase(config: { DATABASE_URL?: string; DATA_DIR: string }): Promise<Db> {
  return config.DATABASE_URL ? connectPostgres(config.DATABASE_URL) : openEmbeddedDatabase(config.DATA_DIR);
}
