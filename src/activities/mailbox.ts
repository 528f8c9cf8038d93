import { ApplicationFailure, Context } from '@temporalio/activity';
import type { ImapFlow, MailboxObject } from 'imapflow';
import { sql } from 'kysely';
import type { Channel } from '../db/schema.js';
import { MailRejectedError } from '../ingest/ingest.js';
import { createImapClient, describeImapFailure, type ImapSettings } from '../mail/imap-connection.js';
import { decryptCredential } from '../security/credentials.js';
import { DestinationRefusedError, DestinationUnresolvedError, resolveDestination } from '../security/destinations.js';
import type { ActivityDeps } from './deps.js';

export interface MailboxSyncResult {
  /** 'disabled': IMAP is switched off for the channel; the mailbox workflow ends. */
  state: 'synced' | 'disabled';
  ingested: number;
  /** Without IDLE the workflow polls at this interval. */
  idleSupported: boolean;
  pollIntervalSeconds: number;
}

// One activity run is one IMAP session: drain, then IDLE until new mail, drain again, ... for this long.
const SESSION_MS = 10 * 60_000;
const FETCH_BATCH = 25;
const HEARTBEAT_EVERY_MS = 5_000;

export function createMailboxActivities({ db, ingest, secretKey, allowedPrivateNetworks }: ActivityDeps) {
  function settingsOf(channel: Channel): ImapSettings {
    if (!channel.imap_host || !channel.imap_port || !channel.imap_username || !channel.imap_password_encrypted) {
      throw ApplicationFailure.nonRetryable(
        `channel ${channel.id} has IMAP enabled but incomplete settings`,
        'ImapSettingsIncomplete',
      );
    }
    return {
      host: channel.imap_host,
      port: channel.imap_port,
      tls: channel.imap_tls,
      username: channel.imap_username,
      password: decryptCredential(channel.imap_password_encrypted, secretKey),
    };
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

  /** The folder's position; a new UIDVALIDITY means its UIDs were renumbered, so it is read again from the start. */
  async function cursorOf(channelId: string, folder: string, uidValidity: bigint): Promise<number> {
    const cursor = await db
      .selectFrom('imap_cursors')
      .select(['uid_validity', 'last_uid'])
      .where('channel_id', '=', channelId)
      .where('folder', '=', folder)
      .executeTakeFirst();
    if (cursor && BigInt(cursor.uid_validity) === uidValidity) return Number(cursor.last_uid);
    await db
      .insertInto('imap_cursors')
      .values({ channel_id: channelId, folder, uid_validity: uidValidity.toString(), last_uid: 0 })
      .onConflict((oc) =>
        oc
          .columns(['channel_id', 'folder'])
          .doUpdateSet({ uid_validity: uidValidity.toString(), last_uid: 0, updated_at: sql`now()` }),
      )
      .execute();
    return 0;
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

  /** Hands one mail to the ingest; a mail that cannot be parsed is kept there with its reason, and the next one follows. */
  async function ingestOne(channel: Channel, raw: Buffer): Promise<void> {
    try {
      await ingest.ingestRawMail(channel, raw, { via: 'imap' });
    } catch (error) {
      if (!(error instanceof MailRejectedError)) throw error; // Temporal or the database is away: retry this mail
    }
  }

  async function afterProcessing(client: ImapFlow, channel: Channel, uids: number[]) {
    if (channel.imap_after_processing === 'mark_seen') await client.messageFlagsAdd(uids.join(','), ['\\Seen'], { uid: true });
    if (channel.imap_after_processing === 'move' && channel.imap_move_to_folder) {
      await client.messageMove(uids.join(','), channel.imap_move_to_folder, { uid: true });
    }
  }

  /**
   * Every mail above the folder's cursor, in UID order. The cursor advances after each mail is
   * committed by the ingest, so a crash at any point re-reads at most the mail in hand.
   */
  async function drainFolder(client: ImapFlow, channel: Channel, folder: string): Promise<number> {
    const lock = await client.getMailboxLock(folder);
    try {
      const mailbox = client.mailbox as MailboxObject;
      const lastUid = await cursorOf(channel.id, folder, mailbox.uidValidity);
      // Not uidNext: an EXISTS seen during IDLE updates the message count, but uidNext only on the next SELECT.
      if (mailbox.exists === 0) return 0;
      // "n:*" always matches the newest message, even when its UID is below n.
      const found = (await client.search({ uid: `${lastUid + 1}:*` }, { uid: true })) || [];
      const uids = found.filter((uid) => uid > lastUid).sort((a, b) => a - b);
      for (let start = 0; start < uids.length; start += FETCH_BATCH) {
        const batch = uids.slice(start, start + FETCH_BATCH);
        const messages: Array<{ uid: number; source: Buffer }> = [];
        for await (const message of client.fetch(batch.join(','), { uid: true, source: true }, { uid: true })) {
          if (message.source) messages.push({ uid: message.uid, source: message.source });
        }
        for (const message of messages.sort((a, b) => a.uid - b.uid)) {
          // Stop between mails when cancelled (settings changed, worker shutting down): the cursor marks the spot.
          Context.current().cancellationSignal.throwIfAborted();
          await ingestOne(channel, message.source);
          await advanceCursor(channel.id, folder, mailbox.uidValidity, message.uid);
          Context.current().heartbeat({ folder, uid: message.uid });
        }
        await afterProcessing(client, channel, batch);
      }
      return uids.length;
    } finally {
      lock.release();
    }
  }

  /** IDLE on the folder until the server announces new mail, the connection drops, or the time is up. */
  async function waitForNewMail(client: ImapFlow, folder: string, maxMs: number): Promise<void> {
    const lock = await client.getMailboxLock(folder);
    const context = Context.current();
    let wake!: () => void;
    const woken = new Promise<void>((resolve) => (wake = resolve));
    const timer = setTimeout(wake, maxMs);
    const heartbeat = setInterval(() => context.heartbeat({ idle: folder }), HEARTBEAT_EVERY_MS);
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
      clearInterval(heartbeat);
      client.off('exists', wake);
      client.off('close', wake);
      context.cancellationSignal.removeEventListener('abort', wake);
      lock.release();
    }
    if (!client.usable) throw ApplicationFailure.retryable('the IMAP server closed the connection', 'ImapConnectionLost');
  }

  return {
    /**
     * One IMAP session for a channel's mailbox: drains every folder above its UID cursor, then
     * (where the server has IDLE) waits for new mail and drains again, until the session time is up.
     */
    async syncMailbox({ channelId }: { channelId: string }): Promise<MailboxSyncResult> {
      const loadChannel = () => db.selectFrom('channels').selectAll().where('id', '=', channelId).executeTakeFirst();
      const disabled: MailboxSyncResult = { state: 'disabled', ingested: 0, idleSupported: false, pollIntervalSeconds: 0 };
      let channel = await loadChannel();
      if (!channel?.imap_enabled || !channel.enabled || channel.deleted_at) return disabled;
      const settings = settingsOf(channel);
      const client = createImapClient(settings, await destinationOf(settings));
      client.on('error', () => undefined); // surfaced by the command that fails
      const context = Context.current();
      try {
        await client.connect();
      } catch (error) {
        const failure = describeImapFailure(error);
        // The server's own words stay with the operator (Temporal UI), as the cause; API answers never carry them.
        throw ApplicationFailure.create({
          message: `IMAP ${failure.reason} (${settings.host}): ${failure.message}`,
          type: `Imap_${failure.reason}`,
          cause: error instanceof Error ? error : undefined,
        });
      }
      try {
        const idleSupported = client.capabilities.has('IDLE');
        const deadline = Date.now() + SESSION_MS;
        let ingested = 0;
        for (;;) {
          for (const folder of channel.imap_folders) ingested += await drainFolder(client, channel, folder);
          if (!idleSupported || Date.now() >= deadline || context.cancellationSignal.aborted) break;
          await waitForNewMail(client, channel.imap_folders[0] ?? 'INBOX', deadline - Date.now());
          // Settings are read again at every wake: folders and after-processing apply at once,
          // a new server or password takes a new session.
          const current = await loadChannel();
          if (!current?.imap_enabled || !current.enabled || current.deleted_at) return { ...disabled, ingested };
          if (JSON.stringify(settingsOf(current)) !== JSON.stringify(settings)) break;
          channel = current;
        }
        return { state: 'synced', ingested, idleSupported, pollIntervalSeconds: channel.imap_poll_interval_seconds };
      } finally {
        await client.logout().catch(() => client.close());
      }
    },
  };
}
