import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { connectPostgres, type Db } from '../../src/db/connection.js';

// A database of its own on a PostgreSQL server, for one test file, one bench run or one fuzz run:
// empty (the caller migrates it); drop() closes the pool and removes the database.

export interface ScratchDatabase {
  db: Db;
  url: string;
  drop(): Promise<void>;
}

export async function createScratchDatabase(
  serverUrl: string,
  options: { prefix: string; maxConnections?: number },
): Promise<ScratchDatabase> {
  const name = `${options.prefix}_${randomBytes(6).toString('hex')}`;
  await runAdminStatement(serverUrl, `create database ${name}`);
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  const db = connectPostgres(url.toString(), { ...(options.maxConnections ? { maxConnections: options.maxConnections } : {}) });
  return {
    db,
    url: url.toString(),
    async drop() {
      await db.destroy();
      await runAdminStatement(serverUrl, `drop database if exists ${name} with (force)`);
    },
  };
}

async function runAdminStatement(serverUrl: string, statement: string): Promise<void> {
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  try {
    await admin.query(statement);
  } finally {
    await admin.end();
  }
}
