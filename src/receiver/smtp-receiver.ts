import type { AddressInfo } from 'node:net';
import { SMTPServer, type SMTPServerAddress, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';
import { RateLimiter } from '../api/rate-limit.js';
import type { Db } from '../db/connection.js';
import type { Channel } from '../db/schema.js';
import {
  ForwardingConfirmationError,
  MailRejectedError,
  ParserBusyError,
  WorkflowsUnavailableError,
  type Ingest,
} from '../ingest/ingest.js';
import type { Logger } from '../logger.js';
import { findRecipientChannel } from './recipients.js';

// Mailroom's own MX for the inbound domain: mail to a channel's forwarding address (or to a reply-token address
// of a domain whose MX points here) goes through the same ingest as the forwarder endpoint and IMAP. The answer
// to DATA is 250 only once the raw mail is stored for every recipient channel; anything we could not take is
// answered 4xx, so the sending MTA keeps it and tries again (the store dedupes by Message-ID).

export interface SmtpReceiverOptions {
  db: Db;
  ingest: Ingest;
  logger: Logger;
  /** INBOUND_DOMAIN: forwarding addresses are username@subdomain.<this>. */
  inboundDomain: string;
  /** No mail is ever larger (MAX_INBOUND_BYTES); SIZE announces the largest a channel takes, at most this. */
  maxInboundBytes: number;
  /** Mails a minute for one channel (RATE_LIMIT_INBOUND_PER_MINUTE); 0 = unlimited. */
  perChannelPerMinute: number;
  /** The name the server greets with and says in EHLO. */
  hostname?: string;
  /** PEM key and certificate for STARTTLS; without them STARTTLS is not offered. */
  tls?: { key: Buffer; cert: Buffer };
  maxClients: number;
  /** Recipients in one transaction; beyond, 452 (the sender sends the rest in another). */
  maxRecipients: number;
  /** Unknown recipients in one connection before it is closed (421): a harvester learns little. */
  maxBadRecipients: number;
  /** A client silent for this long (also in the middle of DATA) is disconnected. */
  socketTimeoutMs: number;
  /**
   * Bytes of mail all sessions together may hold while they arrive; past it a mail is answered 451 and dropped from
   * memory (its sender tries again), unless it is the only one arriving: one mail up to SIZE always fits.
   */
  maxBufferedBytes: number;
  /** On close(), how long sessions may finish before they are cut off (421); 30 s unless given. */
  closeTimeoutMs?: number;
}

/** An SMTP reply as smtp-server sends an error: the code, and the text with its enhanced status code. */
function reply(code: number, text: string): Error & { responseCode: number } {
  return Object.assign(new Error(text), { responseCode: code });
}

// How often SIZE is read again from the channels' limits.
const SIZE_REFRESH_MS = 60_000;

interface SessionState {
  /** This transaction's recipients, by lower-cased address. */
  recipients: Map<string, Channel>;
  badRecipients: number;
}

type DeliveryOutcome =
  | { kind: 'stored'; inboundMessageId: string }
  | { kind: 'rejected'; reason: string; inboundMessageId: string }
  | { kind: 'later'; reason: string };

export interface SmtpReceiver {
  listen(port: number, host: string): Promise<{ port: number; url: string }>;
  close(): Promise<void>;
  /** What EHLO announces as SIZE now. */
  readonly announcedSize: number;
}

export function createSmtpReceiver(options: SmtpReceiverOptions): SmtpReceiver {
  const { db, ingest, logger, inboundDomain } = options;
  const perChannel = new RateLimiter(options.perChannelPerMinute);
  const buffered = { bytes: 0, transfers: 0 };
  const sessions = new WeakMap<SMTPServerSession, SessionState>();
  const stateOf = (session: SMTPServerSession) => {
    let state = sessions.get(session);
    if (!state) sessions.set(session, (state = { recipients: new Map(), badRecipients: 0 }));
    return state;
  };

  const server: SMTPServer = new SMTPServer({
    ...(options.hostname ? { name: options.hostname } : {}),
    banner: 'Mailroom',
    // An MX takes mail from anyone and authenticates nobody.
    authOptional: true,
    disabledCommands: options.tls ? ['AUTH'] : ['AUTH', 'STARTTLS'],
    ...(options.tls ? { key: options.tls.key, cert: options.tls.cert } : {}),
    size: options.maxInboundBytes,
    maxClients: options.maxClients,
    socketTimeout: options.socketTimeoutMs,
    ...(options.closeTimeoutMs === undefined ? {} : { closeTimeout: options.closeTimeoutMs }),
    logger: false,
    onConnect: (_session, callback) => {
      refreshSize();
      callback();
    },
    onMailFrom: (_address, session, callback) => {
      stateOf(session).recipients.clear();
      callback();
    },
    onRcptTo: (address, session, callback) => {
      onRecipient(address, session).then(
        () => callback(),
        (error: Error) => callback(error),
      );
    },
    onData: (stream, session, callback) => {
      onMail(stream, session).then(
        (message) => callback(null, message),
        (error: Error) => callback(error),
      );
    },
  });
  // A client that resets its connection is smtp-server's 'error' event; without a listener it would end the process.
  server.on('error', (error) => logger.debug({ err: error }, 'SMTP receiver: connection error'));

  let sizeReadAt = 0;
  function refreshSize() {
    if (Date.now() - sizeReadAt < SIZE_REFRESH_MS) return;
    sizeReadAt = Date.now();
    db.selectFrom('channels')
      .select((eb) => eb.fn.max('max_inbound_bytes').as('largest'))
      .where('deleted_at', 'is', null)
      .executeTakeFirst()
      .then((row) => {
        const largest = Number(row?.largest ?? options.maxInboundBytes);
        server.options.size = Math.min(options.maxInboundBytes, largest || options.maxInboundBytes);
      })
      .catch(() => {
        sizeReadAt = 0; // the database is away: the SIZE known stays, and the next connection asks again
      });
  }

  async function onRecipient(address: SMTPServerAddress, session: SMTPServerSession): Promise<void> {
    const state = stateOf(session);
    if (session.envelope.rcptTo.length >= options.maxRecipients) {
      throw reply(452, `4.5.3 Too many recipients: at most ${options.maxRecipients} in one mail, send the rest in another`);
    }
    let lookup;
    try {
      lookup = await findRecipientChannel(db, address.address, inboundDomain);
    } catch (error) {
      logger.warn({ err: error }, 'SMTP receiver: recipient lookup failed');
      throw reply(451, '4.3.0 Temporary failure looking up the recipient, try again later');
    }
    if (lookup.kind === 'unknown') {
      state.badRecipients += 1;
      if (state.badRecipients >= options.maxBadRecipients) {
        throw reply(421, '4.7.0 Too many unknown recipients, closing connection');
      }
      throw reply(550, `5.1.1 <${address.address}>: no such recipient here`);
    }
    if (lookup.kind === 'disabled') {
      // Temporary: the sender keeps the mail and tries again for days, in which the channel may be enabled again.
      throw reply(450, `4.2.1 <${address.address}>: this channel does not take mail while it is disabled, try again later`);
    }
    const { channel } = lookup;
    const declared = Number(
      session.envelope.mailFrom && session.envelope.mailFrom.args ? session.envelope.mailFrom.args.SIZE : 0,
    );
    if (declared > channel.max_inbound_bytes) {
      throw reply(552, `5.3.4 <${address.address}> takes mail up to ${channel.max_inbound_bytes} bytes`);
    }
    const verdict = perChannel.take(channel.id);
    if (!verdict.allowed) {
      throw reply(451, `4.7.1 <${address.address}> takes at most ${perChannel.perMinute} mails a minute, try again later`);
    }
    state.recipients.set(address.address.toLowerCase(), channel);
  }

  async function onMail(stream: SMTPServerDataStream, session: SMTPServerSession): Promise<string> {
    const limit = server.options.size ?? options.maxInboundBytes;
    const read = await readBounded(stream, limit, buffered, options.maxBufferedBytes);
    if (read === 'too large') throw reply(552, `5.3.4 Message too large: this server takes mail up to ${limit} bytes`);
    if (read === 'busy') throw reply(451, '4.3.2 Too many mails arriving at once, try again later');
    const raw = read;
    const channels = new Map<string, Channel>();
    for (const recipient of session.envelope.rcptTo) {
      const channel = stateOf(session).recipients.get(recipient.address.toLowerCase());
      if (channel) channels.set(channel.id, channel);
    }
    // One DATA answer for every recipient: a mail over any recipient channel's limit is refused whole, and kept by the sender.
    for (const channel of channels.values()) {
      if (raw.length > channel.max_inbound_bytes) {
        throw reply(552, `5.3.4 Message too large: ${raw.length} bytes, a recipient takes up to ${channel.max_inbound_bytes}`);
      }
    }
    const outcomes = await Promise.all([...channels.values()].map((channel) => deliver(channel, raw)));
    const later = outcomes.find((outcome) => outcome.kind === 'later');
    if (later) throw reply(451, `4.3.0 ${later.reason}; try again later`);
    const stored = outcomes.filter((outcome) => outcome.kind === 'stored');
    if (stored.length === 0) {
      const rejected = outcomes.find((outcome) => outcome.kind === 'rejected');
      // Permanent: the sender learns the mail was not read; its bytes are kept for the channel's admins.
      throw reply(554, `5.6.0 The mail cannot be processed: ${oneLine(rejected?.reason ?? 'no recipient')}`);
    }
    return `2.0.0 OK: stored as ${stored.map((outcome) => outcome.inboundMessageId).join(', ')}`;
  }

  async function deliver(channel: Channel, raw: Buffer): Promise<DeliveryOutcome> {
    try {
      const result = await ingest.ingestRawMail(channel, raw, { via: 'smtp' });
      return { kind: 'stored', inboundMessageId: result.inboundMessageId };
    } catch (error) {
      // A confirmation is delivered: it is listed for the channel's admins.
      if (error instanceof ForwardingConfirmationError) return { kind: 'stored', inboundMessageId: error.inboundMessageId };
      if (error instanceof MailRejectedError) {
        return { kind: 'rejected', reason: error.reason, inboundMessageId: error.inboundMessageId };
      }
      // The parser pool busy, Temporal or the database away: the mail may be stored already, and the retry completes it.
      logger.warn({ err: error, channelId: channel.id }, 'SMTP receiver: mail not taken, the sender will try again');
      return { kind: 'later', reason: temporaryReason(error) };
    }
  }

  return {
    async listen(port, host) {
      refreshSize();
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.removeListener('error', reject);
          resolve();
        });
      });
      const address = server.server.address() as AddressInfo;
      return { port: address.port, url: `smtp://${host}:${address.port}` };
    },
    close: () => new Promise((resolve) => server.close(() => resolve())),
    get announcedSize() {
      return server.options.size ?? options.maxInboundBytes;
    },
  };
}

/**
 * The mail's bytes; 'too large' once they pass `limit`, 'busy' once all sessions together would hold more than
 * `budget` (the rest is read and dropped either way, so that the reply can be sent). `buffered` is shared by all.
 */
function readBounded(
  stream: SMTPServerDataStream,
  limit: number,
  buffered: { bytes: number; transfers: number },
  budget: number,
): Promise<Buffer | 'too large' | 'busy'> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let length = 0;
    let dropped: 'too large' | 'busy' | null = null;
    buffered.transfers += 1;
    const release = () => {
      buffered.bytes -= length;
      buffered.transfers -= 1;
      length = 0;
      chunks.length = 0;
    };
    stream.on('data', (chunk: Buffer) => {
      if (dropped) return;
      if (length + chunk.length > limit) dropped = 'too large';
      else if (buffered.bytes + chunk.length > budget && buffered.transfers > 1) dropped = 'busy';
      if (dropped) {
        release();
        return;
      }
      chunks.push(chunk);
      length += chunk.length;
      buffered.bytes += chunk.length;
    });
    stream.on('error', (error) => {
      if (!dropped) release();
      reject(error);
    });
    stream.on('end', () => {
      if (dropped || stream.sizeExceeded) {
        if (!dropped) release();
        return resolve(dropped ?? 'too large');
      }
      const raw = Buffer.concat(chunks, length);
      release();
      resolve(raw);
    });
  });
}

function temporaryReason(error: unknown): string {
  if (error instanceof ParserBusyError) return 'Too many mails at once, the mail is stored';
  if (error instanceof WorkflowsUnavailableError) return 'Workflows are unavailable, the mail is stored';
  return 'Temporary failure storing the mail';
}

/** A reason as one reply line: no control characters, bounded. */
function oneLine(text: string): string {
  let line = '';
  for (const char of text) {
    if (line.length >= 300) return `${line}…`;
    line += char < ' ' || char === '\u007f' ? ' ' : char;
  }
  return line;
}
