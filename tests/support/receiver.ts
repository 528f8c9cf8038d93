import type { Client } from '@temporalio/client';
import { createTransport } from 'nodemailer';
import { createIngest } from '../../src/ingest/ingest.js';
import { createLogger } from '../../src/logger.js';
import { createSmtpReceiver, type SmtpReceiver, type SmtpReceiverOptions } from '../../src/receiver/smtp-receiver.js';
import { TEST_INBOUND_DOMAIN, type TestStack } from './stack.js';

// The SMTP receiver (src/receiver) in a test, and a sending MTA for it: nodemailer delivering over SMTP on loopback.

/** The largest mail the test receivers take. */
export const MAX_INBOUND_BYTES = 1024 * 1024;

/** A receiver on the stack's database and task queue; `temporal` replaces the stack's (e.g. one that is away). */
export async function startReceiver(
  stack: TestStack,
  options: Partial<SmtpReceiverOptions> & { temporal?: Client } = {},
): Promise<{ receiver: SmtpReceiver; port: number }> {
  const { temporal = stack.temporal, ...rest } = options;
  const receiver = createSmtpReceiver({
    db: stack.db,
    ingest: createIngest({
      db: stack.db,
      temporal,
      taskQueue: stack.taskQueue,
      inboundDomain: TEST_INBOUND_DOMAIN,
      temporalTimeoutMs: 2_000,
    }),
    logger: createLogger('silent'),
    inboundDomain: TEST_INBOUND_DOMAIN,
    maxInboundBytes: MAX_INBOUND_BYTES,
    perChannelPerMinute: 0,
    maxClients: 20,
    maxRecipients: 5,
    maxBadRecipients: 3,
    socketTimeoutMs: 60_000,
    maxBufferedBytes: 64 * MAX_INBOUND_BYTES,
    closeTimeoutMs: 1_000,
    ...rest,
  });
  const { port } = await receiver.listen(0, '127.0.0.1');
  return { receiver, port };
}

/** Delivers as an MTA does: one SMTP transaction with this envelope; resolves with nodemailer's info, rejects with the refusal. */
export async function deliver(
  port: number,
  envelope: { from: string; to: string[] },
  raw: string | Buffer,
  tls?: { ca: Buffer },
) {
  const transport = createTransport({
    host: '127.0.0.1',
    port,
    secure: false,
    ...(tls ? { requireTLS: true, tls: { ca: tls.ca, servername: 'localhost' } } : { ignoreTLS: true }),
  });
  try {
    return await transport.sendMail({ envelope, raw });
  } finally {
    transport.close();
  }
}

/** What the SMTP server answered, from nodemailer's error. */
export async function refusal(delivery: Promise<unknown>): Promise<{ responseCode: number; response: string; command: string }> {
  const error = await delivery.then(
    () => undefined,
    (reason: unknown) => reason as { responseCode: number; response: string; command: string },
  );
  if (!error) throw new Error('the mail was accepted');
  return error;
}
