import nodemailer from 'nodemailer';
import type Mail from 'nodemailer/lib/mailer/index.js';

export interface MailTransport {
  send(message: Mail.Options): Promise<void>;
  close(): void;
}

/** Outbound SMTP from a URL such as smtp://user:pass@host:587 (smtps:// for implicit TLS). */
export function createMailTransport(smtpUrl: string): MailTransport {
  const transporter = nodemailer.createTransport(smtpUrl);
  return {
    async send(message) {
      await transporter.sendMail(message);
    },
    close: () => transporter.close(),
  };
}
