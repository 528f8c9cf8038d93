// The SMTP receiver next to the forwarder endpoint: the same mails posted over HTTP and delivered over SMTP (nodemailer
// as the sending MTA, one pooled connection per lane), in the same run and ABBA order, on the bench's servers. For SMTP
// also the time from the end of DATA (the receiver has the whole mail) to its conversation signalled (signalled_at).
import { randomUUID } from 'node:crypto';
import { createTransport } from 'nodemailer';
import { createIngest, type Ingest } from '../src/ingest/ingest.js';
import { createLogger } from '../src/logger.js';
import { createSmtpReceiver } from '../src/receiver/smtp-receiver.js';
import { INGEST_TASK_QUEUE, type BenchStack } from './stack.js';
import { fixtureMail, forwardedMail, measure, type Measurement, type Request } from './throughput.js';

const INBOUND_DOMAIN = 'inbound.mailroom.test';

export type SmtpWorkload = 'forwarder' | 'smtp';

export interface SmtpRow {
  round: string;
  workload: SmtpWorkload;
  measurement: Measurement;
}

export interface SmtpFigures {
  rows: SmtpRow[];
  /** Per SMTP mail of the rounds: end of DATA → signalled_at, in milliseconds. */
  dataEndToSignalledMs: number[];
}

export async function measureSmtpReceiver(
  stack: BenchStack,
  options: { perRound: number[]; concurrency: number; warmUp: number },
): Promise<SmtpFigures> {
  // The bench channel's forwarding address: support@bench.<inbound domain>.
  await stack.db
    .updateTable('channels')
    .set({ forwarding_username: 'support', forwarding_subdomain: 'bench' })
    .where('id', '=', stack.channel.id)
    .execute();
  const dataEnds = new Map<string, number>();
  const ingest = createIngest({
    db: stack.db,
    temporal: stack.temporal,
    taskQueue: INGEST_TASK_QUEUE,
    inboundDomain: INBOUND_DOMAIN,
  });
  // The receiver calls the ingest as soon as it has read the whole mail: that is when DATA ended. signalled_at is
  // set by the same process's clock.
  const timedIngest: Ingest = {
    ...ingest,
    async ingestRawMail(channel, raw, ingestOptions) {
      const dataEnd = Date.now();
      const result = await ingest.ingestRawMail(channel, raw, ingestOptions);
      dataEnds.set(result.inboundMessageId, dataEnd);
      return result;
    },
  };
  const receiver = createSmtpReceiver({
    db: stack.db,
    ingest: timedIngest,
    logger: createLogger('silent'),
    inboundDomain: INBOUND_DOMAIN,
    maxInboundBytes: 25 * 1024 * 1024,
    perChannelPerMinute: 0, // as the forwarder here: throughput, not the rate limit
    maxClients: 200,
    maxRecipients: 50,
    maxBadRecipients: 10,
    socketTimeoutMs: 60_000,
    maxBufferedBytes: 256 * 1024 * 1024,
    closeTimeoutMs: 1_000,
  });
  const { port } = await receiver.listen(0, '127.0.0.1');
  const transport = createTransport({
    host: '127.0.0.1',
    port,
    ignoreTLS: true,
    pool: true,
    maxConnections: options.concurrency,
    maxMessages: Infinity,
  });
  try {
    const smtpMail: Request = async () => {
      const raw = fixtureMail.replace(/^Message-ID: .*$/m, `Message-ID: <bench-smtp-${randomUUID()}@mail.example.com>`);
      const info = await transport.sendMail({
        envelope: { from: 'ann@example.com', to: [`support@bench.${INBOUND_DOMAIN}`] },
        raw: Buffer.from(raw, 'latin1'),
      });
      if (!info.response.startsWith('250')) throw new Error(`SMTP ${info.response}`);
    };
    const requests: Record<SmtpWorkload, Request> = { forwarder: forwardedMail(stack), smtp: smtpMail };
    for (const workload of ['forwarder', 'smtp'] as const) {
      const warmUp = await measure(options.warmUp, options.concurrency, requests[workload]);
      if (warmUp.failures > 0)
        throw new Error(`smtp warm-up, ${workload}: ${warmUp.failures} failed; first: ${warmUp.firstFailure}`);
    }
    dataEnds.clear();
    const rows: SmtpRow[] = [];
    for (const [index, requestsInRound] of options.perRound.entries()) {
      const order: SmtpWorkload[] = index % 2 === 0 ? ['forwarder', 'smtp'] : ['smtp', 'forwarder'];
      for (const workload of order) {
        const measurement = await measure(requestsInRound, options.concurrency, requests[workload]);
        if (measurement.failures > 0) {
          throw new Error(
            `smtp round ${index + 1}, ${workload}: ${measurement.failures} failed; first: ${measurement.firstFailure}`,
          );
        }
        rows.push({ round: String(index + 1), workload, measurement });
      }
    }
    return { rows, dataEndToSignalledMs: await dataEndToSignalled(stack, dataEnds) };
  } finally {
    transport.close();
    await receiver.close();
  }
}

async function dataEndToSignalled(stack: BenchStack, dataEnds: Map<string, number>): Promise<number[]> {
  const ids = [...dataEnds.keys()];
  const delays: number[] = [];
  for (let start = 0; start < ids.length; start += 500) {
    const rows = await stack.db
      .selectFrom('inbound_messages')
      .select(['id', 'signalled_at'])
      .where('id', 'in', ids.slice(start, start + 500))
      .execute();
    for (const row of rows) {
      if (!row.signalled_at) throw new Error(`bench: SMTP mail ${row.id} answered 250 but never signalled`);
      delays.push(row.signalled_at.getTime() - dataEnds.get(row.id)!);
    }
  }
  return delays;
}
