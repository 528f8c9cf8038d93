import { once } from 'node:events';
import { connect } from 'node:net';
import { createTransport } from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SmtpCapture } from '../../src/mail/smtp-capture.js';

describe('the SMTP capture', () => {
  const capture = new SmtpCapture();
  let port: number;

  beforeAll(async () => {
    ({ port } = await capture.listen());
  });

  afterAll(() => capture.close());

  /** Starts a mail and goes away before its data, as the kernel ends the connections of a process killed while sending. */
  async function cutOffMail() {
    const socket = connect(port, '127.0.0.1');
    socket.setEncoding('utf8');
    let replies = '';
    socket.on('data', (chunk: string) => (replies += chunk));
    const replied = async (code: string) => {
      while (!new RegExp(`^${code} `, 'm').test(replies)) await once(socket, 'data');
      replies = '';
    };
    await replied('220');
    for (const [command, code] of [
      ['EHLO worker.example', '250'],
      ['MAIL FROM:<support@acme.example>', '250'],
      ['RCPT TO:<ann@example.com>', '250'],
    ] as const) {
      socket.write(`${command}\r\n`);
      await replied(code);
    }
    socket.resetAndDestroy();
    await once(socket, 'close');
  }

  it('keeps running when clients go away in the middle of a mail (workers killed while they send)', async () => {
    // Twice: the listener listen() used to leave behind took the first reset, the second ended the process.
    await cutOffMail();
    await cutOffMail();

    const transport = createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true });
    await transport.sendMail({ from: 'support@acme.example', to: 'bob@example.com', subject: 'Next', text: 'Still here?' });
    transport.close();
    expect(capture.mails.map((mail) => mail.subject)).toEqual(['Next']);
  });
});
