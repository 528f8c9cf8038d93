import { mkdirSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import type { EmbeddedReply, EmbeddedRequest, EmbeddedThreadData, SerializedDatabaseError } from './embedded-database.js';

// The embedded PostgreSQL's own thread: PGlite's WebAssembly runs here, so that a long statement (a 20 MiB mail's
// bytes, a migration) never holds the event loop of the API and worker beside it. It answers one request at a time,
// in order; the connection's queue on the other side keeps a transaction's statements together.

const { directory } = workerData as EmbeddedThreadData;
const port = parentPort!;

const BYTEA = 17;

/**
 * bytea to and from PostgreSQL's hex text with Node's native codec: PGlite's own goes a byte at a time through an
 * array of strings (seconds, and hundreds of MB of garbage, for a 20 MiB mail). Values read come back as PGlite
 * returns them, a Uint8Array with a buffer of its own.
 */
const byteaHex = {
  serialize: (value: unknown): string => {
    if (!(value instanceof Uint8Array)) throw new Error('Invalid input for bytea type');
    return `\\x${Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('hex')}`;
  },
  parse: (text: string): Uint8Array => new Uint8Array(Buffer.from(text.slice(2), 'hex')),
};

/** What PGlite's errors carry besides the message (code, detail, constraint, …): the callers test `code`. */
function serializeError(error: unknown): SerializedDatabaseError {
  if (!(error instanceof Error)) return { name: 'Error', message: String(error), fields: {} };
  const fields: Record<string, string | number> = {};
  for (const [key, value] of Object.entries(error)) {
    if (typeof value === 'string' || typeof value === 'number') fields[key] = value;
  }
  return { name: error.name, message: error.message, fields };
}

/** The buffers of the whole-buffer byte values in the rows: moved to the other thread rather than copied. */
function transferablesOf(rows: readonly Record<string, unknown>[]): ArrayBuffer[] {
  const buffers = new Set<ArrayBuffer>();
  for (const row of rows) {
    for (const value of Object.values(row)) {
      if (
        value instanceof Uint8Array &&
        value.buffer instanceof ArrayBuffer &&
        value.byteOffset === 0 &&
        value.byteLength === value.buffer.byteLength
      ) {
        buffers.add(value.buffer);
      }
    }
  }
  return [...buffers];
}

function reply(message: EmbeddedReply, transfer: ArrayBuffer[] = []) {
  try {
    port.postMessage(message, transfer);
  } catch {
    port.postMessage(message); // a buffer that cannot be moved is copied
  }
}

async function main() {
  const { PGlite } = await import('@electric-sql/pglite');
  mkdirSync(directory, { recursive: true });
  const pglite = await PGlite.create(directory, {
    serializers: { [BYTEA]: byteaHex.serialize },
    parsers: { [BYTEA]: byteaHex.parse },
  });
  port.on('message', (request: EmbeddedRequest) => {
    void (async () => {
      if (request.type === 'close') {
        await pglite.close();
        reply({ id: request.id, type: 'closed' });
        return;
      }
      try {
        const result = await pglite.query<Record<string, unknown>>(request.sql, request.parameters);
        reply(
          { id: request.id, type: 'result', rows: result.rows, affectedRows: result.affectedRows },
          transferablesOf(result.rows),
        );
      } catch (error) {
        reply({ id: request.id, type: 'error', error: serializeError(error) });
      }
    })();
  });
  reply({ id: 0, type: 'ready' });
}

main().catch((error: unknown) => reply({ id: 0, type: 'error', error: serializeError(error) }));
