import { Kysely, PostgresDialect, type Logger } from 'kysely';
import pg from 'pg';
import { openEmbeddedDatabase } from './embedded-database.js';
import { preparingStatements } from './prepared-statements.js';
import type { Database } from './schema.js';

export { openEmbeddedDatabase } from './embedded-database.js';

export type Db = Kysely<Database>;

/** A pool on a PostgreSQL server: tests, docker-compose and production. */
export function connectPostgres(
  databaseUrl: string,
  options: { maxConnections?: number; /** Kysely's query log (the bench times each statement). */ log?: Logger } = {},
): Db {
  const pool = preparingStatements(new pg.Pool({ connectionString: databaseUrl, max: options.maxConnections ?? 10 }));
  // An idle connection the server drops (restart, failover) must not crash the process; the pool replaces it.
  pool.on('error', (error) => console.warn(`PostgreSQL dropped an idle connection: ${error.message}`));
  return new Kysely<Database>({ dialect: new PostgresDialect({ pool }), ...(options.log ? { log: options.log } : {}) });
}

export async function openDatabase(config: { DATABASE_URL?: string; DATA_DIR: string }): Promise<Db> {
  return config.DATABASE_URL ? connectPostgres(config.DATABASE_URL) : openEmbeddedDatabase(config.DATA_DIR);
}
