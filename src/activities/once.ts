import { Context } from '@temporalio/activity';
import { sql, type Kysely, type QueryCreator, type Transaction } from 'kysely';
import type { Database } from '../db/schema.js';

/** How long a kept result is needed: a retry of a committed attempt comes within seconds to minutes. */
const KEPT_FOR = '1 day';

/**
 * Runs `work` once per activity execution, inside the caller's transaction: a retry of an attempt that
 * committed (the worker died before it could report, or the answer came too late) gets the first attempt's
 * result instead of doing it again, so nothing lands twice on a timeline and no assignment is made twice.
 * Keyed by the workflow run and the activity's id, which all attempts share; a second attempt running at
 * the same time waits for the first's transaction. Outside an activity (a test calling it directly) it just runs.
 */
export async function once<T>(trx: Transaction<Database>, work: () => Promise<T>): Promise<T> {
  const key = activityExecutionKey();
  if (!key) return work();
  const claim = await claimOnce<T>(trx, key);
  if (!claim.claimed) return claim.kept;
  const result = await work();
  // Work without a result (most writes) keeps none: a retry reads null, and that round trip is saved.
  if (result === undefined) return result;
  await trx
    .updateTable('activity_effects')
    .set({ result: JSON.stringify(result) })
    .where('key', '=', key)
    .execute();
  return result;
}

/**
 * `once` in a transaction of its own, for work whose result is known before it runs: the claim keeps the result in
 * the same round trip, and a retry of a committed attempt answers with the first attempt's.
 */
export async function onceWithResult<T>(
  db: Kysely<Database>,
  result: T,
  work: (trx: Transaction<Database>) => Promise<void>,
): Promise<T> {
  return db.transaction().execute(async (trx) => {
    const key = activityExecutionKey();
    if (key) {
      const claim = await claimOnce<T>(trx, key, result);
      if (!claim.claimed) return claim.kept;
    }
    await work(trx);
    return result;
  });
}

/**
 * The claim of an activity execution's key (keeping `result`) as a statement, for `once` or for a statement that makes
 * its change only when the claim returns the key: nothing when an attempt claimed it first (a concurrent one waits
 * for that attempt's commit).
 */
export function claimStatement(db: QueryCreator<Database>, key: string, result?: unknown) {
  return db
    .insertInto('activity_effects')
    .values({ key, ...(result === undefined ? {} : { result: JSON.stringify(result) }) })
    .onConflict((oc) => oc.column('key').doNothing())
    .returning('key');
}

/**
 * What `read` answered the first attempt of this activity execution, for a read that the steps after it change (its
 * task's later writes): a local activity run again with its workflow task, after a worker died in that task, answers as
 * the first attempt did, so that the task decides the same and takes the same steps (their `once` keys are their
 * sequence numbers). One more statement when it runs the first time; outside an activity it just reads.
 */
export async function keptRead<T>(db: Kysely<Database>, part: string, read: () => Promise<T>): Promise<T> {
  const key = activityExecutionKey(part);
  if (!key) return read();
  const answer = await read();
  const claim = await claimOnce(db, key, answer);
  return claim.claimed ? answer : claim.kept;
}

/** Claims the key for this attempt (keeping `result`), or reads what the attempt that claimed it first kept. */
async function claimOnce<T>(
  db: Kysely<Database>,
  key: string,
  result?: T,
): Promise<{ claimed: true } | { claimed: false; kept: T }> {
  const claimed = await claimStatement(db, key, result).executeTakeFirst();
  if (claimed) return { claimed: true };
  return { claimed: false, kept: await keptResultOf<T>(db, key) };
}

/** What the attempt that claimed `key` first kept (null: it kept nothing). */
export async function keptResultOf<T>(db: Kysely<Database>, key: string): Promise<T> {
  const kept = await db.selectFrom('activity_effects').select('result').where('key', '=', key).executeTakeFirstOrThrow();
  return kept.result as T;
}

/** Forgets results no retry can ask for any more. */
export async function forgetOldActivityEffects(db: Kysely<Database>): Promise<number> {
  const deleted = await db
    .deleteFrom('activity_effects')
    .where('created_at', '<', sql<Date>`now() - ${KEPT_FOR}::interval`)
    .executeTakeFirst();
  return Number(deleted.numDeletedRows);
}

/**
 * What all attempts of this activity execution share (`part`: one of several things kept for it); undefined outside an
 * activity, or one without a workflow.
 */
export function activityExecutionKey(part?: string): string | undefined {
  let info;
  try {
    info = Context.current().info;
  } catch {
    return undefined; // not in an activity
  }
  // A standalone activity (no workflow) has no run to key by.
  // Local activities number themselves apart from activities: the same id may name one of each in a run.
  if (!info.workflowExecution) return undefined;
  return `${info.workflowExecution.runId}/${info.isLocal ? 'local-' : ''}${info.activityId}${part ? `/${part}` : ''}`;
}

/** `once` in a transaction of its own: the usual shape of an activity that changes the database. */
export function onceInTransaction<T>(db: Kysely<Database>, work: (trx: Transaction<Database>) => Promise<T>): Promise<T> {
  return db.transaction().execute((trx) => once(trx, () => work(trx)));
}
