import { type AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';
import { simpleParser } from 'mailparser';

export interface CapturedMail {
  id: number;
  receivedAt: Date;
  envelope: { from: string | null; to: string[] };
  messageId: string | null;
  subject: string;
  inReplyTo: string | null;
  references: string[];
  headers: Record<string, string>;
  text: string;
  raw: string;
}

/** A mail server saying no, as tests make the capture answer. */
export interface CaptureRefusal {
  /** To the recipient (RCPT TO), or to the message once it was sent (the reply to DATA). */
  at: 'rcpt' | 'data';
  /** 5xx refuses for good, 4xx asks to try again later. */
  code: number;
  message: string;
  /** Refuses this many mails, then takes them again; every one when left out. */
  times?: number;
}

/**
 * An SMTP server on loopback that keeps what it receives: the outbound sink of `npm start`
 * (shown through the API) and of the tests. Keeps the newest `capacity` mails. Tests can make it
 * refuse mail (`refuse`) or answer slowly (`holdMails`).
 */
export class SmtpCapture {
  readonly mails: CapturedMail[] = [];
  /** Mails it said no to, since it started. */
  refused = 0;
  private nextId = 1;
  private readonly server: SMTPServer;
  private readonly waiters = new Set<() => void>();
  private refusal: CaptureRefusal | null = null;
  private holdMs = 0;

  constructor(private readonly capacity = 1000) {
    this.server = new SMTPServer({
      authOptional: true,
      disabledCommands: ['STARTTLS'],
      logger: false,
      onRcptTo: (_address, _session, callback) => callback(this.refusalAt('rcpt') ?? undefined),
      onData: (stream, session, callback) => {
        const chunks: Buffer[] = [];
        stream.on('data', (chunk: Buffer) => chunks.push(chunk));
        stream.on('error', callback);
        stream.on('end', () => {
          const refused = this.refusalAt('data');
          if (refused) return callback(refused);
          // A slow server: the mail is taken (and kept) only when the answer comes.
          setTimeout(() => this.record(Buffer.concat(chunks), session.envelope).then(() => callback(), callback), this.holdMs);
        });
      },
    });
    // A client that goes away in the middle of a mail (a worker killed while it sends) ends its own session, not the
    // capture: smtp-server emits its connection reset as an 'error', which without a listener ends the process.
    this.server.on('error', () => undefined);
  }

  /** Says no to the next mails (all of them unless `times`), until called with null. */
  refuse(refusal: CaptureRefusal | null): void {
    this.refusal = refusal && { ...refusal };
  }

  /** Answers each mail's DATA only after this long, as a slow server does; 0 answers at once. */
  holdMails(ms: number): void {
    this.holdMs = ms;
  }

  private refusalAt(step: CaptureRefusal['at']): (Error & { responseCode: number }) | null {
    const refusal = this.refusal;
    if (!refusal || refusal.at !== step) return null;
    if (refusal.times !== undefined && --refusal.times <= 0) this.refusal = null;
    this.refused += 1;
    return Object.assign(new Error(refusal.message), { responseCode: refusal.code });
  }

  async listen(port = 0, host = '127.0.0.1'): Promise<{ port: number; url: string }> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.removeListener('error', reject);
        resolve();
      });
    });
    const address = this.server.server.address() as AddressInfo;
    return { port: address.port, url: `smtp://${host}:${address.port}` };
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  /** Resolves with the first captured mail that matches, waiting for it to arrive if needed. */
  async waitFor(match: (mail: CapturedMail) => boolean, timeoutMs = 30_000): Promise<CapturedMail> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.mails.find(match);
      if (found) return found;
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw new Error(`no matching mail arrived within ${timeoutMs} ms (${this.mails.length} captured)`);
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          this.waiters.delete(wake);
          resolve();
        };
        const timer = setTimeout(wake, remaining);
        this.waiters.add(wake);
      });
    }
  }

  private async record(raw: Buffer, envelope: { mailFrom: false | { address: string }; rcptTo: { address: string }[] }) {
    const parsed = await simpleParser(raw, { skipTextToHtml: true, skipTextLinks: true, skipImageLinks: true });
    const headers: Record<string, string> = {};
    for (const line of parsed.headerLines) headers[line.key] = line.line.slice(line.line.indexOf(':') + 1).trim();
    const references = typeof parsed.references === 'string' ? [parsed.references] : (parsed.references ?? []);
    this.mails.push({
      id: this.nextId++,
      receivedAt: new Date(),
      envelope: { from: envelope.mailFrom ? envelope.mailFrom.address : null, to: envelope.rcptTo.map((r) => r.address) },
      messageId: parsed.messageId ?? null,
      subject: parsed.subject ?? '',
      inReplyTo: parsed.inReplyTo ?? null,
      references,
      headers,
      text: parsed.text ?? '',
      raw: raw.toString('utf8'),
    });
    if (this.mails.length > this.capacity) this.mails.splice(0, this.mails.length - this.capacity);
    for (const wake of [...this.waiters]) wake();
  }
}
