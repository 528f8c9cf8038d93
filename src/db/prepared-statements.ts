import type pg from 'pg';

// Every statement Mailroom sends is one of a few hundred texts with parameters: each connection prepares a text the
// first time it runs it and afterwards only binds and executes it, so PostgreSQL parses and plans it once per
// connection instead of at every call (about a third less of its CPU per ingested mail in the bench).

/** Distinct texts prepared per pool; beyond them (lists of values of every length) statements run unnamed. */
const MAX_PREPARED = 500;
/** A text longer than this (a bulk insert of many rows) runs unnamed: it is rarely the same twice. */
const MAX_PREPARED_TEXT = 4096;

type Query = (...args: unknown[]) => Promise<unknown>;

/** Has each connection of the pool prepare the statements it runs (by name), as Kysely's driver calls them. */
export function preparingStatements(pool: pg.Pool): pg.Pool {
  const names = new Map<string, string>();
  const nameOf = (text: string) => {
    let name = names.get(text);
    if (!name && names.size < MAX_PREPARED && text.length <= MAX_PREPARED_TEXT) {
      name = `mailroom_${names.size}`;
      names.set(text, name);
    }
    return name;
  };
  pool.on('connect', (client) => {
    const query = client.query.bind(client) as Query;
    const runNamed = async (name: string, text: string, values: unknown[]) => {
      try {
        return await query({ name, text, values });
      } catch (error) {
        if (!changedResultType(error)) throw error;
        // A migration (a deploy beside this process) changed what the statement returns since it was prepared
        // here: prepared again, it answers as the table is now. Inside a transaction (aborted by the failure, so
        // nothing can be deallocated) the failure stands, and the next call after it recovers.
        try {
          await query(`deallocate ${name}`);
        } catch {
          throw error;
        }
        delete (client as unknown as PreparedOnConnection).connection.parsedStatements[name];
        return query({ name, text, values });
      }
    };
    // Kysely calls query(text, values); anything else (a config object, a callback, a cursor) goes through as it is.
    (client as unknown as { query: Query }).query = (...args: unknown[]) => {
      const [text, values] = args;
      const name = args.length === 2 && typeof text === 'string' && Array.isArray(values) ? nameOf(text) : undefined;
      return name ? runNamed(name, text as string, values as unknown[]) : query(...args);
    };
  });
  return pool;
}

/** What pg keeps of the statements a connection prepared. */
interface PreparedOnConnection {
  connection: { parsedStatements: Record<string, string> };
}

/** PostgreSQL refuses a prepared statement whose result columns changed under it (SQLSTATE 0A000). */
function changedResultType(error: unknown): boolean {
  const { code, message } = error as { code?: unknown; message?: unknown };
  return code === '0A000' && typeof message === 'string' && message.includes('must not change result type');
}
