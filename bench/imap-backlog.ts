// Backlog drain: mails waiting in a mailbox before IMAP is enabled, then read by the mailbox sync until all are signalled.
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { sql } from 'kysely';
import type { Db } from '../src/db/connection.js';
import { imapMail, type BenchMailbox } from './imap-stack.js';

// Only paces the loop: the figure comes from the signalled_at timestamps, not from when the poll saw them.
const POLL_INTERVAL_MS = 100;
// The mailbox workflow retries a failed session after 5 s and more; this long without progress means it is stuck.
const STALL_TIMEOUT_MS = 30_000;

export interface BacklogDrain {
  mails: number;
  /** From enabling IMAP to the last mail signalled: workflow start and IMAP login included, as a user would wait. */
  seconds: number;
  /** From enabling IMAP to the first mail signalled. */
  firstMailMs: number;
  /** Time the APPENDs of the backlog took (not part of the drain). */
  appendSeconds: number;
}

export async function measureBacklogDrain(db: Db, mailbox: BenchMailbox, mails: number): Promise<BacklogDrain> {
  const appendStart = performance.now();
  await mailbox.withDelivery(async (client) => {
    for (let n = 0; n < mails; n++) await client.append('INBOX', imapMail().raw);
  });
  const appendSeconds = (performance.now() - appendStart) / 1000;

  // Same clock as signalled_at: the ingest runs in this process and sets it with new Date().
  const enabledAt = Date.now();
  await mailbox.enable();
  const { first, last } = await waitUntilAllSignalled(db, mailbox.channelId, mails);
  return { mails, seconds: (last.getTime() - enabledAt) / 1000, firstMailMs: first.getTime() - enabledAt, appendSeconds };
}

async function waitUntilAllSignalled(db: Db, channelId: string, mails: number): Promise<{ first: Date; last: Date }> {
  let signalledBefore = 0;
  let progressAt = Date.now();
  for (;;) {
    const { rows } = await sql<{ signalled: string; rejected: string; first: Date | null; last: Date | null }>`
      select count(signalled_at) as signalled, count(*) filter (where status = 'rejected') as rejected,
             min(signalled_at) as first, max(signalled_at) as last
        from inbound_messages where channel_id = ${channelId}`.execute(db);
    const progress = rows[0]!;
    const signalled = Number(progress.signalled);
    if (Number(progress.rejected) > 0) throw new Error(`backlog drain: ${progress.rejected} mails were rejected`);
    if (signalled >= mails) return { first: progress.first!, last: progress.last! };
    if (signalled > signalledBefore) [signalledBefore, progressAt] = [signalled, Date.now()];
    if (Date.now() - progressAt > STALL_TIMEOUT_MS) {
      throw new Error(`backlog drain stalled at ${signalled} of ${mails} mails signalled for ${STALL_TIMEOUT_MS / 1000} s`);
    }
    await sleep(POLL_INTERVAL_MS);
  }
}
