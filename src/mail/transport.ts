import nodemailer from 'nodemailer';
import type Mail from 'nodemailer/lib/mailer/index.js';

export interface MailTransport {
  send(message: Mail.Options): Promise<void>;
  close(): void;
}

/**
 * Outbound SMTP from a URL such as smtp://user:pass@host:587 (smtps:// for implicit TLS). Connections are
 * pooled (a burst of out-of-office notes would otherwise open one SMTP session each); `?pool=false` turns it off.
 */
export function createMailTransport(smtpUrl: string): MailTransport {
  const url = new URL(smtpUrl);
  if (!url.searchParams.has('pool')) url.searchParams.set('pool', 'true');
  const transporter = nodemailer.createTransport(url.toString());
  return {
    async send(message) {
      await transporter.sendMail(message);
    },
    close: () => transporter.close(),
  };
}
