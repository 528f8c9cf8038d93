// Latency from IMAP APPEND to the mail stored and its conversation workflow signalled, with the mailbox workflow in IDLE.
import { setTimeout as sleep } from 'node:timers/promises';
import type { ImapFlow } from 'imapflow';
import type { Db } from '../src/db/connection.js';
import { imapMail, type BenchMailbox } from './imap-stack.js';

const WARM_UP_MAILS_PER_MAILBOX = 3;
// Long enough for the sync to finish the last mail and be back in IDLE before the next one lands.
const MIN_PAUSE_MS = 20;
const MAX_PAUSE_MS = 100;
// Only paces the loop: the figures come from the row's timestamps, not from when the poll saw them.
const POLL_INTERVAL_MS = 10;
// Far beyond the goal of 2 s, well short of a session's 10 min of IDLE: a mail IDLE missed shows up as this error.
const STALL_TIMEOUT_MS = 30_000;

export interface ImapLatency {
  mails: number;
  mailboxes: number;
  /** From just before each APPEND to its inbound_messages.signalled_at. */
  latenciesMs: number[];
  /** From just before each APPEND to its inbound_messages.received_at: the IDLE wake-up and FETCH, before the ingest. */
  toStoredMs: number[];
  /** Wall time of the whole loop, pauses included. */
  seconds: number;
}

/**
 * Enables the mailboxes, then appends the mails one at a time into each, after a short random pause each, and times each
 * one. Several mailboxes at once only to fit the run time: each mail still lands while its own session idles.
 */
export async function measureImapLatency(db: Db, mailboxes: BenchMailbox[], mails: number): Promise<ImapLatency> {
  await Promise.all(mailboxes.map((mailbox) => mailbox.enable()));
  // The first mails also wait for each session to log in and reach IDLE, and warm the parser: not counted.
  await Promise.all(
    mailboxes.map((mailbox) =>
      mailbox.withDelivery(async (client) => {
        for (let n = 0; n < WARM_UP_MAILS_PER_MAILBOX; n++) await appendAndWait(db, mailbox, client);
      }),
    ),
  );

  const result: ImapLatency = { mails, mailboxes: mailboxes.length, latenciesMs: [], toStoredMs: [], seconds: 0 };
  let started = 0;
  const lane = (mailbox: BenchMailbox) =>
    mailbox.withDelivery(async (client) => {
      while (started < mails) {
        started++;
        const { latencyMs, toStoredMs } = await appendAndWait(db, mailbox, client);
        result.latenciesMs.push(latencyMs);
        result.toStoredMs.push(toStoredMs);
      }
    });
  const start = Date.now();
  await Promise.all(mailboxes.map(lane));
  result.seconds = (Date.now() - start) / 1000;
  return result;
}

/** After a short random pause, appends one mail and waits until it is signalled. */
async function appendAndWait(
  db: Db,
  mailbox: BenchMailbox,
  client: ImapFlow,
): Promise<{ latencyMs: number; toStoredMs: number }> {
  const { raw, messageId } = imapMail();
  await sleep(MIN_PAUSE_MS + Math.random() * (MAX_PAUSE_MS - MIN_PAUSE_MS));
  // Same clock as signalled_at: the ingest runs in this process and sets it with new Date().
  const appendStart = Date.now();
  await client.append('INBOX', raw);
  const row = await signalledRow(db, mailbox.channelId, messageId);
  return { latencyMs: row.signalled_at.getTime() - appendStart, toStoredMs: row.received_at.getTime() - appendStart };
}

async function signalledRow(db: Db, channelId: string, messageId: string): Promise<{ signalled_at: Date; received_at: Date }> {
  const deadline = Date.now() + STALL_TIMEOUT_MS;
  for (;;) {
    const row = await db
      .selectFrom('inbound_messages')
      .select(['signalled_at', 'received_at', 'status', 'rejection_reason'])
      .where('channel_id', '=', channelId)
      .where('message_id', '=', messageId)
      .executeTakeFirst();
    if (row?.status === 'rejected') throw new Error(`IMAP mail ${messageId} was rejected: ${row.rejection_reason}`);
    if (row?.signalled_at) return { signalled_at: row.signalled_at, received_at: row.received_at };
    if (Date.now() > deadline) {
      throw new Error(
        `IMAP mail ${messageId} was not ${row ? 'signalled' : 'stored'} within ${STALL_TIMEOUT_MS / 1000} s of its APPEND`,
      );
    }
    await sleep(POLL_INTERVAL_MS);
  }
}
