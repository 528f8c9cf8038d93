import { Context } from '@temporalio/activity';
import { sql } from 'kysely';
import { MailRejectedError, ParserBusyError, WorkflowsUnavailableError } from '../ingest/ingest.js';
import type { ActivityDeps } from './deps.js';
import { forgetOldActivityEffects } from './once.js';
import { forgetAbandonedUploads } from '../db/export-pieces.js';

// Mail that was stored but never reached its conversation: the forwarder got a 503 (Temporal away, parser pool
// busy) and did not post again, or the process or IMAP session died between the steps. The mail reconciler
// workflow runs one pass of this about every half minute, so that nothing waits for a sender to retry.

/** Rows one pass takes at most, oldest first; the next pass takes the next ones. */
export const STALLED_MAIL_PER_PASS = 200;
/** After this a pass takes no further row (it gives the rest back); well below the activity's time limit. */
const PASS_BUDGET_MS = 60_000;
/**
 * How long a pass holds the rows it took, unless it gives them back: longer than a pass can run. A row whose
 * resumption failed for an unknown reason stays held until then, so a mail that always fails is tried every few
 * minutes, not every pass.
 */
const RESUME_LEASE_MS = 5 * 60_000;

export interface ResumeStalledMailInput {
  /** Mail younger than this is left alone: the delivery that stored it may still be at work. */
  graceMs: number;
  limit?: number;
}

/** What one pass did, for the reconciler's details in the Temporal UI. */
export interface StalledMailPass {
  /** Stalled rows this pass took. */
  found: number;
  /** Handed to their conversations now. */
  resumed: number;
  /** Could not be parsed: in the quarantine now, with the reason. */
  quarantined: number;
  /** Failed otherwise; held for a later pass. */
  failed: number;
  /** Why the pass stopped before the end of what it took; the next pass goes on. */
  stoppedEarly?: string;
}

interface Claim {
  ids: string[];
  /** The lease's end, which is also the pass's mark on its rows: giving them back touches only rows still marked so. */
  until: Date;
}

export function createReconcileActivities({ db, ingest }: Pick<ActivityDeps, 'db' | 'ingest'>) {
  /**
   * Takes up to `limit` stalled rows, oldest first: threaded but never signalled, or received (with its bytes) but
   * never parsed, older than the grace period and held by no other pass. Quarantined (rejected) mail is not
   * touched; a web-form submission never threaded is left to its request's repetition, which knows its contact.
   * SKIP LOCKED lets two passes at once take different rows, and the lease keeps them apart afterwards.
   */
  async function claimStalledMail(graceMs: number, limit: number): Promise<Claim> {
    const { rows } = await sql<{ id: string; received_at: Date; resume_claimed_until: Date }>`
      update inbound_messages
        set resume_claimed_until = date_trunc('milliseconds', now()) + ${RESUME_LEASE_MS} * interval '1 millisecond'
        where id in (
          select id from inbound_messages
            where signalled_at is null
              and (status = 'threaded' or (status = 'received' and raw is not null and received_via <> 'form'))
              and received_at < now() - ${graceMs} * interval '1 millisecond'
              and (resume_claimed_until is null or resume_claimed_until < now())
            order by received_at
            limit ${limit}
            for update skip locked)
        returning id, received_at, resume_claimed_until`.execute(db);
    rows.sort((a, b) => a.received_at.getTime() - b.received_at.getTime());
    return { ids: rows.map((row) => row.id), until: rows[0]?.resume_claimed_until ?? new Date(0) };
  }

  /** Lets the next pass take these rows at once. */
  async function giveBack(claim: Claim, ids: string[]) {
    if (ids.length === 0) return;
    await db
      .updateTable('inbound_messages')
      .set({ resume_claimed_until: null })
      .where('id', 'in', ids)
      .where('resume_claimed_until', '=', claim.until)
      .execute();
  }

  return {
    /** One reconciler pass: resumes each stalled mail through the ingest, as its own delivery would have finished it. */
    async resumeStalledMail({ graceMs, limit = STALLED_MAIL_PER_PASS }: ResumeStalledMailInput): Promise<StalledMailPass> {
      const context = Context.current();
      // Housekeeping that rides along: results kept so that activity retries do nothing twice (src/activities/once.ts).
      await forgetOldActivityEffects(db);
      // ... and the pieces of mailbox exports whose upload was cut off (src/db/export-pieces.ts).
      await forgetAbandonedUploads(db);
      const claim = await claimStalledMail(graceMs, limit);
      const pass: StalledMailPass = { found: claim.ids.length, resumed: 0, quarantined: 0, failed: 0 };
      const startedAt = Date.now();
      for (const [index, id] of claim.ids.entries()) {
        context.heartbeat({ done: index, of: claim.ids.length });
        if (context.cancellationSignal.aborted) {
          await giveBack(claim, claim.ids.slice(index));
          context.cancellationSignal.throwIfAborted();
        }
        if (Date.now() - startedAt > PASS_BUDGET_MS) {
          await giveBack(claim, claim.ids.slice(index));
          return { ...pass, stoppedEarly: 'out of time; the next pass goes on' };
        }
        try {
          await ingest.resumeStored(id);
          pass.resumed++;
        } catch (error) {
          // Temporal or the parser pool is away for this mail as for the next: the next pass tries them all again.
          if (error instanceof WorkflowsUnavailableError || error instanceof ParserBusyError) {
            await giveBack(claim, claim.ids.slice(index));
            const why = error instanceof ParserBusyError ? 'the parser pool is busy' : 'Temporal did not answer';
            context.log.warn('mail reconciler pass stopped early', { reason: why, inboundMessageId: id });
            return { ...pass, stoppedEarly: why };
          }
          if (error instanceof MailRejectedError) {
            pass.quarantined++;
            continue;
          }
          pass.failed++;
          context.log.error('stored mail could not be resumed', { inboundMessageId: id, error: (error as Error).message });
        }
      }
      return pass;
    },
  };
}
