import { createHash } from 'node:crypto';
import { ApplicationFailure, Context } from '@temporalio/activity';
import type { ImapFlow, MailboxObject } from 'imapflow';
import { sql } from 'kysely';
import { recordPathFailure, recordPathSuccess } from '../db/channel-health.js';
import type { Channel } from '../db/schema.js';
import { MailRejectedError, type IngestOptions, type MailSource } from '../ingest/ingest.js';
import {
  createImapClient,
  describeImapFailure,
  fetchMailHeads,
  type ImapFailure,
  type ImapSettings,
  type MailHead,
} from '../mail/imap-connection.js';
import { createMailboxLogins, ImapSettingsIncompleteError } from '../mail/mailbox-login.js';
import { dedupeKey, NOT_MIME, ParserBusyError, readHeaderSection } from '../mail/parse.js';
import { ReauthorizationRequiredError, TokenRefreshFailedError } from '../oauth/access-tokens.js';
import { DestinationRefusedError, DestinationUnresolvedError, resolveDestination } from '../security/destinations.js';
import type { ActivityDeps } from './deps.js';
import { InOrderWindow } from './in-order-window.js';
import { openSentFolderSession } from './sent-folder.js';

export interface MailboxSyncResult {
  /**
   * 'disabled': IMAP is switched off for the channel; the mailbox workflow ends. 'reauthorization_required': the
   * mailbox's OAuth grant needs an admin; the workflow waits for the reconnect's settings signal. 'unreachable':
   * connecting or logging in failed; the workflow says why and tries again after a pause.
   */
  state: 'synced' | 'disabled' | 'reauthorization_required' | 'unreachable';
  /** With reauthorization_required: the provider's or the server's reason. */
  reason?: string;
  /** With unreachable: what failed (coarse reason, fixed text), since when the mailbox has been failing, and the server's words. */
  failure?: ImapFailure & { host: string; since: string; serverSaid: string };
  ingested: number;
  /** Without IDLE the workflow polls at this interval. */
  idleSupported: boolean;
  pollIntervalSeconds: number;
}

/** What the server itself said, one bounded line: for the operator's eyes in the Temporal UI only. */
function serverWords(error: unknown): string {
  const said = (error instanceof Error ? error.message : String(error)).replace(/\p{Cc}+/gu, ' ').trim();
  return said.length > 200 ? `${said.slice(0, 200)}…` : said;
}

// One activity run is one IMAP session: drain, then IDLE until new mail, drain again, ... for this long.
const SESSION_MS = 10 * 60_000;
// Sizes and envelopes of this many mails per FETCH: a few hundred bytes each.
const FETCH_BATCH = 25;
// Mails of one session being ingested at once: the session keeps pace with a forwarder posting as many in parallel.
const MAILS_IN_FLIGHT = 16;
// A mail larger than this is ingested alone, so that a session never holds more than 16 MiB of small mails at once.
const LARGE_MAIL_BYTES = 1024 * 1024;
// Bodies are fetched a few at a time up to this many bytes, so a run of large mails is never held at once.
const DOWNLOAD_BATCH_BYTES = 8 * 1024 * 1024;
const HEARTBEAT_EVERY_MS = 5_000;
// The parser pool's queue is full: the same mail is handed over again after this pause.
const PARSER_BUSY_PAUSE_MS = 500;
const DAY_MS = 24 * 60 * 60_000;

/** How far a folder is read, and which part of it is the history that was there before the first sync. */
interface FolderCursor {
  lastUid: number;
  /** Mail up to this UID was in the folder when it was first synced (or renumbered); null: none of it is history. */
  historyLastUid: number | null;
  /** When the folder was first synced: history that arrived before then is imported, within the channel's import days. */
  importedBefore: Date | null;
}

/** What the server says about a mail before its download. */
type MailPlan = { head: MailHead; imported: boolean } & (
  { action: 'skip'; why: 'older than the import days' | 'stored already' } | { action: 'quarantine' } | { action: 'download' }
);

/** A mail marked for download by a reprocess request (status received, no bytes yet). */
interface RequestedMail {
  id: string;
  message_id: string;
  imported: boolean;
  source_folder: string | null;
  source_uid_validity: string | null;
  source_uid: string | null;
}

export function createMailboxActivities({ db, ingest, secretKey, allowedPrivateNetworks, oauthClients }: ActivityDeps) {
  const logins = createMailboxLogins({ db, secretKey, allowedPrivateNetworks, ...(oauthClients ? { oauthClients } : {}) });

  /** How to log in now (password, or a fresh enough access token); a grant that needs an admin is thrown as it is. */
  async function settingsOf(channel: Channel): Promise<ImapSettings> {
    try {
      return await logins.imapSettings(channel);
    } catch (error) {
      if (error instanceof ImapSettingsIncompleteError) {
        throw ApplicationFailure.nonRetryable(error.message, 'ImapSettingsIncomplete');
      }
      // The provider is away: the session is retried with backoff like any connection failure.
      if (error instanceof TokenRefreshFailedError) throw ApplicationFailure.retryable(error.message, 'OAuthRefreshFailed');
      throw error;
    }
  }

  /** The IMAP host's address as the destination policy allows it; refused or unresolved, the session fails and is retried. */
  async function destinationOf(settings: ImapSettings) {
    try {
      return await resolveDestination(settings.host, allowedPrivateNetworks);
    } catch (error) {
      if (error instanceof DestinationRefusedError) {
        throw ApplicationFailure.retryable(`IMAP refused: ${error.message} (${error.address})`, 'ImapDestinationRefused');
      }
      if (error instanceof DestinationUnresolvedError) {
        throw ApplicationFailure.retryable(`IMAP dns: ${error.message}`, 'Imap_dns');
      }
      throw error;
    }
  }

  /**
   * The folder's position. A folder seen for the first time starts at its end, or at the first mail of the
   * channel's import days; a new UIDVALIDITY means its UIDs were renumbered, so it is read again from the start.
   */
  async function cursorOf(client: ImapFlow, channel: Channel, folder: string, mailbox: MailboxObject): Promise<FolderCursor> {
    const stored = await db
      .selectFrom('imap_cursors')
      .select(['uid_validity', 'last_uid', 'history_last_uid', 'imported_before'])
      .where('channel_id', '=', channel.id)
      .where('folder', '=', folder)
      .executeTakeFirst();
    if (stored && BigInt(stored.uid_validity) === mailbox.uidValidity) {
      return {
        lastUid: Number(stored.last_uid),
        historyLastUid: stored.history_last_uid === null ? null : Number(stored.history_last_uid),
        importedBefore: stored.imported_before,
      };
    }
    const lastExisting = await lastUidIn(client, mailbox);
    let cursor: FolderCursor;
    if (!stored) {
      const importedBefore = new Date();
      const firstImported =
        channel.imap_import_days > 0 && lastExisting > 0
          ? await firstUidSince(client, importStart(channel, importedBefore), lastExisting)
          : undefined;
      cursor = { lastUid: firstImported ? firstImported - 1 : lastExisting, historyLastUid: lastExisting, importedBefore };
    } else {
      // Folders first read before import days existed were read from UID 1: everything in them counts as new, as then.
      const importedBefore = stored.imported_before;
      cursor = { lastUid: 0, historyLastUid: importedBefore ? lastExisting : null, importedBefore };
    }
    const values = {
      uid_validity: mailbox.uidValidity.toString(),
      last_uid: cursor.lastUid,
      history_last_uid: cursor.historyLastUid,
      imported_before: cursor.importedBefore,
    };
    await db
      .insertInto('imap_cursors')
      .values({ channel_id: channel.id, folder, ...values })
      .onConflict((oc) => oc.columns(['channel_id', 'folder']).doUpdateSet({ ...values, updated_at: sql`now()` }))
      .execute();
    return cursor;
  }

  /** The UID of the folder's newest mail now (uidNext is only as fresh as the last SELECT). */
  async function lastUidIn(client: ImapFlow, mailbox: MailboxObject): Promise<number> {
    const newest = mailbox.exists > 0 ? await client.fetchOne('*', { uid: true }) : undefined;
    return newest ? newest.uid : Number(mailbox.uidNext) - 1;
  }

  /** The lowest UID up to `lastUid` that arrived since `start` (SEARCH SINCE is by day: one day earlier, then by the minute). */
  async function firstUidSince(client: ImapFlow, start: Date, lastUid: number): Promise<number | undefined> {
    const found = await client.search({ since: new Date(start.getTime() - DAY_MS), uid: `1:${lastUid}` }, { uid: true });
    return found && found.length > 0 ? Math.min(...found) : undefined;
  }

  function importStart(channel: Channel, importedBefore: Date): Date {
    return new Date(importedBefore.getTime() - channel.imap_import_days * DAY_MS);
  }

  async function advanceCursor(channelId: string, folder: string, uidValidity: bigint, uid: number) {
    await db
      .updateTable('imap_cursors')
      .set({ last_uid: uid, updated_at: sql`now()` })
      .where('channel_id', '=', channelId)
      .where('folder', '=', folder)
      .where('uid_validity', '=', uidValidity.toString())
      .where('last_uid', '<', String(uid))
      .execute();
  }

  /** The key a mail without a Message-ID is quarantined under before its download: stable for its place on the server. */
  function placeKey(source: MailSource): string {
    const folder = createHash('sha256').update(source.folder).digest('hex').slice(0, 16);
    return `<imap-${source.uidValidity}-${source.uid}-${folder}@undownloaded.mailroom.invalid>`;
  }

  /** Of these Message-IDs, those whose mail is stored and its conversation signalled: nothing is left to do for them. */
  async function signalledAmong(channelId: string, messageIds: string[]): Promise<Set<string>> {
    if (messageIds.length === 0) return new Set();
    const rows = await db
      .selectFrom('inbound_messages')
      .select('message_id')
      .where('channel_id', '=', channelId)
      .where('message_id', 'in', messageIds)
      .where('signalled_at', 'is not', null)
      .execute();
    return new Set(rows.map((row) => row.message_id));
  }

  /**
   * What to do with each mail, decided before any body is fetched: history older than the import days is left
   * alone, a mail over the channel's limit is quarantined as it is, a mail stored already is not fetched again.
   */
  async function planMail(channel: Channel, cursor: FolderCursor, heads: MailHead[]): Promise<MailPlan[]> {
    const stored = await signalledAmong(
      channel.id,
      heads.flatMap((head) => head.messageId ?? []),
    );
    const { historyLastUid, importedBefore } = cursor;
    return heads.map((head): MailPlan => {
      let imported = false;
      // History that arrived before the first sync; a renumbered folder's mail from after it is read as new mail.
      const arrivedBefore = (moment: Date) => !head.internalDate || head.internalDate < moment;
      if (historyLastUid !== null && importedBefore && head.uid <= historyLastUid && arrivedBefore(importedBefore)) {
        if (arrivedBefore(importStart(channel, importedBefore))) {
          return { head, imported, action: 'skip', why: 'older than the import days' };
        }
        imported = true;
      }
      if (head.size > channel.max_inbound_bytes) return { head, imported, action: 'quarantine' };
      if (head.messageId && stored.has(head.messageId)) return { head, imported, action: 'skip', why: 'stored already' };
      return { head, imported, action: 'download' };
    });
  }

  /** The bodies of the mails to download from `from` on, as many as fit in one FETCH of DOWNLOAD_BATCH_BYTES. */
  async function downloadFrom(client: ImapFlow, plans: MailPlan[], from: number): Promise<Map<number, Buffer>> {
    const uids: number[] = [];
    let bytes = 0;
    for (const plan of plans.slice(from)) {
      if (plan.action !== 'download') continue;
      if (uids.length > 0 && bytes + plan.head.size > DOWNLOAD_BATCH_BYTES) break;
      uids.push(plan.head.uid);
      bytes += plan.head.size;
    }
    const bodies = new Map<number, Buffer>();
    for await (const message of client.fetch(uids.join(','), { uid: true, source: true }, { uid: true })) {
      if (message.source) bodies.set(message.uid, message.source);
    }
    return bodies;
  }

  /**
   * Hands one downloaded mail to the ingest. A mail that cannot be parsed is kept there with its reason, and the
   * next one follows; a quarantine row of this mail without its bytes gets them; a busy parser pool is waited for.
   */
  async function ingestDownloaded(channel: Channel, raw: Buffer, options: IngestOptions): Promise<void> {
    const context = Context.current();
    for (;;) {
      try {
        await ingest.ingestRawMail(channel, raw, options);
        return;
      } catch (error) {
        if (error instanceof ParserBusyError) {
          await context.sleep(PARSER_BUSY_PAUSE_MS); // the same mail again: the cursor stays before it
          continue;
        }
        if (!(error instanceof MailRejectedError)) throw error; // Temporal or the database is away: retry this mail
        if (!(await fillUndownloaded(channel, error.inboundMessageId, raw))) return;
      }
    }
  }

  /** Gives a mail quarantined without its bytes the bytes it now has, ready for the ingest; false when there was no such row. */
  async function fillUndownloaded(channel: Channel, inboundMessageId: string, raw: Buffer): Promise<boolean> {
    if (raw.length > channel.max_inbound_bytes) return false;
    const filled = await db
      .updateTable('inbound_messages')
      .set({ raw, size_bytes: raw.length, status: 'received', rejection_reason: null })
      .where('id', '=', inboundMessageId)
      .where('raw', 'is', null)
      .executeTakeFirst();
    return filled.numUpdatedRows > 0n;
  }

  async function afterProcessing(client: ImapFlow, channel: Channel, uids: number[]) {
    if (uids.length === 0) return;
    if (channel.imap_after_processing === 'mark_seen') await client.messageFlagsAdd(uids.join(','), ['\\Seen'], { uid: true });
    if (channel.imap_after_processing === 'move' && channel.imap_move_to_folder) {
      await client.messageMove(uids.join(','), channel.imap_move_to_folder, { uid: true });
    }
  }

  /**
   * Every mail above the folder's cursor, in UID order, until the session's deadline, up to MAILS_IN_FLIGHT at once.
   * The cursor advances past a mail once it and every mail before it are committed by the ingest (or quarantined, or
   * left alone), so a crash re-reads at most the mails in flight.
   * Quarantined and skipped mail stays where it is, untouched, so that it can still be fetched by its UID.
   */
  async function drainFolder(
    client: ImapFlow,
    channel: Channel,
    folder: string,
    deadline: number,
    report: (doing: string) => void,
  ): Promise<number> {
    const context = Context.current();
    const lock = await client.getMailboxLock(folder);
    try {
      const mailbox = client.mailbox as MailboxObject;
      const cursor = await cursorOf(client, channel, folder, mailbox);
      // Not uidNext: an EXISTS seen during IDLE updates the message count, but uidNext only on the next SELECT.
      if (mailbox.exists === 0) return 0;
      // "n:*" always matches the newest message, even when its UID is below n.
      const found = (await client.search({ uid: `${cursor.lastUid + 1}:*` }, { uid: true })) || [];
      const uids = found.filter((uid) => uid > cursor.lastUid).sort((a, b) => a - b);
      let ingested = 0;
      // A few mails in flight at once; the cursor moves past a mail only when every mail before it is done too.
      const window = new InOrderWindow<number>(MAILS_IN_FLIGHT, (uid) =>
        advanceCursor(channel.id, folder, mailbox.uidValidity, uid),
      );
      try {
        for (let start = 0; start < uids.length && Date.now() < deadline; start += FETCH_BATCH) {
          const plans = await planMail(channel, cursor, await fetchMailHeads(client, uids.slice(start, start + FETCH_BATCH)));
          const processed: number[] = [];
          let bodies = new Map<number, Buffer>();
          for (const [index, plan] of plans.entries()) {
            // Stop between mails when cancelled (settings changed, worker shutting down) or out of time: the cursor marks the spot.
            if (context.cancellationSignal.aborted || Date.now() >= deadline) break;
            const { head, imported } = plan;
            const source = { folder, uidValidity: mailbox.uidValidity, uid: head.uid };
            if (plan.action === 'quarantine') {
              report(`${folder}: quarantining UID ${head.uid} (${head.size} bytes) without downloading it`);
              await window.run(head.uid, () =>
                ingest.quarantineUndownloaded(channel, {
                  messageId: head.messageId ?? placeKey(source),
                  sizeBytes: head.size,
                  source,
                  imported,
                }),
              );
            } else if (plan.action === 'download') {
              if (!bodies.has(head.uid)) bodies = await downloadFrom(client, plans, index);
              const raw = bodies.get(head.uid);
              bodies.delete(head.uid);
              // Gone between the two FETCHes (another client deleted it): nothing to ingest.
              if (!raw) {
                await window.run(head.uid, async () => undefined);
                continue;
              }
              report(`${folder}: ingesting UID ${head.uid} (${raw.length} bytes)${imported ? ', imported' : ''}`);
              // A sender's mails are threaded one after another, a reply only once the mails before it are, a large mail alone.
              await window.run(
                head.uid,
                async () => {
                  await ingestDownloaded(channel, raw, { via: 'imap', imported, source });
                  ingested++;
                  processed.push(head.uid);
                },
                { key: head.from, alone: head.answersAnother || head.from === undefined || raw.length > LARGE_MAIL_BYTES },
              );
            } else {
              if (plan.why === 'stored already') processed.push(head.uid);
              await window.run(head.uid, async () => undefined);
            }
          }
          await window.drain();
          await afterProcessing(client, channel, processed);
          context.cancellationSignal.throwIfAborted();
        }
      } catch (error) {
        // What is in flight ends before the session does (the cursor moving past what finished); then the failure counts.
        await window.drain().catch(() => undefined);
        throw error;
      }
      return ingested;
    } finally {
      lock.release();
    }
  }

  /** Mail that an admin asked to reprocess after it was quarantined without its bytes, folder by folder. */
  async function downloadRequestedMail(client: ImapFlow, channel: Channel, report: (doing: string) => void): Promise<number> {
    const requested = await db
      .selectFrom('inbound_messages')
      .select(['id', 'message_id', 'imported', 'source_folder', 'source_uid_validity', 'source_uid'])
      .where('channel_id', '=', channel.id)
      .where('status', '=', 'received')
      .where('raw', 'is', null)
      .where('source_uid', 'is not', null)
      .orderBy('received_at')
      .execute();
    const byFolder = new Map<string, RequestedMail[]>();
    for (const mail of requested) {
      const folder = mail.source_folder ?? '';
      byFolder.set(folder, [...(byFolder.get(folder) ?? []), mail]);
    }
    let ingested = 0;
    for (const [folder, mails] of byFolder) {
      let lock;
      try {
        lock = await client.getMailboxLock(folder);
      } catch (error) {
        if (!client.usable) throw error;
        for (const mail of mails)
          await returnToQuarantine(mail.id, `not downloaded: the folder ${folder} can no longer be opened`);
        continue;
      }
      try {
        const downloaded: number[] = [];
        for (const mail of mails) {
          Context.current().cancellationSignal.throwIfAborted();
          report(`${folder}: downloading UID ${mail.source_uid}, requested by a reprocess`);
          if (await downloadRequested(client, channel, folder, mail)) {
            downloaded.push(Number(mail.source_uid));
            ingested++;
          }
        }
        await afterProcessing(client, channel, downloaded);
      } finally {
        lock.release();
      }
    }
    return ingested;
  }

  /** Fetches one requested mail by its UID and ingests it, or returns it to the quarantine saying why not; true when ingested. */
  async function downloadRequested(client: ImapFlow, channel: Channel, folder: string, mail: RequestedMail): Promise<boolean> {
    const mailbox = client.mailbox as MailboxObject;
    const uid = Number(mail.source_uid);
    if (BigInt(mail.source_uid_validity ?? -1) !== mailbox.uidValidity) {
      await returnToQuarantine(
        mail.id,
        `not downloaded: the folder ${folder} was renumbered since (UIDVALIDITY ${mail.source_uid_validity}, now ${mailbox.uidValidity}), so UID ${uid} no longer names this mail`,
      );
      return false;
    }
    const head = await client.fetchOne(String(uid), { uid: true, size: true }, { uid: true });
    if (!head) {
      await returnToQuarantine(mail.id, `not downloaded: UID ${uid} is no longer in ${folder} (deleted or moved)`);
      return false;
    }
    const size = head.size ?? 0;
    if (size > channel.max_inbound_bytes) {
      await returnToQuarantine(
        mail.id,
        `too large: ${size} bytes, the channel accepts ${channel.max_inbound_bytes}; not downloaded`,
      );
      return false;
    }
    const raw = ((await client.fetchOne(String(uid), { uid: true, source: true }, { uid: true })) || undefined)?.source;
    if (!raw) {
      await returnToQuarantine(mail.id, `not downloaded: UID ${uid} is no longer in ${folder} (deleted or moved)`);
      return false;
    }
    const headers = readHeaderSection(raw);
    if (!headers) {
      // Kept with its bytes now, as the ingest keeps every mail that is no MIME.
      await db
        .updateTable('inbound_messages')
        .set({ raw, size_bytes: raw.length, status: 'rejected', rejection_reason: NOT_MIME })
        .where('id', '=', mail.id)
        .execute();
      return false;
    }
    // Quarantined under its place on the server (no Message-ID in the envelope): from now on under the ingest's key.
    const key = dedupeKey(headers, raw);
    const keptAsThisRow = key === mail.message_id || (await rekeyQuarantined(channel.id, mail.id, key));
    if (keptAsThisRow) await fillUndownloaded(channel, mail.id, raw);
    await ingestDownloaded(channel, raw, {
      via: 'imap',
      imported: mail.imported,
      source: { folder, uidValidity: mailbox.uidValidity, uid },
    });
    return true;
  }

  /** Moves a quarantined row to the key its mail is stored under; false (and the row gone) when that key holds the mail already. */
  async function rekeyQuarantined(channelId: string, inboundMessageId: string, key: string): Promise<boolean> {
    const holder = await db
      .selectFrom('inbound_messages')
      .select('id')
      .where('channel_id', '=', channelId)
      .where('message_id', '=', key)
      .executeTakeFirst();
    if (holder) {
      await db.deleteFrom('inbound_messages').where('id', '=', inboundMessageId).execute();
      return false;
    }
    await db.updateTable('inbound_messages').set({ message_id: key }).where('id', '=', inboundMessageId).execute();
    return true;
  }

  async function returnToQuarantine(inboundMessageId: string, reason: string) {
    await db
      .updateTable('inbound_messages')
      .set({ status: 'rejected', rejection_reason: reason })
      .where('id', '=', inboundMessageId)
      .where('raw', 'is', null)
      .execute();
  }

  /** IDLE on the folder until the server announces new mail, the connection drops, or the time is up. */
  async function waitForNewMail(client: ImapFlow, folder: string, maxMs: number): Promise<void> {
    const lock = await client.getMailboxLock(folder);
    const context = Context.current();
    let wake!: () => void;
    const woken = new Promise<void>((resolve) => (wake = resolve));
    const timer = setTimeout(wake, maxMs);
    client.on('exists', wake);
    client.on('close', wake);
    context.cancellationSignal.addEventListener('abort', wake);
    try {
      const idling = client.idle().catch(() => undefined);
      await woken;
      if (client.usable) await client.noop(); // any command ends IDLE
      await idling;
    } finally {
      clearTimeout(timer);
      client.off('exists', wake);
      client.off('close', wake);
      context.cancellationSignal.removeEventListener('abort', wake);
      lock.release();
    }
    if (!client.usable) throw ApplicationFailure.retryable('the IMAP server closed the connection', 'ImapConnectionLost');
  }

  return {
    /**
     * One IMAP session for a channel's mailbox: downloads mail an admin asked for, drains every folder above its
     * UID cursor, then (where the server has IDLE) waits for new mail and drains again, until the session time is up.
     */
    async syncMailbox({ channelId }: { channelId: string }): Promise<MailboxSyncResult> {
      const loadChannel = () => db.selectFrom('channels').selectAll().where('id', '=', channelId).executeTakeFirst();
      const disabled: MailboxSyncResult = { state: 'disabled', ingested: 0, idleSupported: false, pollIntervalSeconds: 0 };
      let channel = await loadChannel();
      if (!channel?.imap_enabled || !channel.enabled || channel.deleted_at) return disabled;
      // Retrying cannot help until an admin connects the mailbox again: the workflow waits for that.
      const waitForAdmin = async (error: ReauthorizationRequiredError): Promise<MailboxSyncResult> => {
        await recordPathFailure(db, channelId, 'imap', { reason: 'reauthorization_required', message: error.reason });
        return { ...disabled, state: 'reauthorization_required', reason: error.reason };
      };
      let settings: ImapSettings;
      try {
        settings = await settingsOf(channel);
      } catch (error) {
        if (!(error instanceof ReauthorizationRequiredError)) throw error;
        return waitForAdmin(error);
      }
      const context = Context.current();
      // One clock for the whole session, drain and IDLE alike: a slow mail or a long drain never lets the heartbeat lapse.
      let doing = `connecting to ${settings.host}`;
      const report = (now: string) => (doing = now);
      context.heartbeat(doing);
      const heartbeat = setInterval(() => context.heartbeat(doing), HEARTBEAT_EVERY_MS);
      try {
        let client!: ImapFlow;
        // A refused access token is dropped and the login tried once more at once with a fresh one; a fresh one
        // refused too, or a provider that will not refresh, ends the grant.
        for (let login = 1; ; login++) {
          client = createImapClient(settings, await destinationOf(settings));
          client.on('error', () => undefined); // surfaced by the command that fails
          try {
            await client.connect();
            break;
          } catch (error) {
            const failure = describeImapFailure(error);
            if (failure.reason === 'auth' && settings.accessToken !== undefined) {
              await logins.refused(channel.id, settings, 'IMAP');
              try {
                const renewed = await settingsOf(channel);
                if (login === 1) {
                  settings = renewed;
                  continue;
                }
              } catch (refreshError) {
                if (!(refreshError instanceof ReauthorizationRequiredError)) throw refreshError;
                return waitForAdmin(refreshError);
              }
            }
            const since = await recordPathFailure(db, channel.id, 'imap', failure);
            // The workflow says so in its details and tries again after a pause of its own. The server's own words
            // go only to the operator there; API answers never carry them.
            return {
              ...disabled,
              state: 'unreachable',
              failure: { ...failure, host: settings.host, since: since.toISOString(), serverSaid: serverWords(error) },
            };
          }
        }
        await logins.accepted(channel.id, settings);
        try {
          const idleSupported = client.capabilities.has('IDLE');
          const deadline = Date.now() + SESSION_MS;
          const sentFolder = openSentFolderSession(db, client);
          let ingested = 0;
          for (;;) {
            ingested += await downloadRequestedMail(client, channel, report);
            for (const folder of channel.imap_folders) {
              report(`${folder}: reading new mail`);
              ingested += await drainFolder(client, channel, folder, deadline, report);
            }
            // Copies of sent mail for the Sent folder, and replies written in the mailbox, on this connection.
            await sentFolder.pass(channel, report);
            await recordPathSuccess(db, channel.id, 'imap');
            if (!idleSupported || Date.now() >= deadline || context.cancellationSignal.aborted) break;
            const idleFolder = channel.imap_folders[0] ?? 'INBOX';
            report(`${idleFolder}: waiting for new mail (IDLE)`);
            // IDLE watches one folder: the others and the Sent folder are looked at every poll interval.
            await waitForNewMail(client, idleFolder, Math.min(deadline - Date.now(), channel.imap_poll_interval_seconds * 1000));
            // Settings are read again at every wake: folders and after-processing apply at once,
            // a new server or password takes a new session.
            const current = await loadChannel();
            if (!current?.imap_enabled || !current.enabled || current.deleted_at) return { ...disabled, ingested };
            if (!logins.sameImapLogin(current, channel)) break;
            channel = current;
          }
          return { state: 'synced', ingested, idleSupported, pollIntervalSeconds: channel.imap_poll_interval_seconds };
        } finally {
          await client.logout().catch(() => client.close());
        }
      } finally {
        clearInterval(heartbeat);
      }
    },
  };
}
