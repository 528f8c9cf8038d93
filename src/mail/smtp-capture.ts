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

/**
 * An SMTP server on loopback that keeps what it receives: the outbound sink of `npm start`
 * (shown through the API) and of the tests. Keeps the newest `capacity` mails.
 */
export class SmtpCapture {
  readonly mails: CapturedMail[] = [];
  private nextId = 1;
  private readonly server: SMTPServer;
  private readonly waiters = new Set<() => void>();

  constructor(private readonly capacity = 1000) {
    this.server = new SMTPServer({
      authOptional: true,
      disabledCommands: ['STARTTLS'],
      logger: false,
      onData: (stream, session, callback) => {
        const chunks: Buffer[] = [];
        stream.on('data', (chunk: Buffer) => chunks.push(chunk));
        stream.on('error', callback);
        stream.on('end', () => {
          this.record(Buffer.concat(chunks), session.envelope).then(() => callback(), callback);
        });
      },
    });
  }

  async listen(port = 0, host = '127.0.0.1'): Promise<{ port: number; url: string }> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => resolve());
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
