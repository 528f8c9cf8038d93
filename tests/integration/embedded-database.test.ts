import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openEmbeddedDatabase, type Db } from '../../src/db/connection.js';
import { migrateToLatest } from '../../src/db/migrate.js';
import { createAccount, createChannel } from '../../src/db/seed.js';

// `npm start`'s embedded PostgreSQL (PGlite), which runs on a thread of its own: transactions, statements from
// many callers at once (the API and the worker share it), errors as the callers test them, and a data directory
// that keeps its data when the process starts again.
describe('the embedded database (npm start)', () => {
  let dataDir: string;
  let db: Db;

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'mailroom-embedded-'));
    db = await openEmbeddedDatabase(dataDir);
    await migrateToLatest(db);
  });

  afterAll(async () => {
    await db?.destroy();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('commits a transaction whole and rolls a failed one back whole', async () => {
    const kept = await db.transaction().execute(async (trx) => {
      const account = await createAccount(trx, 'Kept');
      await createChannel(trx, { accountId: account.id, name: 'Kept support', emailAddress: 'kept@acme.example' });
      return account;
    });
    const failure = await db
      .transaction()
      .execute(async (trx) => {
        const account = await createAccount(trx, 'Rolled back');
        await createChannel(trx, { accountId: account.id, name: 'Gone', emailAddress: 'gone@acme.example' });
        throw new Error('the caller gives up');
      })
      .catch((error: unknown) => error);
    expect(failure).toEqual(new Error('the caller gives up'));

    const accounts = await db.selectFrom('accounts').select('name').where('name', 'in', ['Kept', 'Rolled back']).execute();
    expect(accounts).toEqual([{ name: 'Kept' }]);
    const channels = await db.selectFrom('channels').select('account_id').where('name', 'in', ['Kept support', 'Gone']).execute();
    expect(channels).toEqual([{ account_id: kept.id }]);
  });

  it('keeps an open transaction apart from the statements other callers make meanwhile', async () => {
    const account = await createAccount(db, 'Busy');
    let releaseTransaction!: () => void;
    const holding = new Promise<void>((resolve) => (releaseTransaction = resolve));
    let inTransaction!: () => void;
    const begun = new Promise<void>((resolve) => (inTransaction = resolve));
    const transaction = db.transaction().execute(async (trx) => {
      await trx.updateTable('accounts').set({ name: 'Busy, renamed' }).where('id', '=', account.id).execute();
      inTransaction();
      await holding;
      // Still this transaction's view: its own change, and none of the statements queued meanwhile.
      return trx.selectFrom('accounts').select('name').where('id', '=', account.id).executeTakeFirstOrThrow();
    });
    await begun;
    // Twenty callers at once, as the API's requests and the worker's activities make them.
    const others = Array.from({ length: 20 }, (_, n) =>
      n % 2 === 0
        ? createAccount(db, `Caller ${n}`).then(({ id }) => id)
        : db
            .selectFrom('accounts')
            .select('name')
            .where('id', '=', account.id)
            .executeTakeFirstOrThrow()
            .then(({ name }) => name),
    );
    releaseTransaction();
    expect(await transaction).toEqual({ name: 'Busy, renamed' });
    const answers = await Promise.all(others);
    // Queued behind the transaction, the readers see it committed.
    expect(answers.filter((_, n) => n % 2 === 1)).toEqual(Array.from({ length: 10 }, () => 'Busy, renamed'));
    const created = answers.filter((_, n) => n % 2 === 0);
    const stored = await db.selectFrom('accounts').select('id').where('id', 'in', created).execute();
    expect(stored).toHaveLength(10);
  });

  it('hands database errors over with their code, and byte values unchanged', async () => {
    const account = await createAccount(db, 'Errors');
    const channel = await createChannel(db, { accountId: account.id, name: 'Errors', emailAddress: 'errors@acme.example' });
    const duplicate = await db
      .insertInto('channels')
      .values({
        id: channel.id,
        account_id: account.id,
        name: 'Twice',
        email_address: 'errors@acme.example',
        forwarder_secret_hash: 'x',
      })
      .execute()
      .catch((error: unknown) => error as { code?: string; message: string });
    expect(duplicate).toMatchObject({ code: '23505', message: expect.stringMatching(/duplicate key/) });

    const bytes = randomBytes(3 * 1024 * 1024);
    const { rows } = await sql<{
      echoed: Uint8Array;
      length: number;
    }>`select ${bytes}::bytea as echoed, octet_length(${bytes}::bytea) as length`.execute(db);
    expect(rows[0]!.length).toBe(bytes.length);
    expect(Buffer.from(rows[0]!.echoed).equals(bytes)).toBe(true);
  });

  it('opens a data directory that PGlite wrote on the main thread, as npm start did before', async () => {
    const earlier = mkdtempSync(join(tmpdir(), 'mailroom-embedded-earlier-'));
    try {
      const { PGlite } = await import('@electric-sql/pglite');
      const onMainThread = await PGlite.create(join(earlier, 'pglite'));
      await onMainThread.exec("create table kept (note text); insert into kept values ('written before')");
      await onMainThread.close();

      const reopened = await openEmbeddedDatabase(earlier);
      try {
        const { rows } = await sql<{ note: string }>`select note from kept`.execute(reopened);
        expect(rows).toEqual([{ note: 'written before' }]);
      } finally {
        await reopened.destroy();
      }
    } finally {
      rmSync(earlier, { recursive: true, force: true });
    }
  });

  it('fails to open, naming the reason, where its directory cannot be made', async () => {
    const notADirectory = join(dataDir, 'a-file');
    writeFileSync(notADirectory, 'not a directory');
    await expect(openEmbeddedDatabase(notADirectory)).rejects.toThrow(/ENOTDIR|not a directory/);
  });

  it('keeps its data when opened again from the same directory', async () => {
    const account = await createAccount(db, 'Survives a restart');
    await db.destroy();
    db = await openEmbeddedDatabase(dataDir);
    await migrateToLatest(db); // an existing database: nothing to do
    const found = await db.selectFrom('accounts').select('name').where('id', '=', account.id).executeTakeFirst();
    expect(found).toEqual({ name: 'Survives a restart' });
  });
});
