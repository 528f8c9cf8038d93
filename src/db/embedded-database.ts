import { join } from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import { Kysely } from 'kysely';
import { PGliteDialect } from 'kysely-pglite-dialect';
import type { Database } from './schema.js';

// Embedded PostgreSQL (PGlite) for `npm start`, run on a thread of its own: PGlite executes its WebAssembly on the
// thread that calls it, and a 20 MiB mail held the event loop of the API and the worker for seconds. Here the
// event loop only passes statements and rows to that thread. Everything else is kysely-pglite-dialect's as before:
// one connection at a time (a transaction holds it), rows as PGlite reads them (bytea as Uint8Array).

const ENTRY = new URL(
  import.meta.url.endsWith('.ts') ? './embedded-database-thread.ts' : './embedded-database-thread.js',
  import.meta.url,
).href;
const LOADER = new URL('./thread-loader.mjs', import.meta.url);

export interface EmbeddedThreadData {
  directory: string;
}

export type EmbeddedRequest = { type: 'query'; id: number; sql: string; parameters: unknown[] } | { type: 'close'; id: number };

/** A database error as the thread saw it: name, message and its fields (code, detail, constraint, …). */
export interface SerializedDatabaseError {
  name: string;
  message: string;
  fields: Record<string, string | number>;
}

export type EmbeddedReply =
  | { type: 'ready'; id: 0 }
  | { type: 'result'; id: number; rows: Record<string, unknown>[]; affectedRows?: number }
  | { type: 'error'; id: number; error: SerializedDatabaseError }
  | { type: 'closed'; id: number };

interface Pending {
  resolve(reply: EmbeddedReply): void;
  reject(error: Error): void;
}

/** The error as PGlite threw it, with the fields the callers test (`code` '23505' and the like). */
function rebuildError({ name, message, fields }: SerializedDatabaseError): Error {
  const error = Object.assign(new Error(message), fields);
  error.name = name;
  return error;
}

/** Byte values of at least this size are copied into shared memory a piece at a time. */
const PIECE_BYTES = 1024 * 1024;

/**
 * A statement's value as the thread gets it. Posted as it is, a byte value is copied whole in one go (some 70 ms for a
 * 22 MB mail); a large one is copied into shared memory instead, a piece at a time with the event loop's turns in
 * between. A small one that is part of a larger buffer (a pooled Buffer) goes as a copy of its part: a message
 * carries a typed array's whole buffer.
 */
async function forThread(value: unknown): Promise<unknown> {
  if (!(value instanceof Uint8Array)) return value;
  if (value.byteLength < PIECE_BYTES) return value.byteLength < value.buffer.byteLength ? new Uint8Array(value) : value;
  const shared = new Uint8Array(new SharedArrayBuffer(value.byteLength));
  for (let at = 0; at < value.byteLength; at += PIECE_BYTES) {
    shared.set(value.subarray(at, at + PIECE_BYTES), at);
    await nextTurn();
  }
  return shared;
}

/** The part of PGlite's interface kysely-pglite-dialect uses, answered by the database thread. */
class EmbeddedDatabaseThread {
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private stopped: Error | undefined;

  private constructor(private readonly worker: Worker) {
    worker.unref(); // an idle database keeps no process alive; a statement in flight does (see request)
    worker.on('message', (reply: EmbeddedReply) => {
      const pending = this.pending.get(reply.id);
      if (!pending) return;
      this.pending.delete(reply.id);
      if (this.pending.size === 0) worker.unref();
      pending.resolve(reply);
    });
    worker.on('error', (error) =>
      this.stop(new Error(`the embedded database thread failed: ${error.message}`, { cause: error })),
    );
    worker.on('exit', (code) => this.stop(new Error(`the embedded database thread stopped (exit code ${code})`)));
  }

  /** Starts the thread and opens (or creates) the database in `directory`; an existing one opens as it is. */
  static async start(directory: string): Promise<EmbeddedDatabaseThread> {
    const worker = new Worker(LOADER, {
      workerData: { entry: ENTRY, directory } satisfies EmbeddedThreadData & { entry: string },
      execArgv: [],
    });
    const thread = new EmbeddedDatabaseThread(worker);
    const ready = await thread.request(0, () => undefined);
    if (ready.type === 'error') {
      thread.stopped = new Error('the embedded database did not open');
      await worker.terminate();
      throw rebuildError(ready.error);
    }
    return thread;
  }

  async query(sql: string, parameters: unknown[] = []): Promise<{ rows: Record<string, unknown>[]; affectedRows?: number }> {
    const values: unknown[] = [];
    for (const parameter of parameters) values.push(await forThread(parameter));
    const id = this.nextId++;
    const reply = await this.request(id, () =>
      this.worker.postMessage({ type: 'query', id, sql, parameters: values } satisfies EmbeddedRequest),
    );
    if (reply.type === 'error') throw rebuildError(reply.error);
    if (reply.type !== 'result') throw new Error(`the embedded database thread answered ${reply.type} to a statement`);
    return { rows: reply.rows, ...(reply.affectedRows === undefined ? {} : { affectedRows: reply.affectedRows }) };
  }

  /** Closes the database (PGlite writes what it holds to the directory), then ends the thread. */
  async close(): Promise<void> {
    if (this.stopped) return;
    const id = this.nextId++;
    await this.request(id, () => this.worker.postMessage({ type: 'close', id } satisfies EmbeddedRequest));
    this.stopped = new Error('the embedded database is closed');
    await this.worker.terminate();
  }

  private request(id: number, send: () => void): Promise<EmbeddedReply> {
    if (this.stopped) return Promise.reject(this.stopped);
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.ref(); // a statement in flight keeps the process alive
      send();
    });
  }

  private stop(error: Error) {
    if (!this.stopped) console.error(`${error.message}: every statement from now on fails`);
    this.stopped ??= error;
    for (const pending of this.pending.values()) pending.reject(error);
    this.pending.clear();
  }
}

/** Embedded PostgreSQL (PGlite) in `<dataDir>/pglite`, on a thread of its own: the zero-setup default of `npm start`. */
export async function openEmbeddedDatabase(dataDir: string): Promise<Kysely<Database>> {
  const thread = await EmbeddedDatabaseThread.start(join(dataDir, 'pglite'));
  // The dialect needs only query() and close() of a PGlite instance.
  const client = thread as unknown as ConstructorParameters<typeof PGliteDialect>[0];
  return new Kysely<Database>({ dialect: new PGliteDialect(client) });
}
